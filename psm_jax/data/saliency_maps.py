"""Fixations -> personal saliency maps (PSMs), universal saliency maps (USMs), discrepancy targets.

This is the saliency-map core that every dataset builder and every pipeline shares. It is plain
NumPy (the resampling helpers also accept JAX arrays) and imports no TensorFlow.

Coordinate convention
    Fixation coordinates are 0-based *pixel-centre* coordinates in the native image: the centre of
    the top-left pixel is (x=0, y=0), pixel (row i, column j) covers
    [j-0.5, j+0.5) x [i-0.5, i+0.5), so the image extent is [-0.5, W-0.5] x [-0.5, H-0.5].
    MATLAB releases (OSIE, PS) are 1-based: subtract 1. `rescale_coordinates` maps coordinates
    between grids of different sizes.

PSM definition (what `personal_saliency_maps` computes, exactly)
    1. Every fixation f of observer o in viewing v puts a weight w_f at its (sub-pixel) position:
       w_f = 1, or its duration with ``weight_by_duration``; the weights of one viewing are divided
       by their sum, so each repeated viewing of the image counts equally (averaging over viewings).
    2. Gaussian blur at native resolution: the native map is
       M(i, j) = sum_f w_f exp(-(j - x_f)^2 / (2 sx^2) - (i - y_f)^2 / (2 sy^2)), evaluated at every
       native pixel centre, with sigma (sy, sx) in native pixels (OSIE's own code: 24 px at
       800x600); there is no kernel truncation, and mass beyond the border is lost (zero padding).
    3. Area (box) resampling to the working grid (default 120x160, H x W): each working pixel is
       the overlap-weighted mean of the native pixels it covers.
    4. Min-max normalisation to [0, 1]. An observer with no fixation with positive weight on the
       image gets an all-zero map and ``valid = False``: callers must mask it, never train on it.
    Because the Gaussian is separable and steps 2-3 are linear, the map is computed as
    Gy^T diag(w) Gx with Gy = (per-fixation row profiles) x (row resampling matrix): the cost is
    O(F (H_native + W_native) + F h w) per image instead of a blur of the native image per observer.

USM and discrepancy
    USM = the mean of the PSMs of a set of observers, *not* renormalised (see
    `universal_saliency_maps` for the modes: the split's training observers by default,
    leave-one-out, or all observers as in the papers), so it lies in [0, 1] with a maximum below 1
    where the observers' peaks differ. Discrepancy = PSM - USM, in [-1, 1], area-resampled to the
    output grid (15x20). Ours, where the papers say only "the average": with the plain mean, the
    discrepancies of the observers that make the USM average to exactly zero, so the target is the
    personal component alone. Renormalising the mean to a maximum of 1 (psm-jax before
    2026-11-25) adds to every discrepancy the same image-wide rescaling of the USM, about a third
    of the target's energy on the synthetic default; every saliency metric is blind to that
    rescaling, and the networks learned it instead of the personal component
    (docs/results_log.md).
"""

from __future__ import annotations

from typing import Literal

import numpy as np

WORKING_SIZE: tuple[int, int] = (120, 160)
"""(H, W) of the maps models read: the papers' 160x120 input."""

OUTPUT_SIZE: tuple[int, int] = (15, 20)
"""(H, W) of the discrepancy maps the networks predict (Strohm et al. 2024, Fig. 3)."""

UsmMode = Literal["train", "leave_one_out", "all"]


def rescale_coordinates(coords: np.ndarray, from_extent: float, to_extent: float) -> np.ndarray:
    """Maps 0-based pixel-centre coordinates from a grid of `from_extent` pixels to `to_extent`.

    A coordinate c in pixel-centre convention is c + 0.5 in edge convention, where scaling is a
    plain multiplication: c' = (c + 0.5) * to / from - 0.5.

    Args:
      coords: coordinates along one axis (any shape).
      from_extent: number of pixels of the source grid along that axis.
      to_extent: number of pixels of the target grid along that axis.

    Returns:
      The coordinates on the target grid, as float64.
    """
    return (np.asarray(coords, np.float64) + 0.5) * (to_extent / from_extent) - 0.5


