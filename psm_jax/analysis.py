"""Dataset analyses that need no model: inter-observer consistency (Xu et al. 2017, Table 1).

Reads a built psm-jax dataset (`psm_jax.data.pipeline.open_split`) and applies
`psm_jax.metrics.inter_observer_consistency` image by image.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from tqdm import tqdm

from psm_jax import metrics
from psm_jax.data import pipeline

SPLITS = ("train", "validation", "test")


@dataclasses.dataclass(frozen=True)
class Consistency:
    """Inter-observer consistency of a dataset.

    Attributes:
      mean_auc_judd: mean over images of the per-image mean pairwise AUC-Judd.
      per_image: the per-image values (images without two usable observers are left out).
      num_images: images that entered the mean.
      grid: (H, W) of the evaluation grid.
      viewing: the repeated viewing whose fixations were used, or None for all of them.
    """

    mean_auc_judd: float
    per_image: np.ndarray
    num_images: int
    grid: tuple[int, int]
    viewing: int | None


def _padded_fixations(record, num_observers: int, grid, viewing: int | None):
    """Per-observer fixations of a record as (O, F) grid pixels and a mask, F a power of two."""
    fixations = record["fixations"]
    keep = np.ones(len(fixations["x"]), bool)
    if viewing is not None:
        keep &= np.asarray(fixations["viewing"]) == viewing
    x = np.asarray(fixations["x"], np.float32)[keep]
    y = np.asarray(fixations["y"], np.float32)[keep]
    observer = np.asarray(fixations["observer"], np.int64)[keep]
    counts = np.bincount(observer, minlength=num_observers)
    # Pad to a power of two so that only a few shapes are ever compiled.
    width = max(8, 1 << int(max(counts.max(initial=1), 1) - 1).bit_length())
    xs = np.zeros((num_observers, width), np.float32)
    ys = np.zeros((num_observers, width), np.float32)
    mask = np.zeros((num_observers, width), bool)
    slot = np.zeros(num_observers, np.int64)
    for xi, yi, o in zip(x, y, observer, strict=True):
        xs[o, slot[o]], ys[o, slot[o]], mask[o, slot[o]] = xi, yi, True
        slot[o] += 1
    rows, cols = metrics.fixations_to_grid(xs, ys, np.asarray(record["image_size"])[None], grid)
    return rows, cols, mask


def dataset_consistency(
    name: str,
    data_dir: str | None = None,
    splits: tuple[str, ...] = SPLITS,
    grid: tuple[int, int] | None = None,
    viewing: int | None = None,
    progress: bool = True,
) -> Consistency:
    """Mean pairwise AUC-Judd between different observers, averaged over the dataset's images.

    The maps are the stored PSMs (on the working grid, averaged over repeated viewings); the
    fixations are each observer's fixations on that grid. With `viewing`, only that viewing's
    fixations are scored (Xu et al. used single viewings on PS; the stored maps still average all
    viewings). Observers without a map or fixation on an image are left out of its pairs.

    Args:
      name: a built dataset, e.g. "osie_personal".
      data_dir: where it was built.
      splits: image splits to include (default: all images).
      grid: evaluation grid (default: the stored maps' working size).
      viewing: restrict the fixations to one repeated viewing (0-based), or None for all.
      progress: show a progress bar.
    """
    per_image = []
    used_grid = None
    for split in splits:
        source, metadata = pipeline.open_split(name, split, data_dir)
        used_grid = tuple(grid or metadata.working_size)
        num_observers = len(metadata.observer_ids)
        for index in tqdm(range(len(source)), desc=f"{name} {split}", disable=not progress):
            record = source[index]
            psm = metrics.resize_to_grid(np.asarray(record["psm"], np.float32), used_grid)
            rows, cols, mask = _padded_fixations(record, num_observers, used_grid, viewing)
            value = float(
                metrics.inter_observer_consistency(
                    psm, rows, cols, mask, np.asarray(record["psm_valid"], bool)
                )
            )
            if np.isfinite(value):
                per_image.append(value)
    per_image = np.asarray(per_image)
    return Consistency(
        mean_auc_judd=float(per_image.mean()) if per_image.size else float("nan"),
        per_image=per_image,
        num_images=int(per_image.size),
        grid=used_grid,
        viewing=viewing,
    )
