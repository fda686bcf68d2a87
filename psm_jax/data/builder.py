"""What every psm-jax TFDS builder shares: features, splits, maps, data-quality counts, metadata.

A dataset builder in `tfds_builders/<name>/` only says how to read its release into a `Release`
(`_read_release`); this base class turns any release into records the same way:

    Release -> clean_fixations (counted) -> image and observer splits (seeded)
            -> per image: RGB JPEG, fixations at native resolution, PSM of every observer

Record layout (one example per image; every observer of the dataset in every example):

    image         RGB JPEG (native resolution)
    image_id      file name in the release
    image_size    (2,) int32 native (H, W) the fixations refer to
    observer_ids  (O,) str, the dataset's observers (the same in every example)
    psm           (O, H, W) float16 in [0, 1] at the working resolution (default 120x160)
    psm_valid     (O,) bool, False where the observer has no fixation on the image: that map is
                  all zeros and must be masked out of training targets
    fixations     x, y (float32, native 0-based pixel centres), duration_ms (float32),
                  observer (int32 index into observer_ids), viewing (int32 repeated viewing)

Dataset metadata (`builder.info.metadata`, stored as metadata.json beside the records):
`observer_ids`, `observer_split` and `image_split` (train / validation / test ids),
`observer_fold` ({"fold": k, "folds": K} where the observer split is a fold, `config_name`),
`psm` (how the maps were made), `quality` (fixations dropped / clipped, empty (image, observer)
pairs), `release` (dataset-specific facts, e.g. the synthetic observers' true preferences).
"""

from __future__ import annotations

import abc
import dataclasses
import re

import numpy as np
import tensorflow_datasets as tfds
from tqdm import tqdm

from psm_jax.data import saliency_maps, splits
from psm_jax.data.fixations import FixationTable, clean_fixations
from psm_jax.data.releases.base import Release, as_rgb_jpeg, fingerprint

_FIXATION_COLUMNS = ("x", "y", "duration_ms", "observer", "viewing")


@dataclasses.dataclass
class PersonalSaliencyConfig(tfds.core.BuilderConfig):
    """How the PSMs and splits of a dataset are made.

    Attributes:
      working_size: (H, W) of the stored PSMs.
      weight_by_duration: weight fixations by duration in the PSMs.
      observer_split: (train, validation, test) observer counts; None gives a 60/20/20 split, and
        so do a config's own counts that do not add up to the release's observers (with a warning
        naming both). Counts chosen by name (`config_name`, --observer_split) must add up.
      observer_split_chosen: the counts were chosen by name (a derived config): a release with
        another number of observers is refused instead of split 60/20/20.
      split_seed: seed of the image and observer splits.
      sigma_px: Gaussian sigma of the PSMs in native image pixels (both axes) for every image;
        None keeps the release's own (e.g. OSIE's 24 px at 800x600).
      observer_fold: (k, K): the observers are split by fold k of K-fold cross-validation over
        observers (`psm_jax.data.splits.fold_observers`) instead of by `observer_split`.
    """

    working_size: tuple[int, int] = saliency_maps.WORKING_SIZE
    weight_by_duration: bool = False
    observer_split: tuple[int, int, int] | None = None
    observer_split_chosen: bool = False
    split_seed: int = splits.DEFAULT_SEED
    sigma_px: float | None = None
    observer_fold: tuple[int, int] | None = None


