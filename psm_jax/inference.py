"""Running trained models: restore them from their workdirs, predict USMs, discrepancies and PSMs,
embed observers.

The layer between training and everything that uses trained models (evaluation, enrolment,
prediction, the USM export, the main job). Each job restores a model once with `restore`, which
reads its parameters only (no optimiser, no data source; `psm_jax.train.checkpoint.restore_model`),
and passes the `Restored` model down.

The composition every personalised prediction goes through lives here, in `compose_psm`:

    predicted PSM = clip(USM + discrepancy resized (bilinear) to the USM's grid, f x USM, 1)

with the USM floor f from the evaluation config (`psm_jax.configs.evaluation`: 0.3, ours; f = 0
is the papers' clip at 0). `psm_jax.losses.composed_kld` trains against the papers' composition
(f = 0) with a smooth gradient; a test pins its value to `compose_psm`. A PSM network trained with
`config.composition="log_ratio"` (ours) outputs a log density ratio instead:

    predicted PSM = USM x exp(s x output resized (bilinear)), scaled to a maximum of 1

(s = `config.log_ratio_scale`; no floor is needed), the map `psm_jax.losses.log_ratio_kld` trains;
`compose` picks the form from the model's config.
"""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import nnx
from tqdm import tqdm

from psm_jax import disk, registry
from psm_jax.data import pipeline, saliency_maps
from psm_jax.models import embedding as embedding_lib
from psm_jax.models import layers
from psm_jax.models import universal as universal_lib
from psm_jax.train import checkpoint

BATCH_SIZE = 64
"""Examples per forward pass: one compiled shape for every full batch."""


@dataclasses.dataclass(frozen=True)
class Restored:
    """A trained model with the config it was trained with.

    Attributes:
      workdir: where it was trained.
      config: its training config (config.json).
      model: the model in eval mode.
      step: the checkpoint's step.
    """

    workdir: Path
    config: ml_collections.ConfigDict
    model: nnx.Module
    step: int

    @property
    def kind(self) -> str:
        """The registry name of the model (`config.model`)."""
        return self.config.model

    @property
    def working_size(self) -> tuple[int, int]:
        """(H, W) of the images and maps it was trained on."""
        return tuple(self.config.get("working_size") or saliency_maps.WORKING_SIZE)

    @property
    def composition(self) -> tuple[str, float]:
        """(form, scale) of how its output makes a PSM (`compose_psm`): "log_ratio" where a
        discrepancy model was trained with it (`psm_jax.registry.composition`)."""
        discrepancy_model = registry.get(self.kind).conditioned_on is not None
        form = self.config.get("composition", "additive") if discrepancy_model else None
        return (form or "additive", float(self.config.get("log_ratio_scale", 2.0)))

    @property
    def input_size(self) -> tuple[int, int]:
        """(H, W) the model reads its images at: a universal model with a backbone reads them at
        the backbone's input size (`psm_jax.models.universal.UniversalConfig.input_size`), every
        other model at the working size."""
        if self.kind == "universal":
            architecture = registry.get("universal").architecture(self.config)
            if architecture.backbone:
                return tuple(architecture.input_size)
        return self.working_size

    @property
    def predicted_usm(self) -> bool:
        """Whether a discrepancy model was trained on predicted (external) USMs."""
        return self.config.usm == "external"


def restore(
    workdir: str | Path,
    *,
    kind: str | None = None,
    which: str = "best",
    compute_dtype: str | None = None,
) -> Restored:
    """The trained model of `workdir`, parameters only.

    Args:
      workdir: a training workdir (config.json + checkpoints/).
      kind: the model expected there (a registry name); another kind is a ValueError naming both.
      which: "best" (lowest validation loss) or "latest" checkpoint.
      compute_dtype: None (as trained) or a dtype of `psm_jax.models.layers.COMPUTE_DTYPES` for
        the models that have the option (the encoder, the PSM network, Strohm's per-observer
        networks; the others compute in float32): e.g. "bfloat16" on an accelerator.
    """
    config = checkpoint.load_config(workdir)
    if kind is not None and config.model != kind:
        raise ValueError(f"{workdir} holds a {config.model!r} model, not {kind!r}.")
    model, config, step = checkpoint.restore_model(workdir, which, compute_dtype=compute_dtype)
    return Restored(workdir=Path(workdir), config=config, model=model, step=step)


