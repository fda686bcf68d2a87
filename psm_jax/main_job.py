"""The main job the README's first command runs: dataset -> trained models -> report.

Stages, each resumable (a finished stage's workdir is reused, an interrupted one resumes from its
last checkpoint):
  1. build the dataset (the synthetic default unless told otherwise);
  2-6. train every model of the registry (`psm_jax.registry.MODELS`): the user-embedding encoder,
     the PSM network on the encoder's embedding pool, the multi-task CNN, the per-observer
     networks and the universal network;
  7. evaluate closed and open set and the unseen observers' embedding precision@1 versus m, draw
     example grids and a t-SNE of embeddings, write `<workdir>/report.md` (what was trained,
     what the results say, the tables and studies) and `<workdir>/example_study/` (a new viewer
     to enrol, `write_example_study`).

Configs: `psm_jax.configs.main` (the quick schedules of each dataset's config file, and the
evaluation settings). Each model is restored once (`psm_jax.inference.restore`): the encoder right
after its training, since the PSM network's embedding pool needs it, the others for evaluation.
"""

from __future__ import annotations

import time
from pathlib import Path

import ml_collections
import numpy as np

from psm_jax import figures, inference, registry
from psm_jax.configs import main as main_configs
from psm_jax.data import datasets, pipeline
from psm_jax.data.releases import table as table_lib
from psm_jax.evaluation import embeddings, methods, pairs, report
from psm_jax.train import loop

DEFAULT_DATASET = "synthetic_personal_saliency"


class _Stages:
    """Prints numbered stage headers and each stage's time."""

    def __init__(self, total: int):
        self.total, self.number = total, 0
        self.start = self.stage_start = time.perf_counter()

    def begin(self, what: str) -> None:
        self.number += 1
        print(f"[{self.number}/{self.total}] {what}", flush=True)

    def done(self, what: str) -> None:
        now = time.perf_counter()
        print(
            f"      {what} in {now - self.stage_start:.0f} s ({now - self.start:.0f} s so far)",
            flush=True,
        )
        self.stage_start = now

    @property
    def seconds(self) -> float:
        return time.perf_counter() - self.start


def _training_configs(
    dataset: str, data_dir: str, manual_dir: str | None, overrides: dict[str, dict]
) -> dict[str, ml_collections.ConfigDict]:
    """Every stage's config, overrides applied: a bad override fails before anything trains."""
    unknown = set(overrides) - set(registry.MODELS)
    if unknown:
        raise ValueError(
            f"Overrides for unknown models {sorted(unknown)}; known: {registry.MODELS}."
        )
    configs = {}
    for model in registry.MODELS:
        config = main_configs.training_config(dataset, model)
        config.data_dir = data_dir
        if manual_dir:
            config.manual_dir = manual_dir
        try:
            main_configs.apply_overrides(config, overrides.get(model, {}))
            registry.get(model).architecture(config)  # unknown or bad network fields fail here
            registry.get(model).loss(config)
        except (KeyError, TypeError, ValueError) as error:
            raise ValueError(f"Bad override of {model}: {error}") from error
        configs[model] = config
    return configs


