"""Preparing the psm-jax TFDS datasets without TensorFlow, and summarising a prepared one.

`tfds build` imports TensorFlow; `build_dataset` is the TF-free way (array_record records, loaded
with `tfds.data_source` / `psm_jax.data.pipeline.open_split`).

The builders live in the `tfds_builders` package, which imports this one:
`tfds_builders.register()` registers them with TFDS. The entry points call it (the launchers, the
benchmarks and studies, `tests/conftest.py`, and any program that loads the datasets); nothing
below them imports it, so the data layer has no import cycle.
"""

from __future__ import annotations

import contextlib
import shutil
from pathlib import Path

import numpy as np
import tensorflow_datasets as tfds
from absl import logging

from psm_jax import disk
from psm_jax.data.releases.base import fingerprint, fingerprint_differences

DEFAULT_DATA_DIR = "data/tfds"

BUILD_LOCK = ".build.lock"
"""Held in `<data_dir>/<dataset>/<config>/` while `build_dataset` prepares that config."""

DATASETS = (
    "osie_personal",
    "personalized_saliency",
    "individual_differences",
    "synthetic_personal_saliency",
)
"""The psm-jax datasets (one builder each in `tfds_builders/`)."""


def builder(name: str, **kwargs) -> tfds.core.DatasetBuilder:
    """`tfds.builder(name, **kwargs)` for a psm-jax dataset, with clear errors for an unknown name
    and for builders that were not registered (`tfds_builders.register()`)."""
    if name.split("/")[0] not in DATASETS:
        raise ValueError(f"Unknown dataset {name!r}; expected one of {DATASETS}.")
    try:
        # Without the registered class, TFDS would open a prepared dataset read-only and lose
        # its metadata (observer split, quality counts).
        tfds.core.registered.imported_builder_cls(name.split("/")[0])
    except tfds.core.registered.DatasetNotFoundError as error:
        raise RuntimeError(
            f"The TFDS builder of {name!r} is not registered: call "
            "`tfds_builders.register()` before loading psm-jax datasets (the launchers do)."
        ) from error
    return tfds.builder(name, **kwargs)


def build_dataset(
    name: str,
    *,
    data_dir: str = DEFAULT_DATA_DIR,
    manual_dir: str | None = None,
    file_format: str = "array_record",
    overwrite: bool = False,
) -> tfds.core.DatasetBuilder:
    """Prepares dataset `name` ("osie_personal", "synthetic_personal_saliency/tiny", ...).

    Args:
      name: a psm-jax dataset, optionally with "/config".
      data_dir: where the records go.
      manual_dir: the downloaded release, for the datasets that need one.
      file_format: "array_record" (no TensorFlow) or "tfrecord" (needs TensorFlow).
      overwrite: rebuild even if already prepared.

    TFDS's own per-split progress bars are switched off (process-wide, `tfds.disable_progress_bar`):
    the psm-jax builders show one bar for the whole build.

    Returns:
      The prepared builder (its `info.metadata` holds splits and data-quality counts).

    Raises:
      ValueError with the command to rebuild, when the records in `data_dir` were built from
      another release than the one in `manual_dir` (the fingerprint recorded at build time:
      `psm_jax.data.releases.base.fingerprint`).
    """
    prepared = builder(name, data_dir=data_dir, file_format=file_format)
    tfds.disable_progress_bar()  # the builders show one bar for the whole build
    if not overwrite and manual_dir is not None and prepared.is_prepared():
        _check_release(prepared, name, data_dir, manual_dir)
    needs_release = prepared.MANUAL_DOWNLOAD_INSTRUCTIONS and (
        overwrite or not prepared.is_prepared()
    )
    if needs_release and not manual_dir:
        raise FileNotFoundError(
            f"{name} is built from a release you download: "
            + prepared.MANUAL_DOWNLOAD_INSTRUCTIONS.replace("\n", " ")
        )
    if needs_release and not Path(manual_dir).is_dir():
        raise FileNotFoundError(
            f"{name}: the release folder {manual_dir} (--manual_dir) does not exist: "
            + prepared.MANUAL_DOWNLOAD_INSTRUCTIONS.replace("\n", " ")
        )
    mode = (
        tfds.download.GenerateMode.REUSE_DATASET_IF_EXISTS
        if not overwrite
        else tfds.download.GenerateMode.FORCE_REDOWNLOAD
    )
    download_config = tfds.download.DownloadConfig(manual_dir=manual_dir, download_mode=mode)
    if prepared.is_prepared() and not overwrite:
        # Nothing to build (the records may be in a read-only data_dir): TFDS reuses them.
        prepared.download_and_prepare(download_config=download_config)
        return prepared
    with _build_lock(prepared, name, data_dir):
        _remove_interrupted_builds(prepared)
        prepared.download_and_prepare(download_config=download_config)
    return prepared


