"""The rows of the evaluation tables: each method's predicted PSM of every pair, with a stable id.

Rows, in table order (`ROW_IDS`), each with its one-line description in `ROW_GLOSSARY` (the
report's row glossary renders it); a row is left out when its model is not given. The baselines
without learning (`BASELINES`, `psm_jax.evaluation.priors`) use exactly the data the embedding
network gets: the observer's training images in the closed set, their m enrolment pairs in the
open set (so there, only when the encoder is given). The real-use rows (`PREDICTED_USM_ROWS`, the
papers' "w/ DG" rows) appear where a universal model is given and the model was trained on
ground-truth USMs, each after its model's row; for the embedding network the observer is then also
embedded from m pairs whose USMs are predicted (a new person has no ground-truth USM of their
enrolment images either).
Personalised rows add their discrepancy to the USM their model was trained with (ground truth, or
the universal network's for models trained with the "predicted" option) through
`psm_jax.inference.compose` with the evaluation's USM floor and weight (a PSM network trained with
the "log_ratio" composition multiplies the USM by its exp instead). The ids are the keys of the JSON
tables; the display names go beside them.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from flax import nnx

from psm_jax import inference, metrics, registry
from psm_jax.data import saliency_maps
from psm_jax.evaluation import priors as priors_lib
from psm_jax.evaluation.pairs import EvaluationSet
from psm_jax.train import loop

GT_USM, PRETRAINED_USM, PREDICTED_USM = "gt_usm", "pretrained_usm", "predicted_usm"
GT_USM_LEAVE_ONE_OUT = "gt_usm_leave_one_out"
CENTRE_BIAS, MEAN_DISCREPANCY, PRIOR_BLEND = "centre_bias", "mean_discrepancy", "prior_blend"
DENSITY_RATIO = "density_ratio"
MULTI_TASK, PER_OBSERVER, EMBEDDING = "multi_task", "per_observer", "embedding"
EMBEDDING_SHUFFLED = "embedding_shuffled"
EMBEDDING_MEAN = "embedding_mean"
NO_EMBEDDING = "no_embedding"
MULTI_TASK_ALIKE, PER_OBSERVER_ALIKE = "multi_task_alike", "per_observer_alike"
MULTI_TASK_PREDICTED = "multi_task_predicted_usm"
PER_OBSERVER_PREDICTED = "per_observer_predicted_usm"
EMBEDDING_PREDICTED = "embedding_predicted_usm"
PREDICTED_USM_ROWS = {
    MULTI_TASK_PREDICTED: MULTI_TASK,
    PER_OBSERVER_PREDICTED: PER_OBSERVER,
    EMBEDDING_PREDICTED: EMBEDDING,
}
"""The real-use rows (given the predicted USM) -> the row of the same model given the ground
truth."""
ROW_IDS = (
    GT_USM,
    GT_USM_LEAVE_ONE_OUT,
    PRETRAINED_USM,
    PREDICTED_USM,
    CENTRE_BIAS,
    MEAN_DISCREPANCY,
    PRIOR_BLEND,
    DENSITY_RATIO,
    MULTI_TASK,
    MULTI_TASK_PREDICTED,
    MULTI_TASK_ALIKE,
    PER_OBSERVER,
    PER_OBSERVER_PREDICTED,
    PER_OBSERVER_ALIKE,
    EMBEDDING,
    EMBEDDING_PREDICTED,
    EMBEDDING_SHUFFLED,
    EMBEDDING_MEAN,
    NO_EMBEDDING,
)
ROW_GLOSSARY = {
    GT_USM: "the ground-truth universal saliency map (USM: the mean of the training observers' "
    "maps of the image) alone, the reference every personalised row tries to beat (in the closed "
    "set without the scored observer's own map where `closed_usm=leave_one_out`)",
    GT_USM_LEAVE_ONE_OUT: "closed set: the USM without the scored observer, the other training "
    "observers' mean map (ours): the ground-truth USM holds 1/n of the very map it is scored "
    "against, and this row shows what that is worth",
    PRETRAINED_USM: "the USM of the universal network this one was fine-tuned from "
    "(`config.init_from`), as it came (the papers' DeepGaze row)",
    PREDICTED_USM: "the universal network's USM of the image (the fine-tuned DeepGaze row when "
    "fine-tuned): what a new image has instead of the ground truth",
    CENTRE_BIAS: "baseline without learning: the mean training USM, the same map for every image",
    MEAN_DISCREPANCY: "baseline without learning: the USM plus the observer's mean "
    "discrepancy (PSM - USM) on their own data",
    PRIOR_BLEND: "baseline without learning: a x USM + (1 - a) x the observer's mean PSM, "
    "a chosen per observer on their own data",
    DENSITY_RATIO: "baseline without learning: USM^g x the observer's density ratio "
    "(mean PSM / mean USM)^w, g and w chosen per observer on their own data",
    MULTI_TASK: "Xu et al.'s multi-task CNN: a shared trunk with one output head per training "
    "observer (closed set only: it has no head for an unseen observer)",
    MULTI_TASK_PREDICTED: "real use: the multi-task CNN given the universal network's USM of the "
    "test image instead of the ground truth",
    PER_OBSERVER: "one network per training observer; in the open set Strohm et al.'s oracle: for "
    "each unseen observer, the trained observer's network with the lowest error on that "
    "observer's test pairs (it peeks at the answers: an upper bound, not a method)",
    PER_OBSERVER_PREDICTED: "real use: the per-observer networks given the universal network's "
    "USM of the test image instead of the ground truth",
    EMBEDDING: "Strohm et al.'s method (the one the asterisks are about): the observer embedded "
    "from m (image, PSM) pairs of their own training images (never test images), a "
    "hypernetwork turning the embedding into the weights of the PSM network's layer",
    EMBEDDING_PREDICTED: "real use: the embedding network given the universal network's USM of "
    "the test image, the observer embedded from pairs with predicted USMs too",
    EMBEDDING_SHUFFLED: "control: the embedding network given another observer's "
    "embedding (each observer the next one's); if it scores like the embedding row, the network "
    "does not use who the person is",
    EMBEDDING_MEAN: "control: the embedding network given the training observers' mean "
    "embedding, one average person for everybody; the embedding row's gain over it is the "
    "personal part of its gain over the USM",
    NO_EMBEDDING: "control: the same recipe trained with one fixed embedding for everybody "
    "(`--config.embedding_input=none`), a universal refiner of the USM; the embedding row's gain "
    "over it is what knowing the person adds",
    MULTI_TASK_ALIKE: "baseline trained alike (ours): the multi-task CNN trained with the "
    "embedding network's log-ratio composition, KLD loss, optimiser and examples per observer "
    "(closed set only)",
    PER_OBSERVER_ALIKE: "baseline trained alike (ours): the per-observer networks trained with "
    "the embedding network's log-ratio composition, KLD loss, optimiser and examples per "
    "observer; in the open set the oracle, chosen by the composed map's KLD",
}
"""Row id -> what the row is, in one line (the report's row glossary; the module docstring)."""
ARCHITECTURE_NAMES = {"strohm": "Strohm et al.'s architecture", "xu": "Xu et al.'s architecture"}
"""The per-observer networks' `config.architecture` in words (row names, the report)."""
CONTROLS = (EMBEDDING_SHUFFLED, EMBEDDING_MEAN, NO_EMBEDDING)
"""The rows that test the embedding network rather than compete with it."""
BASELINES = (CENTRE_BIAS, MEAN_DISCREPANCY, PRIOR_BLEND, DENSITY_RATIO)
"""The rows without learning (ours)."""
TRAINED_ALIKE = (MULTI_TASK_ALIKE, PER_OBSERVER_ALIKE)
"""The baselines trained alike the embedding network (ours)."""
CONTROL_KINDS = {
    NO_EMBEDDING: "psm_network",
    MULTI_TASK_ALIKE: "multi_task",
    PER_OBSERVER_ALIKE: "per_observer",
}
"""The models trained as controls or baselines trained alike (`psm_jax.configs.main.CONTROLS`)
-> the kind of model each is."""
OURS = EMBEDDING
"""The row the papers' asterisks are about (Strohm et al.'s method)."""


@dataclasses.dataclass(frozen=True)
class Row:
    """One table row: `id` (stable, a JSON key), `name` (for display), `psm` (P, H, W), and
    `given_predicted_usm`: whether a personalised model made it from the universal model's USM
    (real use: the real-use rows, and every row of a model trained on predicted USMs), which the
    tables then also compare with that USM alone."""

    id: str
    name: str
    psm: np.ndarray
    given_predicted_usm: bool = False


@dataclasses.dataclass(frozen=True)
class Models:
    """The restored models of an evaluation, each optional (`psm_jax.inference.Restored`).

    `psm_network` needs `embedding` (the encoder that embeds the evaluated observers).
    `pretrained_universal` is the network `universal` was fine-tuned from, if it was.
    """

    embedding: inference.Restored | None = None
    psm_network: inference.Restored | None = None
    multi_task: inference.Restored | None = None
    per_observer: inference.Restored | None = None
    universal: inference.Restored | None = None
    pretrained_universal: inference.Restored | None = None
    no_embedding: inference.Restored | None = None
    multi_task_alike: inference.Restored | None = None
    per_observer_alike: inference.Restored | None = None

    @classmethod
    def restore(
        cls,
        workdirs: dict[str, str],
        restored: dict[str, inference.Restored] | None = None,
        compute_dtype: str | None = None,
    ) -> Models:
        """Restores each given workdir once (model name -> workdir; the names of
        `psm_jax.registry.MODELS`), checking that each holds the model it is given as. Models the
        caller has restored already go in `restored` and are not restored again.
        `compute_dtype`: see `psm_jax.inference.restore`."""
        unknown = set(workdirs) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise ValueError(f"No evaluation row uses models {sorted(unknown)}.")
        restored = dict(restored or {})
        for name, path in workdirs.items():
            if path and name not in restored:
                kind = CONTROL_KINDS.get(name, name)
                restored[name] = inference.restore(path, kind=kind, compute_dtype=compute_dtype)
                if name == NO_EMBEDDING and restored[name].config.get("embedding_input") != "none":
                    raise ValueError(
                        f"{path} is a PSM network trained with embeddings, not the no-embedding "
                        "control (--config.embedding_input=none)."
                    )
                if name in TRAINED_ALIKE and restored[name].composition[0] != "log_ratio":
                    raise ValueError(
                        f"{path} is a {kind} model of the papers' additive form, not one trained "
                        "alike the embedding network (--config.controls, "
                        "psm_jax.configs.experiments.trained_alike)."
                    )
        universal = restored.get("universal")
        if universal is not None and universal.config.get("init_from"):
            restored["pretrained_universal"] = inference.restore(
                universal.config.init_from, kind="universal"
            )
        if "psm_network" in restored and "embedding" not in restored:
            raise ValueError("The embedding network's row needs the encoder's workdir too.")
        return cls(**restored)

    def dataset(self) -> tuple[str, str]:
        """(dataset, data_dir) the given models were trained on (the universal network a fine-tuned
        one started from may come from another dataset: it does not count); a ValueError when
        they differ or no model is given."""
        sources = {
            (r.config.dataset, r.config.data_dir)
            for name, r in self.given().items()
            if name != "pretrained_universal"
        }
        if len(sources) != 1:
            raise ValueError(
                "The workdirs were trained on different datasets: " + str(sorted(sources))
                if sources
                else "No trained model given to evaluate."
            )
        return sources.pop()

    def given(self) -> dict[str, inference.Restored]:
        """The restored models by name."""
        return {
            f.name: getattr(self, f.name)
            for f in dataclasses.fields(self)
            if getattr(self, f.name) is not None
        }


_PREDICTED = " w/ predicted USM"


def _suffix(restored: inference.Restored) -> str:
    return _PREDICTED if restored.predicted_usm else " w/ GT USM"


def _per_observer_oracle(model: inference.Restored, evaluation: EvaluationSet, usm) -> np.ndarray:
    """For each unseen observer, the trained observer whose network fits that observer's test
    pairs best by the loss the model was trained on: the discrepancy MSE for the papers' additive
    form, the KLD of the composed map to the PSM for the log-ratio form (trained alike); returns
    (P, 15, 20) outputs of the chosen networks."""
    images = evaluation.pair_images
    log_ratio = model.composition[0] == "log_ratio"
    target = saliency_maps.discrepancy_maps(evaluation.psm, usm, saliency_maps.OUTPUT_SIZE)
    losses, predictions = [], []
    for k in range(model.model.num_observers):
        prediction = inference.predict_discrepancy_of_observer(model, images, usm, k)
        predictions.append(prediction)
        if log_ratio:
            composed = inference.compose(model, usm, prediction, 0.0, 1.0)
            losses.append(np.asarray(metrics.kld(composed, evaluation.psm)))
        else:
            losses.append(np.mean((prediction - target) ** 2, axis=(1, 2)))
    losses, predictions = np.stack(losses), np.stack(predictions)  # (K, P), (K, P, h, w)
    chosen = np.zeros(len(evaluation.image), np.int64)
    for observer in np.unique(evaluation.observer):
        pairs = evaluation.observer == observer
        chosen[pairs] = int(np.argmin(losses[:, pairs].mean(axis=1)))
    return predictions[chosen, np.arange(len(chosen))]


def _baseline_rows(
    evaluation: EvaluationSet,
    source,
    metadata,
    enrolment,
    usm_floor: float,
    discrepancy_weight: float,
) -> list[Row]:
    """The rows without learning; `enrolment`: the open set's enrolment image indices per
    observer (None in the closed set, where every training image counts)."""
    pair_usm = evaluation.pair_usm
    centre = priors_lib.centre_bias(source, metadata)
    rows = [
        Row(
            CENTRE_BIAS,
            "Centre bias (mean training USM; ours)",
            np.broadcast_to(centre, pair_usm.shape),
        )
    ]
    if evaluation.protocol == "open" and enrolment is None:
        return rows
    priors = priors_lib.observer_priors(source, metadata, evaluation.group, enrolment)
    observer = evaluation.observer
    discrepancy = priors.mean_discrepancy[observer]
    rows.append(
        Row(
            MEAN_DISCREPANCY,
            "USM + observer's mean discrepancy (ours)",
            inference.compose_psm(pair_usm, discrepancy, usm_floor, discrepancy_weight),
        )
    )
    blended = priors_lib.blend(pair_usm, priors.mean_psm[observer], priors.blend[observer])
    rows.append(Row(PRIOR_BLEND, "a x USM + (1 - a) x observer's mean PSM (ours)", blended))
    reweighted = priors_lib.density_ratio_map(
        pair_usm,
        priors.density_ratio[observer],
        priors.gamma[observer],
        priors.ratio_weight[observer],
    )
    rows.append(Row(DENSITY_RATIO, "USM^g x observer's density ratio^w (ours)", reweighted))
    return rows


def needs_embeddings(models: Models, protocol: str, baselines: bool = True) -> bool:
    """Whether `predict_rows` reads the evaluated observers' embeddings: for the embedding
    network's rows, and for the open set's baselines (their enrolment sets)."""
    if models.embedding is None:
        return False
    return models.psm_network is not None or (baselines and protocol == "open")


def real_use_rows(models: Models) -> bool:
    """Whether `predict_rows` adds the real-use rows (given the predicted USM): a universal model
    is given, and a personalised model trained on ground-truth USMs."""
    trained_on_truth = [
        restored
        for restored in (models.multi_task, models.per_observer, models.psm_network)
        if restored is not None and not restored.predicted_usm
    ]
    return models.universal is not None and bool(trained_on_truth)


def needs_predicted_usm_embeddings(models: Models) -> bool:
    """Whether `predict_rows` reads the evaluated observers embedded from sets whose USMs are the
    universal model's (the embedding network's real-use row)."""
    return (
        real_use_rows(models)
        and models.psm_network is not None
        and models.embedding is not None
        and not models.psm_network.predicted_usm
    )


def embed_evaluated_observers(
    encoder: inference.Restored,
    source,
    metadata,
    *,
    group: str,
    m: int,
    pair_cache: dict | None = None,
    usms: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Each observer of `group` embedded once from m (image, PSM) pairs of their own training
    images, as the tables do: ((observers, d), (observers, m) record indices of the set's images,
    the enrolment data of the open set's baselines). `pair_cache`, `usms` (the images' USMs in
    place of the ground truth): see `psm_jax.inference.embed_observers`."""
    vectors, enrolment = inference.embed_observers(
        encoder,
        source,
        metadata,
        group=group,
        m=m,
        with_image_index=True,
        pair_cache=pair_cache,
        usms=usms,
    )
    return vectors[:, 0], enrolment[:, 0]


def predict_rows(
    evaluation: EvaluationSet,
    models: Models,
    *,
    source,
    metadata,
    observer_embeddings: tuple[np.ndarray, np.ndarray] | None,
    usm_floor: float,
    discrepancy_weight: float,
    baselines: bool = True,
    predicted_usm_embeddings: np.ndarray | None = None,
    training_embeddings: np.ndarray | None = None,
) -> list[Row]:
    """Every row whose model is given, in table order (module docstring).

    Args:
      evaluation: the pairs.
      models: the restored models.
      source, metadata: the dataset's training split (`psm_jax.data.pipeline.open_split`), where
        the baselines' statistics come from.
      observer_embeddings: the evaluated group's embeddings and enrolment image indices
        (`embed_evaluated_observers`); needed where `needs_embeddings` says so, else None.
      usm_floor: the composition's floor (`psm_jax.configs.evaluation`).
      discrepancy_weight: the composition's weight on every predicted discrepancy (the same
        config; 1 = the papers').
      baselines: add the rows without learning.
      predicted_usm_embeddings: (observers, d) the evaluated group embedded from the same sets
        with the universal model's USMs of the images (`needs_predicted_usm_embeddings`).
      training_embeddings: (training observers, d) their embeddings, for the mean-embedding
        control (left out when None).
    """
    if needs_embeddings(models, evaluation.protocol, baselines) and observer_embeddings is None:
        raise ValueError("These rows need the evaluated observers' embeddings (the encoder).")
    if needs_predicted_usm_embeddings(models) and predicted_usm_embeddings is None:
        raise ValueError("The real-use rows need embeddings from predicted USMs.")
    any_real_use = real_use_rows(models)
    pair_usm = evaluation.pair_usm
    images = evaluation.pair_images
    embeddings, enrolment = observer_embeddings or (None, None)
    leave_one_out = evaluation.closed_usm == "leave_one_out" and evaluation.protocol == "closed"
    rows = [
        Row(
            GT_USM,
            "USM (ground truth, without the scored observer)"
            if leave_one_out
            else "USM (ground truth)",
            pair_usm,
        )
    ]
    if evaluation.leave_one_out_usm is not None and not leave_one_out:
        rows.append(
            Row(
                GT_USM_LEAVE_ONE_OUT,
                "USM without the scored observer (leave-one-out; ours)",
                evaluation.leave_one_out_usm,
            )
        )
    predicted_usm = None
    if models.pretrained_universal is not None:
        origin = models.pretrained_universal.config.dataset
        usm = inference.predicted_usms(
            models.pretrained_universal,
            evaluation.images_at(models.pretrained_universal.input_size),
        )
        name = f"USM (universal network trained on {origin}, not fine-tuned)"
        rows.append(Row(PRETRAINED_USM, name, usm[evaluation.image]))
    if models.universal is not None:
        predicted_usm = inference.predicted_usms(
            models.universal, evaluation.images_at(models.universal.input_size)
        )
        predicted_usm = predicted_usm[evaluation.image]
        name = (
            "USM (fine-tuned universal network)"
            if models.pretrained_universal is not None
            else "USM (predicted by the universal network)"
        )
        rows.append(Row(PREDICTED_USM, name, predicted_usm))
    if baselines:
        open_enrolment = enrolment if evaluation.protocol == "open" else None
        rows += _baseline_rows(
            evaluation, source, metadata, open_enrolment, usm_floor, discrepancy_weight
        )

    def compose(restored, usm: np.ndarray, discrepancy: np.ndarray) -> np.ndarray:
        return inference.compose(restored, usm, discrepancy, usm_floor, discrepancy_weight)

    def base_usm(restored: inference.Restored) -> np.ndarray:
        if restored.predicted_usm and predicted_usm is not None:
            return predicted_usm
        return pair_usm

    def real_use(restored: inference.Restored) -> bool:
        return any_real_use and not restored.predicted_usm

    def observer_model_rows(restored, row_id: str, predicted_row_id: str | None, name: str):
        """The rows of a model with one head/network per training observer: given its own USM
        and, for real use, the predicted one; in the open set the per-observer oracle."""
        given = [(row_id, base_usm(restored))]
        if predicted_row_id is not None and real_use(restored):
            given.append((predicted_row_id, predicted_usm))
        for current, usm in given:
            suffix = _suffix(restored) if current == row_id else _PREDICTED
            if evaluation.protocol == "closed":
                discrepancy = inference.predict_discrepancy(
                    restored, images, usm, evaluation.observer
                )
            else:
                discrepancy = _per_observer_oracle(restored, evaluation, usm)
                suffix += ", oracle"
            psm = compose(restored, usm, discrepancy)
            rows.append(Row(current, name + suffix, psm, usm is predicted_usm))

    alike = " trained alike the embedding network (log-ratio, KLD, its examples; ours)"
    if evaluation.protocol == "closed":  # no head for an unseen observer
        if models.multi_task is not None:
            observer_model_rows(
                models.multi_task, MULTI_TASK, MULTI_TASK_PREDICTED, "Multi-task CNN (Xu et al.)"
            )
        if models.multi_task_alike is not None:
            observer_model_rows(
                models.multi_task_alike, MULTI_TASK_ALIKE, None, "Multi-task CNN" + alike
            )
    if models.per_observer is not None:
        architecture = models.per_observer.config.architecture
        observer_model_rows(
            models.per_observer,
            PER_OBSERVER,
            PER_OBSERVER_PREDICTED,
            f"Per-observer networks ({ARCHITECTURE_NAMES.get(architecture, architecture)})",
        )
    if models.per_observer_alike is not None:
        observer_model_rows(
            models.per_observer_alike, PER_OBSERVER_ALIKE, None, "Per-observer networks" + alike
        )
    if models.psm_network is not None:
        if models.embedding is None:
            raise ValueError("The embedding network's row needs the encoder too.")
        name = "Embedding + hypernetwork (Strohm et al.)"
        usm = base_usm(models.psm_network)
        discrepancy = inference.predict_discrepancy(
            models.psm_network, images, usm, embeddings[evaluation.observer]
        )
        rows.append(
            Row(
                EMBEDDING,
                name + _suffix(models.psm_network),
                compose(models.psm_network, usm, discrepancy),
                usm is predicted_usm,
            )
        )
        if real_use(models.psm_network):
            discrepancy = inference.predict_discrepancy(
                models.psm_network,
                images,
                predicted_usm,
                predicted_usm_embeddings[evaluation.observer],
            )
            rows.append(
                Row(
                    EMBEDDING_PREDICTED,
                    name + _PREDICTED + ", enrolled on predicted USMs",
                    compose(models.psm_network, predicted_usm, discrepancy),
                    True,
                )
            )
        if len(embeddings) > 1:
            another = np.roll(np.arange(len(embeddings)), -1)[evaluation.observer]
            discrepancy = inference.predict_discrepancy(
                models.psm_network, images, usm, embeddings[another]
            )
            rows.append(
                Row(
                    EMBEDDING_SHUFFLED,
                    "Embedding + hypernetwork given another observer's embedding (control; ours)",
                    compose(models.psm_network, usm, discrepancy),
                )
            )
        if models.no_embedding is not None:
            control = models.no_embedding
            usm = base_usm(control)
            size = embeddings.shape[-1]
            constant = np.broadcast_to(loop.constant_embedding(size), (len(images), size))
            discrepancy = inference.predict_discrepancy(control, images, usm, constant)
            rows.append(
                Row(
                    NO_EMBEDDING,
                    "No embedding: the same network trained as a universal refiner of the USM "
                    "(control; ours)",
                    compose(control, usm, discrepancy),
                    usm is predicted_usm,
                )
            )
        if training_embeddings is not None:
            mean = np.mean(training_embeddings, axis=0)
            mean = mean / max(float(np.linalg.norm(mean)), 1e-12)
            discrepancy = inference.predict_discrepancy(
                models.psm_network,
                images,
                usm,
                np.broadcast_to(mean, embeddings[evaluation.observer].shape),
            )
            rows.append(
                Row(
                    EMBEDDING_MEAN,
                    "Embedding + hypernetwork given the training observers' mean embedding "
                    "(control; ours)",
                    compose(models.psm_network, usm, discrepancy),
                    usm is predicted_usm,
                )
            )
    return rows


def psm_network_activity(
    evaluation: EvaluationSet, models: Models, embeddings: np.ndarray, *, count: int = 64
) -> dict[str, float]:
    """How alive each ReLU layer of the PSM network is on the first `count` pairs
    (`psm_jax.registry.relu_activity`), the observers embedded as for the table (`embeddings`:
    (observers of the evaluated group, d)); {} without a PSM network."""
    if models.psm_network is None:
        return {}
    chosen = slice(0, count)
    batch = {
        "image": evaluation.pair_images[chosen],
        "usm": evaluation.pair_usm[chosen],
        "embedding": embeddings[evaluation.observer[chosen]],
    }
    names: list[str] = []

    # Defined per call, so it is traced (and `names` filled) on every call.
    @nnx.jit
    def activity(model, batch):
        # A jitted dict comes back in sorted key order; the tuple keeps the layers' order.
        values = registry.relu_activity(model, batch)
        names[:] = list(values)
        return tuple(values.values())

    values = activity(models.psm_network.model, batch)
    return {name: float(value) for name, value in zip(names, values, strict=True)}