def run(
    dataset: str = DEFAULT_DATASET,
    *,
    data_dir: str = datasets.DEFAULT_DATA_DIR,
    manual_dir: str | None = None,
    workdir: str | None = None,
    evaluation: ml_collections.ConfigDict | None = None,
    overrides: dict[str, dict] | None = None,
) -> dict:
    """Runs every stage.

    Args:
      dataset: a psm-jax dataset ("name" or "name/builder_config").
      data_dir, manual_dir: where the records go; the release, for datasets that need one.
      workdir: where the runs and the report go (default runs/<dataset>).
      evaluation: the evaluation settings (default `psm_jax.configs.main.evaluation_config`).
      overrides: {model: {dotted config key: value}}, options on top of each model's quick
        schedule (`psm_jax.configs.main.parse_override`); a finished stage's workdir is reused
        as it is, so give a new workdir when the overrides change.

    Returns:
      {protocol: report.Table, "precision_at_1": {m: p}, "preference_alignment": {...},
      "psm_network_activity": {layer measure: fraction},
      "report": path, "seconds": s}.
    """
    evaluation = evaluation or main_configs.evaluation_config(dataset)
    configs = _training_configs(dataset, data_dir, manual_dir, overrides or {})
    stages = _Stages(total=len(registry.MODELS) + 2)
    workdir = Path(workdir or Path("runs") / dataset.replace("/", "_"))
    stages.begin(f"Preparing {dataset} in {data_dir} (reused if already built)...")
    builder = datasets.build_dataset(dataset, data_dir=data_dir, manual_dir=manual_dir)
    summary = datasets.summarise(builder)
    print(summary, flush=True)
    stages.done("dataset ready")

    workdirs, encoder = {}, None
    for model in registry.MODELS:
        config = configs[model]
        if model == "psm_network":
            config.encoder_workdir = str(workdirs["embedding"])
        workdirs[model] = workdir / model
        stages.begin(
            f"Training {model} ({config.num_steps} steps, batch {config.batch_size}) in "
            f"{workdirs[model]} ..."
        )
        loop.train_and_evaluate(config, workdirs[model], encoder=encoder and encoder.model)
        if model == "embedding":
            encoder = inference.restore(workdirs[model], kind="embedding")
        stages.done(f"{model} trained")

    stages.begin("Evaluating closed and open set...")
    models = methods.Models.restore(
        {name: str(path) for name, path in workdirs.items()}, restored={"embedding": encoder}
    )
    results, sections = _evaluate(dataset, data_dir, workdir, models, evaluation)
    runs = {
        name: {"config": restored.config, "step": restored.step}
        for name, restored in models.given().items()
        if name in workdirs
    }
    test_observers = len(pipeline.open_split(dataset, "train", data_dir)[1].observers("test"))
    sets = evaluation.precision_sets_per_observer
    sections = [
        report.training_markdown(summary, runs),
        report.findings_markdown(
            {p: results[p] for p in evaluation.protocols if p in results},
            results["precision_at_1"],
            chance=(sets - 1) / max(test_observers * sets - 1, 1),
            activity=results.get("psm_network_activity"),
        ),
        *sections,
    ]
    study = write_example_study(dataset, data_dir, workdir / "example_study", evaluation.m)
    stages.done("evaluated")
    print(f"      an example new viewer to enrol (README, 'New viewers'): {study}", flush=True)
    path = report.write_main_report(
        workdir / "report.md",
        dataset=dataset,
        usm_floor=evaluation.usm_floor,
        m=evaluation.m,
        seconds=stages.seconds,
        sections=sections,
        discrepancy_weight=evaluation.discrepancy_weight,
        log_ratio_scale=_log_ratio_scale(models),
    )
    # The console gets the two main tables; the report has everything (tests, figures, studies).
    print("\n".join(results[p].markdown() for p in evaluation.protocols if p in results))
    print(f"Report: {path} ({stages.seconds:.0f} s)")
    return {**results, "report": path, "seconds": stages.seconds}


def _log_ratio_scale(models: methods.Models) -> float | None:
    """The PSM network's s if it composes in log space ("log_ratio"), else None."""
    if models.psm_network is None or models.psm_network.composition[0] != "log_ratio":
        return None
    return models.psm_network.composition[1]


def write_example_study(dataset: str, data_dir: str, out: Path, m: int) -> Path:
    """A new viewer's study, as a user would bring one: `images/` (m training images they viewed,
    as stored) and `viewer.csv` (their fixations in the fixation-table layout,
    `psm_jax.data.releases.table`), plus `photo.jpg` (a test image) to predict for. The viewer is
    the first test observer, whom no model was trained on. README's enrol/predict commands run on
    it."""
    source, metadata = pipeline.open_split(dataset, "train", data_dir)
    observer = int(metadata.observers("test")[0])
    subject = str(metadata.observer_ids[observer])
    columns = {k: [] for k in ("subject", "image", "x", "y", "duration_ms", "trial")}
    (out / "images").mkdir(parents=True, exist_ok=True)
    count = 0
    for index in range(len(source)):
        record = source[index]
        if count == m:
            break
        if not record["psm_valid"][observer]:
            continue
        name = pipeline.image_id(record)
        (out / "images" / name).write_bytes(record["image"])
        fixations = record["fixations"]
        own = fixations["observer"] == observer
        columns["subject"] += [subject] * int(own.sum())
        columns["image"] += [name] * int(own.sum())
        for column, key in (("x", "x"), ("y", "y"), ("duration_ms", "duration_ms")):
            columns[column] += [float(v) for v in fixations[key][own]]
        columns["trial"] += [int(v) for v in fixations["viewing"][own]]
        count += 1
    table_lib.write_fixation_table(out / "viewer.csv", columns)
    test_source, _ = pipeline.open_split(dataset, "test", data_dir)
    (out / "photo.jpg").write_bytes(test_source[0]["image"])
    (out / "README.md").write_text(
        f"An example new viewer: observer {subject} of {dataset}, a test observer no model was "
        f"trained on; viewer.csv holds their fixations on the {count} images in images/ (training "
        "images of the dataset), photo.jpg is a test image. The repository README's enrol and "
        "predict commands run on this folder.\n"
    )
    return out