@contextlib.contextmanager
def _build_lock(prepared, name: str, data_dir: str):
    """Holds `<config folder>/.build.lock` (an flock, which the kernel releases even when the
    process is killed) while this process builds the config: a second build of it at the same
    time is refused by name, and the folders of a build that is not running can be told apart."""
    path = Path(prepared.data_path).parent / BUILD_LOCK
    with disk.exclusive(
        path,
        f"Another process is building {name} in {data_dir} (it holds {path}): wait for it to "
        "finish, then run again.",
    ):
        yield


def _remove_interrupted_builds(prepared) -> None:
    """Removes the `incomplete.<random>_<version>` folders of this config's version that a killed
    build left (TFDS writes the records there and renames the folder when done). Called under
    `_build_lock`, so no live build is writing them; other versions' folders are left alone."""
    config_dir = Path(prepared.data_path).parent
    stale = sorted(config_dir.glob(f"incomplete.*_{prepared.version}"))
    for folder in stale:
        shutil.rmtree(folder)
    if stale:
        logging.warning(
            "Removed %d folder%s that an interrupted build of %s left: %s",
            len(stale),
            "" if len(stale) == 1 else "s",
            prepared.info.full_name,
            ", ".join(str(f) for f in stale),
        )


def _check_release(prepared, name: str, data_dir: str, manual_dir: str) -> None:
    recorded = prepared.info.metadata.get("release_fingerprint")
    if recorded is None or not Path(manual_dir).is_dir():
        return  # built before fingerprints were recorded, or nothing to compare with
    # A fingerprint recorded before version 2 covered every file: compare it with one made so.
    current = fingerprint(manual_dir, every_file="version" not in recorded)
    differences = fingerprint_differences(recorded, current)
    if differences:
        raise ValueError(
            f"The records of {name} in {prepared.data_dir} were built from the release in "
            f"{recorded['root']}, and --manual_dir {manual_dir} is another one "
            f"({'; '.join(differences)}). Rebuild them: .venv/bin/python launch/build_dataset.py "
            f"--dataset={name} --manual_dir={manual_dir} --data_dir={data_dir} --overwrite "
            "(or build into another --data_dir)."
        )


def summarise(builder: tfds.core.DatasetBuilder) -> str:
    """A readable summary of a prepared dataset: splits, observers, fixations, data quality."""
    md = builder.info.metadata
    quality = md["quality"]
    lines = [
        f"{builder.info.full_name} in {builder.data_dir}",
        f"  images: {md['num_images']} ("
        + ", ".join(f"{s} {len(ids)}" for s, ids in md["image_split"].items())
        + ")",
        f"  observers: {md['num_observers']} ("
        + ", ".join(f"{s} {len(ids)}" for s, ids in md["observer_split"].items())
        + (
            "; fold {fold} of {folds}".format(**md["observer_fold"])
            if "observer_fold" in md
            else ""
        )
        + ")",
        f"  fixations: {quality['fixations']} "
        f"({quality['fixations'] / max(md['num_images'] * md['num_observers'], 1):.1f} per "
        "image and observer)",
        f"  PSMs: {md['psm']['working_size'][0]}x{md['psm']['working_size'][1]}, discrepancy "
        f"targets {md['psm']['output_size'][0]}x{md['psm']['output_size'][1]}, sigma "
        f"{md['psm']['sigma_native_px_range'][0]:.1f}-{md['psm']['sigma_native_px_range'][1]:.1f}"
        " native px",
        f"  data quality: {quality['nan_fixations_dropped']} NaN fixations dropped, "
        f"{quality['outside_fixations_clipped']} outside fixations clipped, "
        f"{quality['invalid_durations_zeroed']} invalid durations zeroed, "
        f"{quality.get('duplicate_rows_dropped', 0)} duplicate rows dropped, "
        f"{quality['empty_pairs']} (image, observer) pairs without fixations (masked)",
    ]
    release = md.get("release", {})
    if "observer_preferences" in release:
        preferences = np.array(release["observer_preferences"])
        favourite = np.bincount(preferences.argmax(axis=1), minlength=preferences.shape[1])
        lines.append(
            "  simulated observers' favourite category: "
            + ", ".join(f"{c} {n}" for c, n in zip(release["categories"], favourite, strict=True))
        )
    return "\n".join(lines)