def universal_beside(*workdirs: str | Path | None) -> Path | None:
    """The universal model a main job trained beside one of these model workdirs
    (`<its folder>/universal`): the USMs a new person's images get when no universal model is
    named (`launch/enroll.py`, `launch/predict.py`). None where there is none."""
    for workdir in workdirs:
        if workdir:
            candidate = Path(workdir).absolute().parent / "universal"
            if (candidate / "config.json").exists():
                return candidate
    return None


def in_batches(function, *arrays: np.ndarray, batch_size: int = BATCH_SIZE) -> np.ndarray:
    """`function` applied to consecutive batches of `arrays` (same length), outputs concatenated.
    Every call sees `batch_size` rows (the last batch padded, `layers.pad_batch`) unless all the
    arrays are shorter than that."""
    total = len(arrays[0])
    size = min(batch_size, total)
    outputs = []
    for i in range(0, total, batch_size):
        batch = [layers.pad_batch(np.asarray(a[i : i + batch_size]), size) for a in arrays]
        outputs.append(np.asarray(function(*batch))[: min(batch_size, total - i)])
    return np.concatenate(outputs)


def compose_psm(
    usm: np.ndarray,
    discrepancy: np.ndarray,
    usm_floor: float,
    discrepancy_weight: float,
    composition: str = "additive",
    log_ratio_scale: float = 2.0,
) -> np.ndarray:
    """Predicted PSMs: clip(USM + w x discrepancy resized bilinearly to the USM's grid, f USM, 1);
    with `composition="log_ratio"`, USM x exp(w x s x the resized output) scaled to a peak of 1.

    Args:
      usm: (..., H, W) in [0, 1].
      discrepancy: (..., h, w) predicted discrepancy (15x20 for the networks here), or the log
        density ratio in units of s for "log_ratio".
      usm_floor: f in [0, 1]; 0 is the papers' composition (`psm_jax.configs.evaluation`); not
        used by "log_ratio".
      discrepancy_weight: w in [0, 2]; 1 is the papers' composition, 0 gives the USM back (the
        evaluation's default is `psm_jax.configs.evaluation`'s, 0.5).
      composition, log_ratio_scale: the model's (`Restored.composition`).
    """
    if not 0.0 <= usm_floor <= 1.0:
        raise ValueError(f"usm_floor must be in [0, 1], got {usm_floor}")
    if not 0.0 <= discrepancy_weight <= 2.0:
        raise ValueError(f"discrepancy_weight must be in [0, 2], got {discrepancy_weight}")
    size = usm.shape[-2:]
    resized = np.asarray(jax.image.resize(discrepancy, discrepancy.shape[:-2] + size, "bilinear"))
    usm = np.asarray(usm, np.float32)
    if composition == "log_ratio":
        maps = usm * np.exp(discrepancy_weight * log_ratio_scale * resized)
        peak = maps.max(axis=(-2, -1), keepdims=True)
        return (maps / np.where(peak > 0, peak, 1.0)).astype(np.float32)
    if composition != "additive":
        raise ValueError(f"composition must be 'additive' or 'log_ratio', got {composition!r}")
    return np.clip(usm + discrepancy_weight * resized, usm_floor * usm, 1.0)


def check_composition(usm_floor: float, discrepancy_weight: float) -> None:
    """A ValueError naming the flag when the composition's USM floor is outside [0, 1] or its
    discrepancy weight outside [0, 2] (NaN included: it would make an all-NaN map)."""
    if not 0.0 <= usm_floor <= 1.0:
        raise ValueError(f"--config.usm_floor must be in [0, 1], got {usm_floor}")
    if not 0.0 <= discrepancy_weight <= 2.0:
        raise ValueError(f"--config.discrepancy_weight must be in [0, 2], got {discrepancy_weight}")


def compose(
    restored: Restored,
    usm: np.ndarray,
    discrepancy: np.ndarray,
    usm_floor: float,
    discrepancy_weight: float,
) -> np.ndarray:
    """`compose_psm` in the form `restored` was trained with: an additive discrepancy with the
    given floor and weight; a log ratio exactly as trained (weight 1, no floor), which on OSIE's
    validation images beat weight 0.5 on CC, SIM and KLD (docs/results_log.md, 2026-12-03)."""
    form, scale = restored.composition
    if form == "log_ratio":
        discrepancy_weight = 1.0
    return compose_psm(usm, discrepancy, usm_floor, discrepancy_weight, form, scale)


# Jitted once at module level, so repeated calls (each row, each oracle candidate, each protocol)
# reuse the compiled function instead of tracing a new one.
@nnx.jit
def _usm(model, images):
    return model.usm(layers.model_input(images, None))


@nnx.jit
def _final_discrepancy(model, images, usm, condition):
    return registry.discrepancy_outputs(model, images, usm, condition)[-1]