def area_resampling_matrix(n_in: int, n_out: int) -> np.ndarray:
    """The (n_out, n_in) matrix of box (area) resampling along one axis.

    Output pixel k covers [k * n_in / n_out, (k + 1) * n_in / n_out) of the input in edge
    coordinates; entry (k, i) is the overlap of input pixel i with it, divided by the output
    pixel's width, so each row sums to 1. For integer factors this is a block mean.
    """
    scale = n_in / n_out
    starts = np.arange(n_out)[:, None] * scale
    ends = starts + scale
    pixel_lo = np.arange(n_in)[None, :]
    overlap = np.clip(np.minimum(ends, pixel_lo + 1) - np.maximum(starts, pixel_lo), 0.0, None)
    return overlap / scale


def area_resize(maps, size: tuple[int, int]):
    """Area-resamples the last two axes of `maps` (NumPy or JAX array) to `size` = (H, W)."""
    rows = area_resampling_matrix(maps.shape[-2], size[0]).astype(np.float32)
    cols = area_resampling_matrix(maps.shape[-1], size[1]).astype(np.float32)
    return rows @ maps @ cols.T


def _gaussian_profiles(centres: np.ndarray, sigma: float, n_native: int) -> np.ndarray:
    """(F, n_native) Gaussian of each fixation coordinate evaluated at the native pixel centres."""
    pixel_centres = np.arange(n_native, dtype=np.float64)
    offsets = pixel_centres[None, :] - centres[:, None]
    return np.exp(-0.5 * (offsets / sigma) ** 2)


def min_max_normalise(maps: np.ndarray, axis=(-2, -1)) -> tuple[np.ndarray, np.ndarray]:
    """Scales each map to [0, 1]; a constant map becomes all zeros with valid = False.

    Returns:
      (normalised maps as float32, valid: bool array over the leading axes).
    """
    lo = maps.min(axis=axis, keepdims=True)
    hi = maps.max(axis=axis, keepdims=True)
    span = hi - lo
    valid = span > 0
    normalised = np.where(valid, (maps - lo) / np.where(valid, span, 1.0), 0.0)
    return normalised.astype(np.float32), np.squeeze(valid, axis=axis)


def fixation_weights(
    observer: np.ndarray,
    viewing: np.ndarray,
    duration_ms: np.ndarray,
    *,
    weight_by_duration: bool = False,
) -> np.ndarray:
    """Per-fixation weights such that each (observer, viewing) sums to 1 (or 0 if it has no weight).

    With ``weight_by_duration`` a fixation weighs its duration, otherwise 1.
    """
    base = np.asarray(duration_ms, np.float64) if weight_by_duration else np.ones(len(observer))
    base = np.where(np.isfinite(base) & (base > 0), base, 0.0)
    if len(base) == 0:
        return base
    # Group id of each (observer, viewing) pair, then normalise each group's weights to sum 1.
    _, group = np.unique(np.stack([observer, viewing], axis=1), axis=0, return_inverse=True)
    group = group.reshape(-1)
    totals = np.bincount(group, weights=base)
    return np.where(totals[group] > 0, base / np.where(totals[group] > 0, totals[group], 1.0), 0.0)


