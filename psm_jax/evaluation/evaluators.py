"""The evaluation's one home: the evaluators an evaluation config lists, run over shared data.

    results = evaluators.evaluate(models, config, output_dir)   # config: configs/evaluation.py

`config.evals` lists the evaluators to run, each with its own settings (as big_vision's
`config.evals`); they run in the order of `EVALUATORS`, whatever the config's order:

    tables     per protocol of `config.protocols`: every row's predicted PSMs scored on the
               protocol's pairs (`psm_jax.evaluation.methods`, `scoring`), the per-pair scores
               file `<protocol>_scores.csv` and from it the table with its asterisks, every row
               against the ground-truth USM over pairs and over people, and the real-use rows
               (given the universal model's USM) against that USM alone
    examples   per protocol: a grid of images, the USM and two observers' ground-truth and
               predicted PSMs (the embedding network's; needs the tables)
    activity   the PSM network's ReLU activity on the closed set's first pairs
    precision  precision@1 of the unseen (test) observers' embeddings versus m (Strohm et al.,
               Fig. 5) from image-disjoint sets, at the settings' ms and the evaluation's m (the
               report's headline), with the people and chance at each m and a t-SNE of the sets
               at the evaluation's m (else the largest scored); with a universal model, also the
               same sets enrolled on its USMs (real use)
    alignment  synthetic datasets: embedding distances against the simulated preference distances

Evaluators compute; `psm_jax.evaluation.report` writes what they computed (report.md and one
markdown table per protocol), so scores never depend on how they are shown. Everything the
evaluators share is computed once per evaluation by a `Context`: the dataset's training split is
opened once, each protocol's pairs are read once, each observer group is embedded once (the
evaluated observers' embeddings of the tables, the activity and the baselines' enrolment sets),
the universal model's USMs of the training images are predicted once (the real-use enrolment),
and every (observer, image) pair goes through the encoder once per USM source across the tables,
precision@1 and the alignment (a pair cache per group).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from pathlib import Path

import ml_collections
import numpy as np

from psm_jax import figures, inference
from psm_jax.data import datasets, pipeline
from psm_jax.evaluation import embeddings as embeddings_lib
from psm_jax.evaluation import methods, pairs, provenance, report, scoring


class Context:
    """What the evaluators of one evaluation share, each part computed on first use.

    Args:
      models: the restored models (`methods.Models`); their configs name the dataset.
      config: the evaluation config (`psm_jax.configs.evaluation`).
      output_dir: where figures and tables go.
      progress: called with a line as each long part starts (the observers' embeddings, a
        protocol's maps and scores), with the seconds since the context was made; None: quiet.
    """

    def __init__(
        self,
        models: methods.Models,
        config: ml_collections.ConfigDict,
        output_dir: str | Path,
        progress: Callable[[str], None] | None = None,
    ):
        self.models = models
        self.config = config
        self.output_dir = Path(output_dir)
        self.progress = progress
        self._start = time.perf_counter()
        self.dataset, self.data_dir = models.dataset()
        self._training_split = None
        self._evaluation_sets: dict[str, pairs.EvaluationSet] = {}
        self._embeddings: dict[str, tuple[np.ndarray, np.ndarray] | None] = {}
        self._training_usms: np.ndarray | None = None
        self._pair_caches: dict[str, dict] = {}
        self._rows: dict[str, list[methods.Row]] = {}
        self._scores: dict[str, dict[str, dict[str, np.ndarray]]] = {}

    def with_config(self, config: ml_collections.ConfigDict) -> Context:
        """A context for another evaluation config of the same models and split (e.g. another
        composition weight) that shares this one's data: the opened split, the pairs, the
        observers' embeddings and the pair caches; rows and scores are computed anew."""
        if (config.split, config.m, config.seed) != (
            self.config.split,
            self.config.m,
            self.config.seed,
        ):
            raise ValueError("with_config shares the pairs and embeddings: keep split, m and seed.")
        other = Context(self.models, config, self.output_dir, self.progress)
        other._training_split = self._training_split
        other._evaluation_sets = self._evaluation_sets
        other._embeddings = self._embeddings
        other._pair_caches = self._pair_caches
        other._training_usms = self._training_usms
        return other

    def say(self, what: str) -> None:
        """`what`, indented as the main job's stage lines, with the seconds so far (`progress`)."""
        if self.progress is not None:
            self.progress(f"      {what} ({time.perf_counter() - self._start:.0f} s)")

    @property
    def training_split(self) -> tuple:
        """(source, metadata) of the dataset's training images, opened once: every embedding and
        baseline reads its data from them (never from test images)."""
        if self._training_split is None:
            self._training_split = pipeline.open_split(self.dataset, "train", self.data_dir)
        return self._training_split

    def evaluation_set(self, protocol: str) -> pairs.EvaluationSet:
        """The protocol's (image, observer) pairs on the config's split, read once."""
        if protocol not in self._evaluation_sets:
            self._evaluation_sets[protocol] = pairs.evaluation_set(
                self.dataset,
                self.data_dir,
                protocol,
                self.config.split,
                closed_usm=self.config.get("closed_usm", "train"),
            )
        return self._evaluation_sets[protocol]

    def pair_cache(self, group: str) -> dict:
        """The encoder features of `group`'s (observer, training image) pairs, filled as sets are
        embedded (`psm_jax.inference.embed_observers`)."""
        return self._pair_caches.setdefault(group, {})

    def observer_embeddings(self, group: str) -> tuple[np.ndarray, np.ndarray] | None:
        """Each observer of `group` embedded once from m pairs of their own training images:
        ((observers, d), (observers, m) record indices of the sets' images); None without an
        encoder."""
        if group not in self._embeddings:
            if self.models.embedding is None:
                self._embeddings[group] = None
            else:
                self.say(f"embedding the {group} observers (m = {self.config.m})")
                source, metadata = self.training_split
                vectors, enrolment = methods.embed_evaluated_observers(
                    self.models.embedding,
                    source,
                    metadata,
                    group=group,
                    m=self.config.m,
                    pair_cache=self.pair_cache(group),
                )
                self._embeddings[group] = (vectors, enrolment)
        return self._embeddings[group]

    def training_usms(self) -> np.ndarray:
        """(records, H, W) the universal model's USM of every training image, computed once:
        what a new person's enrolment has instead of ground-truth USMs."""
        if self._training_usms is None:
            if self.models.universal is None:
                raise ValueError("Predicted USMs of the training images need a universal model.")
            source, _ = self.training_split
            self._training_usms = inference.source_usms(self.models.universal, source)
        return self._training_usms

    def predicted_usm_embeddings(self, group: str) -> np.ndarray:
        """(observers, d) each observer of `group` embedded from the same sets as
        `observer_embeddings`, their USMs the universal model's (real use)."""
        key = f"predicted_usm/{group}"
        if key not in self._embeddings:
            self.say(f"embedding the {group} observers from the universal model's USMs")
            source, metadata = self.training_split
            self._embeddings[key] = methods.embed_evaluated_observers(
                self.models.embedding,
                source,
                metadata,
                group=group,
                m=self.config.m,
                pair_cache=self.pair_cache(key),
                usms=self.training_usms(),
            )
        return self._embeddings[key][0]

    def rows(self, protocol: str, baselines: bool = True) -> list[methods.Row]:
        """Every row of the protocol's table, predicted once (`baselines` counts on the first
        call of a protocol only)."""
        if protocol not in self._rows:
            evaluation = self.evaluation_set(protocol)
            source, metadata = self.training_split
            needed = methods.needs_embeddings(self.models, protocol, baselines)
            embeddings = self.observer_embeddings(evaluation.group) if needed else None
            self.say(f"{protocol} set: every row's maps of {len(evaluation.image)} pairs")
            self._rows[protocol] = methods.predict_rows(
                evaluation,
                self.models,
                source=source,
                metadata=metadata,
                observer_embeddings=embeddings,
                predicted_usm_embeddings=(
                    self.predicted_usm_embeddings(evaluation.group)
                    if methods.needs_predicted_usm_embeddings(self.models)
                    else None
                ),
                usm_floor=self.config.usm_floor,
                discrepancy_weight=self.config.discrepancy_weight,
                baselines=baselines,
                training_embeddings=(
                    self.observer_embeddings("train")[0]
                    if self.models.psm_network is not None and self.models.embedding is not None
                    else None
                ),
            )
        return self._rows[protocol]

    def scores(self, protocol: str) -> dict[str, dict[str, np.ndarray]]:
        """Row id -> metric -> (pairs,) per-pair scores of the protocol's rows."""
        if protocol not in self._scores:
            evaluation = self.evaluation_set(protocol)
            rows = self.rows(protocol)
            self.say(f"{protocol} set: scoring {len(rows)} rows")
            self._scores[protocol] = {row.id: scoring.score(evaluation, row.psm) for row in rows}
        return self._scores[protocol]

    def table(self, protocol: str, baselines: bool = True) -> scoring.Table:
        """The protocol's table (`scoring.table`), computed from its per-pair scores file
        (`scoring.write_scores`, in the output folder) as read back."""
        rows = self.rows(protocol, baselines)
        path = scoring.write_scores(
            scoring.scores_path(self.output_dir, protocol),
            self.evaluation_set(protocol),
            self.scores(protocol),
        )
        return scoring.table(
            self.evaluation_set(protocol),
            rows,
            scoring.read_scores(path),
            usm_floor=self.config.usm_floor,
            m=self.config.m,
            discrepancy_weight=self.config.discrepancy_weight,
        )


def _tables(context: Context, settings) -> dict:
    tables = {}
    for protocol in context.config.protocols:
        tables[protocol] = context.table(protocol, baselines=settings.get("baselines", True))
        report.write_table(tables[protocol], context.output_dir)
    return {"tables": tables}


def _examples(context: Context, settings) -> dict:
    paths = {}
    for protocol in context.config.protocols:
        ours = [row for row in context.rows(protocol) if row.id == methods.OURS]
        path = context.output_dir / f"examples_{protocol}.png"
        if ours and example_figure(
            context.evaluation_set(protocol), ours[0].psm, path, settings.get("images", 3)
        ):
            paths[protocol] = path
    return {"examples": paths}


def _activity(context: Context, settings) -> dict:
    if context.models.psm_network is None or context.models.embedding is None:
        return {}
    evaluation = context.evaluation_set("closed")
    count = min(settings.get("pairs", 64), len(evaluation.image))
    vectors, _ = context.observer_embeddings(evaluation.group)
    activity = methods.psm_network_activity(evaluation, context.models, vectors, count=count)
    return {"activity": activity, "activity_pairs": count} if activity else {}


def _precision(context: Context, settings) -> dict:
    if context.models.embedding is None:
        return {}
    source, metadata = context.training_split
    sets: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    per_observer = settings.sets_per_observer
    # The evaluation's m always: the report's headline is at the m the tables embed people from.
    ms = tuple(sorted({*settings.ms, context.config.m}))

    def precision_versus_m(**options) -> dict[int, float]:
        return embeddings_lib.precision_at_1_versus_m(
            context.models.embedding,
            source,
            metadata,
            group="test",
            ms=ms,
            sets_per_observer=per_observer,
            seed=context.config.seed,
            **options,
        )

    details: dict[int, dict] = {}
    precision = precision_versus_m(
        sets=sets, pair_cache=context.pair_cache("test"), details=details
    )
    # Real use: the same people enrolled on the universal model's USMs of their images (an
    # encoder trained on predicted USMs already read those above).
    real_use = context.models.universal is not None and not context.models.embedding.predicted_usm
    if real_use:
        result_predicted = precision_versus_m(
            usms=context.training_usms(), pair_cache=context.pair_cache("predicted_usm/test")
        )
    result = {
        "precision_at_1": precision,
        # Per m: the sets per observer, the people and the chance that a random embedding's
        # nearest other set is one of the observer's own.
        "precision_details": {
            m: {k: v for k, v in d.items() if k != "image_index"} for m, d in details.items()
        },
    }
    if real_use:
        result["precision_at_1_predicted_usm"] = result_predicted
    if context.models.embedding.predicted_usm:
        result["precision_usms"] = "predicted USMs"
    finite = [m for m, p in precision.items() if np.isfinite(p)]
    tsne_m = context.config.m if context.config.m in finite else max(finite, default=None)
    if settings.get("tsne", True) and tsne_m is not None:
        vectors, labels = sets[tsne_m]  # the sets precision@1 was scored on at that m
        path = context.output_dir / "embeddings_tsne.png"
        figures.embedding_plot(
            vectors,
            labels,
            path,
            f"t-SNE of the unseen (test) observers' embeddings, {context.dataset}: "
            f"{details[tsne_m]['sets_per_observer']} image-disjoint sets of m = {tsne_m} pairs "
            "each",
            names=[str(metadata.observer_ids[o]) for o in metadata.observers("test")],
        )
        result["tsne"] = path
    return result


def _alignment(context: Context, settings) -> dict:
    """Synthetic datasets only (their generator records each observer's preferences): how well
    embedding distances track preference distances, for the training and the unseen observers."""
    source, metadata = context.training_split
    preferences = metadata.raw.get("release", {}).get("observer_preferences")
    if preferences is None or context.models.embedding is None:
        return {}
    preferences = np.asarray(preferences)
    alignment = {}
    for group in ("train", "test"):
        if len(metadata.observers(group)) < 3:  # fewer than 3 pairs: no rank correlation
            continue
        vectors, labels = embeddings_lib.set_embeddings(
            context.models.embedding,
            source,
            metadata,
            group=group,
            m=context.config.m,
            sets_per_observer=settings.sets_per_observer,
            seed=context.config.seed,
            pair_cache=context.pair_cache(group),
        )
        alignment[group] = embeddings_lib.preference_alignment(
            vectors, labels, preferences[metadata.observers(group)]
        )
    return {"preference_alignment": alignment} if alignment else {}


CONFIG_FILE = "evaluation_config.json"
"""The evaluation config an evaluation ran with, written beside its tables."""

EVALUATORS: dict[str, Callable[[Context, ml_collections.ConfigDict], dict]] = {
    "tables": _tables,
    "examples": _examples,
    "activity": _activity,
    "precision": _precision,
    "alignment": _alignment,
}
"""Every evaluator by name, in the order they run (module docstring)."""


@dataclasses.dataclass
class Evaluation:
    """What an evaluation computed and wrote.

    Attributes:
      results: the evaluators' outputs, merged: "tables" {protocol: scoring.Table}, "examples"
        {protocol: figure path}, "activity" {layer measure: fraction}, "precision_at_1" {m: p},
        "precision_at_1_predicted_usm" {m: p} (the same people enrolled on the universal model's
        USMs, where one is given and the encoder trained on the ground truth), "precision_usms"
        ("predicted USMs" where the encoder trained and enrolled on them), "precision_details"
        {m: {"sets_per_observer", "people", "chance"}},
        "tsne" (figure path), "preference_alignment" {group: statistics};
        an evaluator that had nothing to evaluate (its model absent) adds nothing.
      scores: protocol -> row id -> metric -> (pairs,) per-pair scores.
      seconds: how long it took.
    """

    results: dict
    scores: dict[str, dict[str, dict[str, np.ndarray]]]
    seconds: float


def check(config: ml_collections.ConfigDict) -> None:
    """A ValueError naming the field when `config` lists an unknown evaluator or protocol, or
    a composition outside its range: checked before any model is restored or trained."""
    unknown = set(config.evals) - set(EVALUATORS)
    if unknown:
        raise ValueError(
            f"--config.evals: unknown evaluators {sorted(unknown)}; known: {list(EVALUATORS)}."
        )
    for protocol in config.protocols:
        pairs.observer_group(protocol)
    inference.check_composition(config.usm_floor, config.discrepancy_weight)
    if config.get("closed_usm", "train") not in pairs.CLOSED_USMS:
        raise ValueError(
            f"--config.closed_usm={config.closed_usm!r}: must be one of {pairs.CLOSED_USMS}."
        )
    if not 1 <= config.m:
        raise ValueError(inference.m_out_of_range(config.m))
    if config.seed < 0:
        raise ValueError(f"--config.seed={config.seed}: the seed must be an integer, 0 or more.")
    # The evaluators' own counts: at least one of each (an example grid may have no rows).
    counts = {
        "precision.ms": config.evals.get("precision", {}).get("ms", ()),
        "precision.sets_per_observer": config.evals.get("precision", {}).get("sets_per_observer"),
        "alignment.sets_per_observer": config.evals.get("alignment", {}).get("sets_per_observer"),
        "activity.pairs": config.evals.get("activity", {}).get("pairs"),
    }
    for name, values in counts.items():
        values = values if isinstance(values, (tuple, list)) else (values,)
        if any(value is not None and value < 1 for value in values):
            raise ValueError(
                f"--config.evals.{name}={counts[name]}: must be an integer, 1 or more."
            )
    images = config.evals.get("examples", {}).get("images", 0)
    if images < 0:
        raise ValueError(f"--config.evals.examples.images={images}: must be an integer, 0 or more.")


def evaluate(
    models: methods.Models,
    config: ml_collections.ConfigDict,
    output_dir: str | Path,
    *,
    progress: Callable[[str], None] | None = print,
) -> Evaluation:
    """Runs the evaluators of `config.evals` on `models` (module docstring).

    Args:
      models: the restored models.
      config: the evaluation config (`psm_jax.configs.evaluation`).
      output_dir: where the tables (`<protocol>.md`, `.json`), the figures and the config
        (`CONFIG_FILE`) go.
      progress: called with a line as each evaluator, and each long part of one, starts
        (`Context.say`; None: quiet).
    """
    check(config)
    start = time.perf_counter()
    context = Context(models, config, output_dir, progress)
    if models.embedding is not None:  # before anything is computed (embed_observers checks too)
        source, metadata = context.training_split
        if config.m > len(source) // 2:
            raise ValueError(inference.m_out_of_range(config.m, len(source), metadata.name))
    context.output_dir.mkdir(parents=True, exist_ok=True)
    # What the tables were computed with, for the record and for `launch/evaluate.py`, which
    # starts from it when it evaluates the same workdirs again.
    (context.output_dir / CONFIG_FILE).write_text(config.to_json(indent=2))
    results: dict = {}
    for name, evaluator in EVALUATORS.items():
        if name not in config.evals:
            continue
        context.say(name)
        results.update(evaluator(context, config.evals[name]))
    scores = {protocol: context.scores(protocol) for protocol in results.get("tables", {})}
    return Evaluation(results=results, scores=scores, seconds=time.perf_counter() - start)


def write_report(
    path: str | Path,
    evaluation: Evaluation,
    models: methods.Models,
    config: ml_collections.ConfigDict,
    *,
    wall_time: str = "",
) -> Path:
    """report.md of an evaluation (`psm_jax.evaluation.report.write_report`): the main job and
    `launch/evaluate.py` both write it here, from the same results, so a trained workdir
    reproduces its main job's report (but for the provenance at its top: the command, the date,
    the wall time; `report.without_provenance`).

    Args:
      path: where report.md goes (the figures are linked as `report/<name>`).
      evaluation: what `evaluate` returned; models: the models it evaluated; config: its config.
      wall_time: a sentence on how long it took.
    """
    dataset, data_dir = models.dataset()
    runs = {
        name: {"config": restored.config, "step": restored.step}
        for name, restored in models.given().items()
        if name != "pretrained_universal"
    }
    psm_network = models.psm_network
    log_ratio_scale = None
    if psm_network is not None and psm_network.composition[0] == "log_ratio":
        log_ratio_scale = psm_network.composition[1]
    return report.write_report(
        path,
        evaluation.results,
        dataset=dataset,
        usm_floor=config.usm_floor,
        discrepancy_weight=config.discrepancy_weight,
        m=config.m,
        dataset_summary=datasets.summarise(datasets.builder(dataset, data_dir=data_dir)),
        runs=runs,
        log_ratio_scale=log_ratio_scale,
        wall_time=wall_time,
        provenance=provenance.record(),
    )


def example_figure(
    evaluation: pairs.EvaluationSet, predicted: np.ndarray, path: str | Path, images: int = 3
) -> bool:
    """Image, USM, ground-truth and predicted PSM of the first two observers on up to `images`
    test images that both viewed (Xu Fig. 7 / Strohm Fig. 4), each row labelled with its image
    id. False if no such image exists."""
    observers = np.unique(evaluation.observer)[:2]
    both = [
        i
        for i in np.unique(evaluation.image)
        if all(((evaluation.image == i) & (evaluation.observer == o)).any() for o in observers)
    ][:images]
    if not both:
        return False

    def pair(i, o):
        return int(np.flatnonzero((evaluation.image == i) & (evaluation.observer == o))[0])

    ground_truth = np.stack([[evaluation.psm[pair(i, o)] for o in observers] for i in both])
    prediction = np.stack([[predicted[pair(i, o)] for o in observers] for i in both])
    figures.example_grid(
        evaluation.images[both],
        evaluation.usm[both],
        ground_truth,
        prediction,
        [evaluation.observer_ids[o] for o in observers],
        path,
        image_names=[evaluation.image_ids[i] for i in both],
        title=(
            f"{evaluation.dataset}, {evaluation.protocol} set ({evaluation.group} observers), "
            f"{evaluation.split} images: each observer's ground-truth PSM and the embedding "
            "network's prediction"
        ),
    )
    return True