@nnx.jit(static_argnames="size")
def _readout_usm(model, features, size):
    return model.usm(features, size)


BACKBONE_BATCH_SIZE = 16
"""Images per backbone call when predicting USMs (its activations at 384x512: ~40 MB per image)."""


def predicted_usms(universal: Restored, images) -> np.ndarray:
    """(N, H, W) USMs at the working size of images by a trained universal model.

    Args:
      universal: the restored universal model.
      images: (N, H, W, 3) uint8, or a list of (H_i, W_i, 3) images of any size: each is resized
        to the model's input size (`Restored.input_size`; box resampling, as the datasets'
        images are decoded). A model with a backbone reads them larger than the working size:
        give the images at their own resolution (or at least the input size) where there is one.
    """
    _expect(universal, "universal")
    size = universal.input_size
    images = np.stack([pipeline.resize_image(image, size) for image in images])
    architecture = registry.get("universal").architecture(universal.config)
    if not architecture.backbone:
        return in_batches(lambda batch: _usm(universal.model, batch), images)

    def readout(batch):
        features = universal_lib.backbone_features(architecture, batch)
        return _readout_usm(universal.model, features, universal.working_size)

    return in_batches(readout, images, batch_size=BACKBONE_BATCH_SIZE)


def source_usms(universal: Restored, source, *, batch_size: int = 64) -> np.ndarray:
    """(records, H, W) the USM of every record of a data source by a trained universal model, in
    record order; each image decoded at the model's input size from its stored bytes (as the
    model's training read it)."""
    maps = []
    for start in range(0, len(source), batch_size):
        images = [
            pipeline.decode_image(source[i]["image"], universal.input_size)
            for i in range(start, min(start + batch_size, len(source)))
        ]
        maps.append(predicted_usms(universal, images))
    return np.concatenate(maps)