def config_name(
    base: str = "default",
    observer_split: tuple[int, int, int] | None = None,
    sigma_px: float | None = None,
    observer_fold: tuple[int, int] | None = None,
) -> str:
    """The name of a builder config derived from config `base` with another observer split, a
    fold of the observers or another sigma: "default+observers_6_2_2+sigma_12",
    "default+fold_2_of_5+sigma_12" (in this order). Any psm-jax builder understands such names
    (`PersonalSaliencyBuilder.get_builder_config`), so "osie_personal/default+observers_6_2_2"
    works wherever a dataset name does, and its records live in a folder of their own.

    Args:
      base: the builder config derived from.
      observer_split: (train, validation, test) observer counts.
      sigma_px: the PSMs' sigma in native pixels.
      observer_fold: (k, K): fold k of K-fold cross-validation over observers
        (`psm_jax.data.splits.fold_observers`); not with `observer_split`.
    """
    if observer_split is not None and observer_fold is not None:
        raise ValueError(
            "choose the observers either by +observers_<train>_<validation>_<test> or by "
            "+fold_<k>_of_<K>, not both."
        )
    name = base
    if observer_fold is not None:
        splits.check_fold(*observer_fold)
        name += "+fold_{}_of_{}".format(*(int(c) for c in observer_fold))
    if observer_split is not None:
        if len(observer_split) != 3 or min(observer_split) < 0:
            raise ValueError(
                "An observer split is three counts (train, validation, test), got "
                f"{observer_split}."
            )
        name += "+observers_" + "_".join(str(int(c)) for c in observer_split)
    if sigma_px is not None:
        if not sigma_px > 0:
            raise ValueError(f"sigma_px must be positive, got {sigma_px}.")
        name += f"+sigma_{float(sigma_px):g}"
    return name


def _read_parts(name: str, parts: list[str]) -> dict:
    """The config fields that the parts after "+" of the dataset config `name` set."""
    changes = {}
    for part in parts:
        key, _, value = part.partition("_")
        try:
            if key == "observers":
                changes["observer_split"] = tuple(int(c) for c in value.split("_"))
                changes["observer_split_chosen"] = True
            elif key == "fold":
                fold = re.fullmatch(r"(\d+)_of_(\d+)", value)
                if fold is None:
                    raise ValueError
                changes["observer_fold"] = (int(fold[1]), int(fold[2]))
            elif key == "sigma":
                changes["sigma_px"] = float(value)
            else:
                raise ValueError
        except ValueError:
            raise ValueError(
                f"Cannot read {part!r} of the dataset config {name!r}: expected "
                "<config>+observers_<train>_<validation>_<test> or +fold_<k>_of_<K>, and/or "
                "+sigma_<native px>, e.g. default+observers_6_2_2+sigma_12, default+fold_2_of_5."
            ) from None
    return changes


def with_fold(dataset: str, fold: int, folds: int) -> str:
    """Dataset `dataset` ("name" or "name/config") with its observers split by fold `fold` of
    `folds` (`config_name`): "osie_personal/default+sigma_31" ->
    "osie_personal/default+fold_2_of_5+sigma_31". A ValueError where its config already chooses
    its observers or the fold is impossible."""
    name, _, config = dataset.partition("/")
    base, *parts = (config or "default").split("+")
    changes = _read_parts(config, parts)
    if "observer_split" in changes or "observer_fold" in changes:
        raise ValueError(
            f"{dataset} already chooses its observers; give its folds the dataset without "
            "+observers_... or +fold_...."
        )
    derived = config_name(base, sigma_px=changes.get("sigma_px"), observer_fold=(fold, folds))
    return f"{name}/{derived}"


def _derive_config(
    base: PersonalSaliencyConfig, name: str, parts: list[str]
) -> PersonalSaliencyConfig:
    changes = _read_parts(name, parts)
    try:
        canonical = config_name(
            base.name,
            changes.get("observer_split"),
            changes.get("sigma_px"),
            changes.get("observer_fold"),
        )
    except ValueError as error:
        raise ValueError(f"The dataset config {name!r}: {error}") from None
    if canonical != name:
        raise ValueError(f"Write the dataset config {name!r} as {canonical!r}.")
    return dataclasses.replace(base, name=name, **changes)


def _pairs_with_fixations(fixations: FixationTable, num_observers: int, by_duration: bool):
    """(num_images, O) bool: which (image, observer) pairs have a fixation with weight."""
    keep = fixations.duration_ms > 0 if by_duration else np.ones(len(fixations), bool)
    num_images = int(fixations.image.max()) + 1 if len(fixations) else 0
    has = np.zeros((num_images, num_observers), bool)
    has[fixations.image[keep], fixations.observer[keep]] = True
    return has


class PersonalSaliencyBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
    """Base of the psm-jax builders; subclasses implement `_read_release`."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Initial release."}

    _derived_configs: dict = {}

    @classmethod
    def get_builder_config(cls, name, version=None):
        """A config of BUILDER_CONFIGS, or one derived from it by name (`config_name`)."""
        config = super().get_builder_config(name, version)
        if config is not None or "+" not in name:
            return config
        base_name, *parts = name.split("+")
        base = super().get_builder_config(base_name, version)
        if base is None:
            return None
        key = (cls, name)
        if key not in cls._derived_configs:  # one object per name, as TFDS expects
            cls._derived_configs[key] = _derive_config(base, name, parts)
        return cls._derived_configs[key]

    def _log_download_bytes(self) -> None:
        # TFDS prints "Downloading and preparing dataset Unknown size (download: Unknown
        # size, ...)" here; these builders download nothing.
        print(f"Building {self.info.full_name} into {self.data_dir} ...", flush=True)

    def _log_download_done(self) -> None:
        print(f"Built {self.info.full_name}; later runs reuse it.", flush=True)

    @abc.abstractmethod
    def _read_release(self, dl_manager: tfds.download.DownloadManager) -> Release:
        """Parses the raw release (from dl_manager.manual_dir, or generated)."""

    def _info(self) -> tfds.core.DatasetInfo:
        height, width = self.builder_config.working_size
        column = lambda dtype, doc: tfds.features.Tensor(shape=(None,), dtype=dtype, doc=doc)  # noqa: E731
        features = tfds.features.FeaturesDict(
            {
                "image": tfds.features.Image(shape=(None, None, 3), encoding_format="jpeg"),
                "image_id": tfds.features.Text(doc="File name of the image in the release."),
                "image_size": tfds.features.Tensor(
                    shape=(2,), dtype=np.int32, doc="Native (H, W) the fixations refer to."
                ),
                "observer_ids": column(np.object_, "The dataset's observers, in index order."),
                "psm": tfds.features.Tensor(
                    shape=(None, height, width),
                    dtype=np.float16,
                    # Raw bytes: 25x faster to write than a float list, half the size.
                    encoding=tfds.features.Encoding.BYTES,
                    doc="Personal saliency map of every observer, [0, 1].",
                ),
                "psm_valid": column(np.bool_, "False where the observer has no fixation."),
                "fixations": tfds.features.FeaturesDict(
                    {
                        "x": column(np.float32, "Column, native 0-based pixel centre."),
                        "y": column(np.float32, "Row, native 0-based pixel centre."),
                        "duration_ms": column(np.float32, "Duration in milliseconds."),
                        "observer": column(np.int32, "Index into observer_ids."),
                        "viewing": column(np.int32, "Index of the repeated viewing."),
                    }
                ),
            }
        )
        return self.dataset_info_from_configs(features=features, metadata=tfds.core.MetadataDict())

    def _split_generators(self, dl_manager: tfds.download.DownloadManager):
        config = self.builder_config
        release = self._read_release(dl_manager)
        if config.sigma_px is not None:
            release = dataclasses.replace(
                release, sigma=np.full_like(release.sigma, config.sigma_px)
            )
        fixations, quality = clean_fixations(release.fixations, release.image_sizes)
        quality.update(release.quality)
        chosen = config.observer_split
        if config.observer_split_chosen and sum(chosen) != release.num_observers:
            counts = ",".join(str(c) for c in chosen)
            where = f" in {dl_manager.manual_dir}" if self.MANUAL_DOWNLOAD_INSTRUCTIONS else ""
            fitting = ",".join(
                str(c) for c in splits.split_counts(release.num_observers, (0.6, 0.2, 0.2))
            )
            raise ValueError(
                f"--observer_split={counts} ({self.name}/{config.name}) adds up to {sum(chosen)} "
                f"observers, but the release{where} has "
                f"{release.num_observers}: give three counts that add up to "
                f"{release.num_observers}, e.g. --observer_split={fitting}."
            )
        image_split = splits.split_images(release.image_ids, seed=config.split_seed)
        if config.observer_fold is None:
            observer_split = splits.split_observers(
                release.observer_ids, config.observer_split, seed=config.split_seed
            )
        else:
            try:
                observer_split = splits.fold_observers(
                    release.observer_ids, *config.observer_fold, seed=config.split_seed
                )
            except ValueError as error:
                raise ValueError(f"{self.name}/{config.name}: {error}") from None
        with_fixations = np.zeros((release.num_images, release.num_observers), bool)
        has = _pairs_with_fixations(fixations, release.num_observers, config.weight_by_duration)
        with_fixations[: len(has)] = has
        index_of = {image_id: i for i, image_id in enumerate(release.image_ids)}
        quality.update(
            fixations=len(fixations),
            empty_pairs=int((~with_fixations).sum()),
            empty_pairs_by_split={
                name: int((~with_fixations[[index_of[i] for i in ids]]).sum())
                for name, ids in image_split.items()
            },
        )
        self.info.metadata.update(
            num_images=release.num_images,
            num_observers=release.num_observers,
            observer_ids=list(release.observer_ids),
            observer_split=observer_split,
            image_split=image_split,
            psm={
                "working_size": list(config.working_size),
                "output_size": list(saliency_maps.OUTPUT_SIZE),
                "weight_by_duration": config.weight_by_duration,
                "sigma_native_px_range": [float(release.sigma.min()), float(release.sigma.max())],
                "coordinates": "native image, 0-based pixel centres (x = column, y = row)",
            },
            quality=quality,
            release=release.metadata,
        )
        if config.observer_fold is not None:
            fold, folds = config.observer_fold
            self.info.metadata["observer_fold"] = {"fold": fold, "folds": folds}
        if self.MANUAL_DOWNLOAD_INSTRUCTIONS:
            # What `psm_jax.data.datasets.build_dataset` checks a later --manual_dir against.
            self.info.metadata["release_fingerprint"] = fingerprint(dl_manager.manual_dir)
        rows = fixations.rows_by_image(release.num_images)
        # One bar for the whole build (TFDS's own per-split bars are off: datasets.build_dataset).
        progress = tqdm(total=release.num_images, desc=f"building {self.name}", unit="image")
        return {
            name: self._generate_examples(
                release, fixations, rows, [index_of[i] for i in ids], progress
            )
            for name, ids in image_split.items()
        }

    def _generate_examples(self, release, fixations, rows, image_indices, progress=None):
        config = self.builder_config
        observer_ids = np.array(release.observer_ids, dtype=object)
        for i in image_indices:
            if progress is not None:
                progress.update(1)
                if progress.n == progress.total:
                    progress.close()
            source = release.image_source(i)
            jpeg, decoded_size = as_rgb_jpeg(release.read_image(i), source)
            if decoded_size != tuple(release.image_sizes[i]):
                raise ValueError(
                    f"Image {source} decodes to {decoded_size}, its header said "
                    f"{tuple(release.image_sizes[i])}."
                )
            own = fixations.select(rows[i])
            psm, valid = saliency_maps.personal_saliency_maps(
                own.x,
                own.y,
                own.observer,
                viewing=own.viewing,
                duration_ms=own.duration_ms,
                weight_by_duration=config.weight_by_duration,
                num_observers=release.num_observers,
                native_size=tuple(release.image_sizes[i]),
                sigma=tuple(release.sigma[i]),
                working_size=config.working_size,
            )
            yield (
                release.image_ids[i],
                {
                    "image": jpeg,
                    "image_id": release.image_ids[i],
                    "image_size": np.asarray(release.image_sizes[i], np.int32),
                    "observer_ids": observer_ids,
                    "psm": psm.astype(np.float16),
                    "psm_valid": valid,
                    "fixations": {
                        c: getattr(own, c).astype(
                            np.int32 if c in ("observer", "viewing") else np.float32
                        )
                        for c in _FIXATION_COLUMNS
                    },
                },
            )