def personal_saliency_maps(
    x: np.ndarray,
    y: np.ndarray,
    observer: np.ndarray,
    *,
    num_observers: int,
    native_size: tuple[int, int],
    sigma: float | tuple[float, float],
    viewing: np.ndarray | None = None,
    duration_ms: np.ndarray | None = None,
    weight_by_duration: bool = False,
    working_size: tuple[int, int] = WORKING_SIZE,
) -> tuple[np.ndarray, np.ndarray]:
    """PSMs of every observer of one image (definition in the module docstring).

    Args:
      x, y: (F,) fixation coordinates, 0-based pixel centres in the native image.
      observer: (F,) observer index of each fixation, in [0, num_observers).
      num_observers: number of maps to return.
      native_size: (H, W) of the native image the coordinates refer to.
      sigma: Gaussian sigma in native pixels, a float or (sigma_y, sigma_x).
      viewing: (F,) index of the repeated viewing of each fixation (default: one viewing).
      duration_ms: (F,) fixation durations, needed with ``weight_by_duration``.
      weight_by_duration: weight each fixation by its duration instead of 1.
      working_size: (H, W) of the returned maps.

    Returns:
      psm: (num_observers, H, W) float32 in [0, 1]; all zeros where not valid.
      valid: (num_observers,) bool, False for observers without a weighted fixation.
    """
    x = np.asarray(x, np.float64)
    y = np.asarray(y, np.float64)
    observer = np.asarray(observer, np.int64)
    viewing = np.zeros_like(observer) if viewing is None else np.asarray(viewing, np.int64)
    if duration_ms is None:
        if weight_by_duration:
            raise ValueError("weight_by_duration=True needs duration_ms.")
        duration_ms = np.ones(len(x))
    sigma_y, sigma_x = (sigma, sigma) if np.isscalar(sigma) else sigma
    native_h, native_w = native_size
    work_h, work_w = working_size

    weights = fixation_weights(
        observer, viewing, duration_ms, weight_by_duration=weight_by_duration
    )
    rows = _gaussian_profiles(y, sigma_y, native_h) @ area_resampling_matrix(native_h, work_h).T
    cols = _gaussian_profiles(x, sigma_x, native_w) @ area_resampling_matrix(native_w, work_w).T
    # Each fixation belongs to one observer: per observer, maps[o] = rows_o^T diag(w_o) cols_o,
    # which costs F h w in total (a dense (O, F) weight matrix would cost O F h w).
    maps = np.zeros((num_observers, work_h, work_w))
    order = np.argsort(observer, kind="stable")
    bounds = np.searchsorted(observer[order], np.arange(num_observers + 1))
    for o in range(num_observers):
        own = order[bounds[o] : bounds[o + 1]]
        if len(own):
            maps[o] = (rows[own] * weights[own, None]).T @ cols[own]
    psm, valid = min_max_normalise(maps)
    has_weight = np.bincount(observer, weights=weights, minlength=num_observers) > 0
    return psm, valid & has_weight


def universal_saliency_maps(
    psm: np.ndarray,
    valid: np.ndarray,
    *,
    mode: UsmMode = "train",
    train_observers: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The USM each observer's discrepancy is measured against, for one image.

    Args:
      psm: (O, H, W) PSMs of all observers of the image.
      valid: (O,) which PSMs exist.
      mode: which observers' PSMs are averaged:
        - "train": the training observers of the split (`train_observers`), the same map for every
          observer; a validation or test observer's own map never enters it (the default).
        - "leave_one_out": for observer o, every other observer; with `train_observers`, every
          other training observer (a validation or test observer then gets the "train" map).
        - "all": every observer, o included: the papers' definition.
      train_observers: (O,) bool mask of the split's training observers, needed for "train".

    Returns:
      usm: (O, H, W) float32 in [0, 1], the mean of the contributing PSMs, not renormalised (for
        "train" and "all" a read-only broadcast of one map).
      usm_valid: (O,) bool, False where no valid PSM contributed (or the mean is constant).
    """
    valid = np.asarray(valid, bool)
    if mode == "train":
        if train_observers is None:
            raise ValueError('mode="train" needs train_observers (the split\'s training mask).')
        contributors = valid & np.asarray(train_observers, bool)
    elif mode == "leave_one_out" and train_observers is not None:
        contributors = valid & np.asarray(train_observers, bool)
    elif mode in ("all", "leave_one_out"):
        contributors = valid
    else:
        raise ValueError(f"Unknown USM mode {mode!r}; expected 'train', 'leave_one_out' or 'all'.")
    weights = contributors.astype(np.float32)
    total = np.tensordot(weights, psm, axes=(0, 0))  # (H, W)
    if mode != "leave_one_out":
        # One map shared by every observer: computed once, broadcast (no copy).
        usm = (total / max(weights.sum(), 1.0)).astype(np.float32)
        usm_valid = (weights.sum() > 0) & (usm.max() > usm.min())
        return (
            np.broadcast_to(usm, psm.shape),
            np.broadcast_to(usm_valid, psm.shape[:1]),
        )
    count = weights.sum() - weights
    mean = (total[None] - weights[:, None, None] * psm) / np.maximum(count, 1.0)[:, None, None]
    usm_valid = (count > 0) & (mean.max(axis=(1, 2)) > mean.min(axis=(1, 2)))
    return np.where(usm_valid[:, None, None], mean, 0.0).astype(np.float32), usm_valid


def discrepancy_maps(
    psm: np.ndarray, usm: np.ndarray, output_size: tuple[int, int] = OUTPUT_SIZE
) -> np.ndarray:
    """Discrepancy target PSM - USM, area-resampled to `output_size`, in [-1, 1]."""
    return area_resize(np.asarray(psm, np.float32) - np.asarray(usm, np.float32), output_size)