def export_usms(
    universal: Restored,
    output_dir: str | Path,
    *,
    batch_size: int = 32,
    progress: bool = True,
) -> Path:
    """Writes the universal model's USM of every image of its dataset (every split) as
    `<output_dir>/<image stem>.npy`, the map at the working size in [0, 1]: the folder that
    `--config.usm=external --config.external_usm_dir=...` (the "predicted" config option, the main
    job's `usm_source="predicted"`) reads. The maps are written into a temporary folder beside
    `output_dir` and moved there when all are written, so an interrupted export leaves no partial
    folder; an existing `output_dir` is kept as it is (returned without recomputing)."""
    _expect(universal, "universal")
    output = Path(output_dir)
    if output.is_dir():
        return output
    partial = output.with_name(output.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    full_disk = disk.writing(output, folder=True, what_to_do="export to another folder")
    with full_disk:
        try:
            partial.mkdir(parents=True)
            config = universal.config
            for split in ("train", "validation", "test"):
                source, _ = pipeline.open_split(config.dataset, split, config.data_dir)
                starts = range(0, len(source), batch_size)
                for start in tqdm(starts, desc=f"USMs of {split}", disable=not progress):
                    records = [
                        source[i] for i in range(start, min(start + batch_size, len(source)))
                    ]
                    images = [
                        pipeline.decode_image(r["image"], universal.input_size) for r in records
                    ]
                    for record, usm in zip(records, predicted_usms(universal, images), strict=True):
                        stem = Path(pipeline.image_id(record)).stem
                        np.save(partial / f"{stem}.npy", usm.astype(np.float32))
        except OSError:
            shutil.rmtree(partial, ignore_errors=True)  # a partial export: free its space
            raise
    partial.rename(output)
    return output


def predict_discrepancy(
    restored: Restored, images: np.ndarray, usm: np.ndarray, condition: np.ndarray
) -> np.ndarray:
    """A discrepancy model's final output for every example: (N, 15, 20).

    Args:
      restored: a PSM network, multi-task CNN or per-observer networks.
      images: (N, H, W, 3) uint8; usm: (N, H, W), the USM the model was trained with (ground
        truth or predicted).
      condition: (N,) training-observer indices (multi-task, per-observer) or (N, d) user
        embeddings (PSM network).
    """
    if registry.get(restored.kind).conditioned_on is None:
        raise ValueError(f"{restored.workdir} holds a {restored.kind!r} model: no discrepancy.")
    return in_batches(
        lambda *batch: _final_discrepancy(restored.model, *batch), images, usm, condition
    )


def predict_discrepancy_of_observer(
    restored: Restored, images: np.ndarray, usm: np.ndarray, observer: int
) -> np.ndarray:
    """`predict_discrepancy` with one training observer's layers for every example: (N, 15, 20).
    For the multi-task CNN and the per-observer networks, whose per-observer layers then run as
    ordinary convolutions (one compiled program for every observer)."""
    if registry.get(restored.kind).conditioned_on != "observer":
        raise ValueError(f"{restored.workdir} holds a {restored.kind!r} model: no observer heads.")
    index = jnp.asarray(observer, jnp.int32)
    return in_batches(lambda *batch: _final_discrepancy(restored.model, *batch, index), images, usm)


def set_stream(
    source,
    metadata: pipeline.DatasetMetadata,
    *,
    group: str,
    m: int,
    seed: int = 0,
    sets_per_observer: int = 1,
    external_usm_dir: str | None = None,
):
    """The stream of m-pair sets of `group`'s observers that `embed_observers` embeds (the
    dataset's training images; `pipeline.embedding_dataset`, 8 sets per batch), for anything
    that summarises the same sets otherwise."""
    return pipeline.embedding_dataset(
        source,
        metadata,
        batch_size=8,
        m=m,
        seed=seed,
        observers=group,
        sets_per_observer=sets_per_observer,
        drop_remainder=False,
        external_usm_dir=external_usm_dir,
    )


def m_out_of_range(m: int, train_images: int | None = None, dataset: str = "") -> str:
    """Why m (pairs per enrolment set; `--config.m` of launch/evaluate.py,
    `--config.evaluation.m` of launch/main.py) is out of range: a set is drawn from a window of
    2 m of the train split's images, so m runs from 1 to half of them."""
    upper = "half the train split's images" if train_images is None else str(train_images // 2)
    where = f"; the train split of {dataset} has {train_images} images" if train_images else ""
    return (
        f"--config.m={m}: m must be an integer from 1 to {upper} (each set of m pairs is drawn "
        f"from 2 m training images{where})."
    )


def embed_observers(
    encoder: Restored,
    source,
    metadata: pipeline.DatasetMetadata,
    *,
    group: str,
    m: int,
    per_observer: int = 1,
    sets_per_observer: int = 1,
    seed: int = 0,
    with_image_index: bool = False,
    pair_cache: dict | None = None,
    usms: np.ndarray | None = None,
):
    """Embeddings of random m-pair sets of each observer of `group`, drawn from the images of
    `source` (the dataset's training images, never its test images): (observers in group,
    per_observer, d).

    Args:
      encoder: a trained embedding encoder.
      source, metadata: `psm_jax.data.pipeline.open_split(dataset, "train", data_dir)`.
      group: "train", "validation" or "test" observers.
      m: pairs per set.
      per_observer: sets embedded per observer.
      sets_per_observer: sets each observer draws per window of images
        (`psm_jax.data.pipeline.embedding_dataset`).
      seed: the draws' seed.
      with_image_index: also return the record indices of each set's images (observers, per
        observer, m): the enrolment data the embeddings were made from.
      pair_cache: encode each (observer, image) pair once across the sets, and across calls
        given the same dict for the same encoder, source and group
        (`psm_jax.models.embedding.collect_embeddings`).
      usms: (records of `source`, H, W): the USM of each image in place of the one the encoder
        trained with, for an encoder that reads the departure from the USM: e.g. the universal
        network's (`predicted_usms`), which is all a new person's enrolment has. None: the USMs
        it trained with (the ground truth, or its config's external USMs).
    """
    _expect(encoder, "embedding")
    if not 1 <= m <= len(source) // 2:
        raise ValueError(m_out_of_range(m, len(source), metadata.name))
    stream = set_stream(
        source,
        metadata,
        group=group,
        m=m,
        seed=seed,
        sets_per_observer=sets_per_observer,
        # An encoder trained on an external model's USMs (the "predicted" option) reads them here
        # too, not the ground truth.
        external_usm_dir=encoder.config.external_usm_dir if encoder.predicted_usm else None,
    )
    if usms is not None:
        if len(usms) != len(source):
            raise ValueError(f"usms holds {len(usms)} maps for {len(source)} records.")
        stream = ({**batch, "usms": usms[batch["image_index"]]} for batch in stream)
    count = len(metadata.observers(group))
    return embedding_lib.collect_embeddings(
        encoder.model,
        stream,
        count,
        per_observer,
        with_image_index=with_image_index,
        pair_cache=pair_cache,
    )


def _expect(restored: Restored, kind: str) -> None:
    if restored.kind != kind:
        raise ValueError(f"{restored.workdir} holds a {restored.kind!r} model, not {kind!r}.")