def _evaluate(dataset, data_dir, workdir: Path, models: methods.Models, evaluation):
    """The tables, figures and embedding studies: (results, report sections)."""
    output = workdir / "report"
    sections, results = [], {}
    for protocol in evaluation.protocols:
        evaluation_set = pairs.evaluation_set(dataset, data_dir, protocol, evaluation.split)
        table, rows, _ = report.evaluate(
            evaluation_set,
            models,
            usm_floor=evaluation.usm_floor,
            m=evaluation.m,
            discrepancy_weight=evaluation.discrepancy_weight,
        )
        table.write(output)
        sections += [table.markdown(), table.versus_usm_markdown()]
        results[protocol] = table
        if protocol == "closed":
            count = min(64, len(evaluation_set.image))
            activity = methods.psm_network_activity(
                evaluation_set, models, m=evaluation.m, count=count
            )
            if activity:
                results["psm_network_activity"] = activity
                sections.append(report.activity_markdown(activity, count))
        ours = [row for row in rows if row.id == methods.OURS]
        grid_path = output / f"examples_{protocol}.png"
        if ours and report.example_figure(evaluation_set, ours[0].psm, grid_path):
            sections.append(f"![{protocol}-set examples](report/{grid_path.name})\n")

    source, metadata = pipeline.open_split(dataset, "train", data_dir)
    sets: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    # Each (observer, image) pair's encoder features, per observer group: the precision@1 sets and
    # the preference alignment's draw on the same test observers' pairs.
    pair_caches: dict[str, dict] = {"test": {}}
    precision = embeddings.precision_at_1_versus_m(
        models.embedding,
        source,
        metadata,
        group="test",
        ms=tuple(evaluation.precision_ms),
        sets_per_observer=evaluation.precision_sets_per_observer,
        seed=evaluation.seed,
        sets=sets,
        pair_cache=pair_caches["test"],
    )
    sections.append(report.precision_markdown(precision))
    results["precision_at_1"] = precision
    tsne_m = max((k for k, v in precision.items() if np.isfinite(v)), default=None)
    if tsne_m is not None:
        vectors, labels = sets[tsne_m]  # the sets precision@1 was scored on at that m
        test_ids = [str(metadata.observer_ids[o]) for o in metadata.observers("test")]
        figures.embedding_plot(
            vectors,
            labels,
            output / "embeddings_tsne.png",
            f"t-SNE of the unseen (test) observers' embeddings, {dataset}: "
            f"{evaluation.precision_sets_per_observer} sets of m = {tsne_m} pairs each",
            names=test_ids,
        )
        sections.append("![t-SNE of unseen observers' embeddings](report/embeddings_tsne.png)\n")
    alignment = _preference_alignment(models.embedding, source, metadata, evaluation, pair_caches)
    if alignment:
        results["preference_alignment"] = alignment
        sections.append(report.alignment_markdown(alignment))
    return results, sections


def _preference_alignment(encoder, source, metadata, evaluation, pair_caches=None) -> dict:
    """Synthetic datasets only (their generator records each observer's preferences): how well
    embedding distances track preference distances, for the training and the unseen observers.
    `pair_caches`: {group: pair cache} to encode through (`embeddings.set_embeddings`)."""
    preferences = metadata.raw.get("release", {}).get("observer_preferences")
    if preferences is None:
        return {}
    preferences = np.asarray(preferences)
    alignment = {}
    for group in ("train", "test"):
        if len(metadata.observers(group)) < 3:  # fewer than 3 pairs: no rank correlation
            continue
        vectors, labels = embeddings.set_embeddings(
            encoder,
            source,
            metadata,
            group=group,
            m=evaluation.m,
            sets_per_observer=evaluation.alignment_sets_per_observer,
            seed=evaluation.seed,
            pair_cache=(pair_caches or {}).get(group),
        )
        alignment[group] = embeddings.preference_alignment(
            vectors, labels, preferences[metadata.observers(group)]
        )
    return alignment
