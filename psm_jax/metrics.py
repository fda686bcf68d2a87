"""Saliency and embedding metrics, significance tests, and inter-observer consistency.

Every map metric here takes a batch of predicted maps and its ground truth and returns one score
per example, shape (B,); averaging is a separate, explicit step (`average`). The functions are
pure JAX (batched, jit-able, run on host NumPy arrays too); `psm_jax.metrics_reference` holds a
straightforward per-map NumPy implementation of the same definitions that the tests compare
against.

Definitions follow the MIT saliency benchmark (Bylinskii et al. 2019, "What do different
evaluation metrics tell us about saliency models?"); where the benchmark code is approximate or
order-dependent we compute the exact quantity, and each docstring says so.

Inputs
    maps        (B, H, W) on the evaluation grid (`resize_to_grid` brings others onto it).
    fixations   integer pixels on the evaluation grid, `rows` and `cols` (B, F) int, and a `mask`
                (B, F) bool that is False on padding (fixation counts differ between examples).
                `fixations_to_grid` maps native 0-based pixel-centre coordinates onto the grid.
                Every fixation counts, so two fixations on one pixel weigh twice (NSS, the TPR of
                the AUCs), as in pysaliency's per-fixation scores.

Examples without any valid fixation get NaN from the fixation-based metrics (NSS and the AUCs):
they have no score, and `average` leaves it to the caller to mask them (NaN propagates).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import scipy.stats

KLD_EPSILON = 2.2204e-16
"""The MIT benchmark's regulariser in KLD (MATLAB's eps)."""

MAP_METRICS = ("cc", "sim", "auc_judd", "nss", "kld")
"""The five map metrics of the papers' tables, in their column order."""

HIGHER_IS_BETTER = {
    "cc": True,
    "sim": True,
    "auc_judd": True,
    "auc_borji": True,
    "sauc": True,
    "nss": True,
    "kld": False,
    "information_gain": True,
    "precision_at_1": True,
}

DEFINITIONS = {
    "cc": "linear (Pearson) correlation between the predicted map and the person's ground-truth "
    "PSM; -1 to 1, 0 = unrelated, 1 = the same map up to scale",
    "sim": "similarity: the overlap of the two maps, each made to sum to 1 (the sum of the "
    "pixelwise minimum); 0 to 1, 1 = identical",
    "auc_judd": "how well the map ranks the pixels the person fixated above all others (area "
    "under the ROC curve, thresholds at the fixated pixels' values); 0.5 = chance, 1 = perfect",
    "nss": "normalised scanpath saliency: the map, standardised to mean 0 and standard deviation "
    "1, averaged over the person's fixations; 0 = chance",
    "kld": "Kullback-Leibler divergence of the predicted map from the ground-truth PSM (both made "
    "to sum to 1): the information lost when the prediction stands in for the truth; 0 = "
    "identical, no upper bound",
    "information_gain": "information gain over the ground-truth USM, in bits per fixation: the "
    "mean over the person's fixations of log2(the map's probability there / the USM's), each map "
    "made a density (99% its own distribution + 1% uniform); 0 = as good as the USM",
    "precision_at_1": "of the embeddings of unseen people's sets of m pairs, the fraction whose "
    "nearest other embedding (cosine) is one of the same person's sets; chance is given beside "
    "it",
}
"""What each metric measures, in one line: the report's "How to read this report" renders these
with `HIGHER_IS_BETTER`; the functions' docstrings hold the exact definitions."""


# ----------------------------------------------------------------------------- evaluation grid


def resize_to_grid(maps: jax.Array, grid: tuple[int, int]) -> jax.Array:
    """Bilinearly resizes (B, h, w) maps to the evaluation grid (H, W); a no-op if already there.

    `jax.image.resize(method="bilinear")` with its default antialiasing, so downsampling averages
    (a triangle filter widened by the scale) rather than skipping pixels.
    """
    maps = jnp.asarray(maps, jnp.float32)
    if maps.shape[-2:] == tuple(grid):
        return maps
    return jax.image.resize(maps, maps.shape[:-2] + tuple(grid), method="bilinear")


def fixations_to_grid(
    x: jax.Array, y: jax.Array, image_size: jax.Array, grid: tuple[int, int]
) -> tuple[jax.Array, jax.Array]:
    """Native fixation coordinates -> integer pixels (rows, cols) of the evaluation grid.

    Coordinates are 0-based pixel centres (the convention of `psm_jax.data.saliency_maps`): a
    native column x maps to (x + 0.5) * W_grid / W_native - 0.5, rounded to the nearest grid
    pixel (halves to even) and clipped into the grid; rows likewise.

    Args:
      x, y: (B, F) native columns and rows.
      image_size: (B, 2) or (2,) native (H, W) of each example's image.
      grid: (H, W) of the evaluation grid.

    Returns:
      (rows, cols), each (B, F) int32.
    """
    image_size = jnp.asarray(image_size, jnp.float32)
    native_h, native_w = image_size[..., 0:1], image_size[..., 1:2]
    rows = (jnp.asarray(y, jnp.float32) + 0.5) * (grid[0] / native_h) - 0.5
    cols = (jnp.asarray(x, jnp.float32) + 0.5) * (grid[1] / native_w) - 0.5
    rows = jnp.clip(jnp.round(rows), 0, grid[0] - 1).astype(jnp.int32)
    cols = jnp.clip(jnp.round(cols), 0, grid[1] - 1).astype(jnp.int32)
    return rows, cols


# ----------------------------------------------------------------------------- shared helpers


def _flatten(maps: jax.Array) -> jax.Array:
    maps = jnp.asarray(maps, jnp.float32)
    return maps.reshape(maps.shape[:-2] + (-1,))


def _moments(flat: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Per row: mean, std (ddof=0), and whether the row is non-constant (max > min).

    Constancy is tested with max > min, not std > 0: in float32 the std of a constant map can
    come out as rounding noise instead of 0.
    """
    mean = jnp.mean(flat, axis=-1, keepdims=True)
    std = jnp.sqrt(jnp.mean(jnp.square(flat - mean), axis=-1, keepdims=True))
    nonconstant = jnp.max(flat, axis=-1, keepdims=True) > jnp.min(flat, axis=-1, keepdims=True)
    return mean, std, nonconstant


def _as_distribution(flat: jax.Array) -> jax.Array:
    """Shift up by the minimum if it is negative, divide by the sum; an all-zero map -> uniform.

    Written as (x - shift) * scale + offset per row, with offset 0 unless the map is all zero, so
    that no per-pixel branch is needed (XLA:CPU vectorises arithmetic far better than per-pixel
    selects) and the minimum of a map with negative values becomes exactly 0: x - min is exactly
    0 there. The algebraically equal x * scale - min * scale, which XLA fuses into one
    multiply-add, left ~1e-12 there, which the KLD's 2.2e-16 regulariser turned into errors of
    several nats on maps with negative values.
    """
    shift = jnp.minimum(jnp.min(flat, axis=-1, keepdims=True), 0.0)
    shifted = flat - shift
    total = jnp.sum(shifted, axis=-1, keepdims=True)
    positive = total > 0
    scale = jnp.where(positive, 1.0 / jnp.where(positive, total, 1.0), 0.0)
    offset = jnp.where(positive, 0.0, 1.0 / flat.shape[-1])
    return jnp.maximum(shifted * scale + offset, 0.0)


def _pixel_index(rows: jax.Array, cols: jax.Array, width: int) -> jax.Array:
    return jnp.asarray(rows, jnp.int32) * width + jnp.asarray(cols, jnp.int32)


def _values_at(flat: jax.Array, index: jax.Array) -> jax.Array:
    return jnp.take_along_axis(flat, index, axis=-1)


def _row_dot(a: jax.Array, b: jax.Array) -> jax.Array:
    """sum(a * b) along the last axis of (B, P) arrays, as a batched dot (vectorised on CPU)."""
    return jax.lax.dot_general(
        a[:, None, :], b[:, :, None], (((2,), (1,)), ((0,), (0,))), precision="highest"
    )[:, 0, 0]


def _count_at_or_above(flat: jax.Array, thresholds: jax.Array) -> jax.Array:
    """For every threshold, the number of map values >= it: (B, P), (B, K) -> (B, K) int32.

    Cost O(P log K) per map instead of O(P K): the thresholds are sorted (padded with +inf to a
    power of two), every pixel finds how many thresholds lie at or below it (a branch-free binary
    search), and a histogram of those ranks, summed from the top, counts the pixels at or above
    each sorted threshold (a pixel is >= the j-th smallest threshold exactly when at least j + 1
    thresholds are <= it; tied thresholds get equal counts). Gathers and the histogram index
    flat arrays: batched gathers would make XLA constant-fold a (B, P, 2) index array.
    """
    batch, num_thresholds = thresholds.shape
    width = 1 << num_thresholds.bit_length()  # > num_thresholds: a +inf pad always exists
    order = jnp.argsort(thresholds, axis=-1)
    ascending = jnp.take_along_axis(thresholds, order, axis=-1)
    ascending = jnp.pad(ascending, ((0, 0), (0, width - num_thresholds)), constant_values=jnp.inf)
    row_start = (jnp.arange(batch, dtype=jnp.int32) * width)[:, None]
    ascending = ascending.reshape(-1)
    ranks = jnp.zeros(flat.shape, jnp.int32)  # number of thresholds <= the pixel
    step = width // 2
    while step >= 1:
        candidate = ranks + step
        ranks = jnp.where(ascending[row_start + candidate - 1] <= flat, candidate, ranks)
        step //= 2
    histogram = jnp.bincount((ranks + row_start).reshape(-1), length=batch * width).reshape(
        batch, width
    )
    at_or_above_sorted = jnp.cumsum(histogram[:, ::-1], axis=-1)[:, ::-1][:, 1 : num_thresholds + 1]
    inverse = jnp.argsort(order, axis=-1)
    return jnp.take_along_axis(at_or_above_sorted, inverse, axis=-1)


def _first_occurrence(index: jax.Array, mask: jax.Array) -> jax.Array:
    """(B, F) bool: a valid fixation on a pixel that no earlier valid fixation of the row hit."""
    same = (index[:, :, None] == index[:, None, :]) & mask[:, None, :]
    earlier = jnp.tril(jnp.ones(same.shape[-2:], bool), k=-1)
    return mask & ~jnp.any(same & earlier, axis=-1)


def _roc_area_from_rates(fpr: jax.Array, tpr: jax.Array) -> jax.Array:
    """Trapezoid area of the curve (0,0) -> points -> (1,1).

    The points come from thresholds; FPR and TPR both fall as the threshold rises, so the points
    form a chain and sorting each coordinate on its own lists them along the curve.
    """
    zeros = jnp.zeros(fpr.shape[:-1] + (1,), fpr.dtype)
    ones = jnp.ones_like(zeros)
    x = jnp.concatenate([zeros, jnp.sort(fpr, axis=-1), ones], axis=-1)
    y = jnp.concatenate([zeros, jnp.sort(tpr, axis=-1), ones], axis=-1)
    return jnp.sum((x[:, 1:] - x[:, :-1]) * (y[:, 1:] + y[:, :-1]), axis=-1) / 2


def _auc_judd_from_counts(
    values: jax.Array,
    mask: jax.Array,
    first: jax.Array,
    pixels_at_or_above: jax.Array,
    num_pixels: int,
) -> jax.Array:
    """AUC-Judd from the fixation values and, per fixation, the count of pixels >= its value."""
    mask_f = mask.astype(jnp.float32)
    at_or_above = (values[:, None, :] >= values[:, :, None]).astype(jnp.float32)  # [b, k, l]
    true_positives = jnp.sum(at_or_above * mask_f[:, None, :], axis=-1)
    fixated_pixels_at_or_above = jnp.sum(at_or_above * first[:, None, :], axis=-1)
    num_fixations = jnp.sum(mask_f, axis=-1, keepdims=True)
    num_negatives = num_pixels - jnp.sum(first, axis=-1, keepdims=True).astype(jnp.float32)
    tpr = true_positives / jnp.maximum(num_fixations, 1.0)
    fpr = (pixels_at_or_above - fixated_pixels_at_or_above) / jnp.maximum(num_negatives, 1.0)
    area = _roc_area_from_rates(jnp.where(mask, fpr, 0.0), jnp.where(mask, tpr, 0.0))
    return jnp.where(num_fixations[:, 0] > 0, area, jnp.nan)


# ----------------------------------------------------------------------------- chunked batches

CHUNK_SIZE = 16
"""Maps per chunk of the fixation metrics (AUC-Judd) and of `saliency_metrics`: a chunk's maps stay
in the CPU cache while every pass of a metric reads them."""

MAP_PAIR_CHUNK_SIZE = 64
"""Maps per chunk of CC, SIM and KLD (measured best of 4-1,000 on 1,000 maps, docs/results_log.md;
NSS, one pass over one map, is fastest unchunked)."""


def _in_chunks(function, arrays: Sequence[jax.Array], chunk_size: int | None):
    """`function(*arrays)` evaluated `chunk_size` examples at a time, in a `fori_loop`.

    The metrics read each map several times (means, sums, products); over a whole batch every pass
    goes to memory, over a chunk it stays in the cache: 2-5x faster on a 2-core CPU
    (docs/results_log.md). Chunk i covers examples [start, start + chunk_size) with start =
    min(i * chunk_size, batch - chunk_size): the last chunk overlaps the one before instead of
    padding, which would copy the whole batch; overlapping examples are simply computed twice.
    `function` maps (chunk, ...) arrays to a pytree of (chunk, ...) arrays.
    """
    batch = arrays[0].shape[0]
    chunk_size = batch if chunk_size is None else max(1, min(chunk_size, batch))
    if chunk_size == batch:
        return function(*arrays)
    shapes = jax.eval_shape(
        function, *[jax.ShapeDtypeStruct((chunk_size,) + a.shape[1:], a.dtype) for a in arrays]
    )

    def body(i, scores):
        start = jnp.minimum(i * chunk_size, batch - chunk_size)
        chunk = [jax.lax.dynamic_slice_in_dim(a, start, chunk_size) for a in arrays]
        values = function(*chunk)
        return jax.tree.map(
            lambda whole, part: jax.lax.dynamic_update_slice_in_dim(whole, part, start, 0),
            scores,
            values,
        )

    initial = jax.tree.map(lambda s: jnp.zeros((batch,) + s.shape[1:], s.dtype), shapes)
    return jax.lax.fori_loop(0, -(-batch // chunk_size), body, initial)


# ----------------------------------------------------------------------------- map metrics


def _cc(prediction: jax.Array, ground_truth: jax.Array) -> jax.Array:
    """Pearson's CC of one chunk (see `cc`)."""
    prediction, ground_truth = _flatten(prediction), _flatten(ground_truth)
    pred_mean, pred_std, pred_ok = _moments(prediction)
    truth_mean, truth_std, truth_ok = _moments(ground_truth)
    del pred_std, truth_std  # the normalisation below uses the same sums
    pred_centred, truth_centred = prediction - pred_mean, ground_truth - truth_mean
    covariance = _row_dot(pred_centred, truth_centred)
    variances = _row_dot(pred_centred, pred_centred) * _row_dot(truth_centred, truth_centred)
    usable = (pred_ok & truth_ok)[..., 0]
    return jnp.where(usable, covariance / jnp.sqrt(jnp.where(usable, variances, 1.0)), 0.0)


def _sim(prediction: jax.Array, ground_truth: jax.Array) -> jax.Array:
    """SIM of one chunk (see `sim`)."""
    prediction = _as_distribution(_flatten(prediction))
    ground_truth = _as_distribution(_flatten(ground_truth))
    return jnp.sum(jnp.minimum(prediction, ground_truth), axis=-1)


def _kld(prediction: jax.Array, ground_truth: jax.Array) -> jax.Array:
    """KLD of one chunk (see `kld`)."""
    prediction = _as_distribution(_flatten(prediction))
    ground_truth = _as_distribution(_flatten(ground_truth))
    ratio = ground_truth / (prediction + KLD_EPSILON)
    return jnp.sum(ground_truth * jnp.log(KLD_EPSILON + ratio), axis=-1)


def _nss(prediction: jax.Array, rows: jax.Array, cols: jax.Array, mask: jax.Array) -> jax.Array:
    """NSS of one chunk (see `nss`)."""
    flat = _flatten(prediction)
    mean, std, nonconstant = _moments(flat)
    values = _values_at(flat, _pixel_index(rows, cols, prediction.shape[-1]))
    standardised = jnp.where(nonconstant, (values - mean) / jnp.where(nonconstant, std, 1.0), 0.0)
    count = jnp.sum(mask, axis=-1)
    total = jnp.sum(jnp.where(mask, standardised, 0.0), axis=-1)
    return jnp.where(count > 0, total / jnp.maximum(count, 1), jnp.nan)


def _auc_judd(
    prediction: jax.Array, rows: jax.Array, cols: jax.Array, mask: jax.Array
) -> jax.Array:
    """AUC-Judd of one chunk (see `auc_judd`)."""
    # Rescaling to [0, 1] is positive-affine and changes no comparison, so it is implied rather
    # than computed (a float32 rescale could only merge distinct values by rounding).
    flat = _flatten(prediction)
    index = _pixel_index(rows, cols, prediction.shape[-1])
    values = _values_at(flat, index)
    thresholds = jnp.where(mask, values, jnp.inf)
    counts = _count_at_or_above(flat, thresholds).astype(jnp.float32)
    first = _first_occurrence(index, mask).astype(jnp.float32)
    return _auc_judd_from_counts(values, mask, first, counts, flat.shape[-1])


@functools.partial(jax.jit, static_argnames=("chunk_size",))
def cc(
    prediction: jax.Array, ground_truth: jax.Array, chunk_size: int | None = MAP_PAIR_CHUNK_SIZE
) -> jax.Array:
    """Pearson's linear correlation coefficient, per example.

    CC = mean((P - mean P) / std P * (G - mean G) / std G) over pixels, std with ddof = 0. A
    constant prediction or ground truth has no correlation: CC = 0 by definition. Range [-1, 1].

    Args:
      prediction, ground_truth: (B, H, W) maps on the same grid (the PSM as ground truth).
      chunk_size: maps per chunk (None: the whole batch at once); the scores do not depend on
        it beyond float32 rounding.

    Returns:
      (B,) float32.
    """
    return _in_chunks(_cc, (prediction, ground_truth), chunk_size)


@functools.partial(jax.jit, static_argnames=("chunk_size",))
def sim(
    prediction: jax.Array, ground_truth: jax.Array, chunk_size: int | None = MAP_PAIR_CHUNK_SIZE
) -> jax.Array:
    """Similarity (histogram intersection), per example.

    Both maps become distributions: shifted up by their minimum if it is negative, then divided
    by their sum (an all-zero map becomes uniform). SIM = sum over pixels of min(P, G), in [0, 1].

    `chunk_size` maps are evaluated at a time (`_in_chunks`); the scores do not depend on it
    beyond float32 rounding.
    """
    return _in_chunks(_sim, (prediction, ground_truth), chunk_size)


@functools.partial(jax.jit, static_argnames=("chunk_size",))
def kld(
    prediction: jax.Array, ground_truth: jax.Array, chunk_size: int | None = MAP_PAIR_CHUNK_SIZE
) -> jax.Array:
    """Kullback-Leibler divergence KL(ground truth || prediction), per example; lower is better.

    Both maps become distributions as in `sim`; with Q the ground truth and P the prediction,
    KLD = sum Q * log(eps + Q / (P + eps)), natural log, eps = 2.2204e-16 (the MIT benchmark's
    regulariser), so KLD = 0 when P = Q and it stays finite where P = 0.

    `chunk_size` maps are evaluated at a time (`_in_chunks`); the scores do not depend on it
    beyond float32 rounding.
    """
    return _in_chunks(_kld, (prediction, ground_truth), chunk_size)


@functools.partial(jax.jit, static_argnames=("chunk_size",))
def nss(
    prediction: jax.Array,
    rows: jax.Array,
    cols: jax.Array,
    mask: jax.Array,
    chunk_size: int | None = None,
) -> jax.Array:
    """Normalised scanpath saliency, per example.

    The prediction standardised (mean 0, std 1 over pixels, ddof = 0; a constant map is all 0),
    averaged over the valid fixations at their grid pixels (every fixation counts). NaN without
    a valid fixation.

    Args:
      prediction: (B, H, W).
      rows, cols: (B, F) int grid pixels of the fixations; mask: (B, F) bool.
      chunk_size: maps per chunk (None: the whole batch at once); the scores do not depend on
        it beyond float32 rounding.
    """
    return _in_chunks(_nss, (prediction, rows, cols, mask), chunk_size)


@functools.partial(jax.jit, static_argnames=("chunk_size",))
def auc_judd(
    prediction: jax.Array,
    rows: jax.Array,
    cols: jax.Array,
    mask: jax.Array,
    chunk_size: int = CHUNK_SIZE,
) -> jax.Array:
    """Area under the ROC curve, Judd's variant, per example.

    The prediction is rescaled to [0, 1]. Thresholds are the prediction's values at the valid
    fixations. At a threshold t: TPR = share of fixations whose value is >= t; FPR = share of the
    non-fixated pixels (pixels without any fixation) whose value is >= t. The curve runs from
    (0, 0) through the points, in threshold order, to (1, 1); AUC is its trapezoid area.

    Ties: equal values are collapsed, i.e. every threshold counts all values equal to it, so the
    score does not depend on the order of pixels or fixations and needs no random jitter (the MIT
    code adds a tiny random jitter instead). A constant map scores exactly 0.5; a map peaked on
    every fixation near 1; its reverse 1 / (2N) for N fixations with distinct values. As in
    Judd's curve, thresholds exist only at fixation values, so a map whose fixations all tie at
    its minimum scores 0.5, not 0 (jitter would give about 1 / (2N) there). NaN without a valid
    fixation.

    `chunk_size` maps are evaluated at a time (`_in_chunks`); the scores do not depend on it
    beyond float32 rounding.
    """
    return _in_chunks(_auc_judd, (prediction, rows, cols, mask), chunk_size)


def _mann_whitney_area(
    positives: jax.Array, positive_mask: jax.Array, negatives: jax.Array, negative_mask: jax.Array
) -> jax.Array:
    """P(positive > negative) + P(equal) / 2 over valid pairs: the exact area under the ROC."""
    above = (positives[:, :, None] > negatives[:, None, :]).astype(jnp.float32)
    equal = (positives[:, :, None] == negatives[:, None, :]).astype(jnp.float32)
    weights = positive_mask[:, :, None] & negative_mask[:, None, :]
    pairs = jnp.sum(weights, axis=(-2, -1))
    wins = jnp.sum(jnp.where(weights, above + equal / 2, 0.0), axis=(-2, -1))
    return jnp.where(pairs > 0, wins / jnp.maximum(pairs, 1), jnp.nan)


@jax.jit
def auc_borji(
    prediction: jax.Array, rows: jax.Array, cols: jax.Array, mask: jax.Array
) -> jax.Array:
    """Area under the ROC curve, Borji's variant (uniform negatives), per example.

    Borji's AUC draws negatives uniformly from all pixels of the map (fixated ones included) and
    averages the ROC area over random draws. We compute its expectation exactly: the ROC area of
    the fixation values against every pixel value, P(fixation value > pixel value) +
    P(equal) / 2. (The MIT code's threshold steps of 0.1 and 100 random draws approximate this.)
    NaN without a valid fixation.
    """
    flat = _flatten(prediction)
    values = _values_at(flat, _pixel_index(rows, cols, prediction.shape[-1]))
    thresholds = jnp.where(mask, values, jnp.inf)
    at_or_above = _count_at_or_above(flat, thresholds).astype(jnp.float32)
    # Pixels strictly above t are the pixels of -map at or below -t: P - #(-map >= -t + 0).
    strictly_above = flat.shape[-1] - _count_at_or_above(-flat, -thresholds).astype(jnp.float32)
    below = flat.shape[-1] - at_or_above
    equal = at_or_above - strictly_above
    per_fixation = (below + equal / 2) / flat.shape[-1]
    count = jnp.sum(mask, axis=-1)
    total = jnp.sum(jnp.where(mask, per_fixation, 0.0), axis=-1)
    return jnp.where(count > 0, total / jnp.maximum(count, 1), jnp.nan)


@jax.jit
def shuffled_auc(
    prediction: jax.Array,
    rows: jax.Array,
    cols: jax.Array,
    mask: jax.Array,
    negative_rows: jax.Array,
    negative_cols: jax.Array,
    negative_mask: jax.Array,
) -> jax.Array:
    """Shuffled AUC (sAUC), per example: fixations of other images as negatives.

    Positives are the prediction's values at the example's fixations, negatives its values at the
    given locations (fixations on other images, e.g. from `shuffled_negatives`), which discounts
    the centre bias shared by all images. Score: the exact ROC area, P(positive > negative) +
    P(equal) / 2 (the MIT code approximates it with threshold steps of 0.1). NaN without a valid
    fixation or negative.

    Args:
      prediction: (B, H, W); rows, cols, mask: (B, F) fixations;
      negative_rows, negative_cols, negative_mask: (B, N) negative locations on the same grid.
    """
    flat = _flatten(prediction)
    width = prediction.shape[-1]
    positives = _values_at(flat, _pixel_index(rows, cols, width))
    negatives = _values_at(flat, _pixel_index(negative_rows, negative_cols, width))
    return _mann_whitney_area(positives, mask, negatives, negative_mask)


def shuffled_negatives(
    key: jax.Array,
    image_index: jax.Array,
    pool_rows: jax.Array,
    pool_cols: jax.Array,
    pool_image_index: jax.Array,
    num: int,
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Draws `num` negatives per example for `shuffled_auc` from a pool of fixations.

    Each example draws uniformly, with replacement, among the pool's fixations on images other
    than its own.

    Args:
      key: a PRNG key.
      image_index: (B,) the image of each example.
      pool_rows, pool_cols, pool_image_index: (M,) grid pixels and images of the pooled fixations.
      num: negatives per example.

    Returns:
      (rows, cols, mask), each (B, num); mask is False where no fixation of another image exists.
    """
    other = pool_image_index[None, :] != jnp.asarray(image_index)[:, None]  # (B, M)
    logits = jnp.where(other, 0.0, -jnp.inf)
    keys = jax.random.split(key, other.shape[0])
    picks = jax.vmap(lambda k, lg: jax.random.categorical(k, lg, shape=(num,)))(keys, logits)
    valid = jnp.broadcast_to(jnp.any(other, axis=-1, keepdims=True), picks.shape)
    return pool_rows[picks], pool_cols[picks], valid


def _saliency_metrics_on_grid(prediction, ground_truth, rows, cols, mask) -> dict[str, jax.Array]:
    return {
        "cc": _cc(prediction, ground_truth),
        "sim": _sim(prediction, ground_truth),
        "auc_judd": _auc_judd(prediction, rows, cols, mask),
        "nss": _nss(prediction, rows, cols, mask),
        "kld": _kld(prediction, ground_truth),
    }


@functools.partial(jax.jit, static_argnames=("grid", "chunk_size"))
def saliency_metrics(
    prediction: jax.Array,
    ground_truth: jax.Array,
    fixation_x: jax.Array,
    fixation_y: jax.Array,
    fixation_mask: jax.Array,
    image_size: jax.Array,
    grid: tuple[int, int] = (120, 160),
    chunk_size: int = CHUNK_SIZE,
) -> dict[str, jax.Array]:
    """The five map metrics of the papers' tables on an evaluation grid, per example.

    Predicted and ground-truth maps of another size are bilinearly resized to `grid`
    (`resize_to_grid`); native fixations are mapped onto it (`fixations_to_grid`). The batch is
    evaluated `chunk_size` examples at a time (a `fori_loop`), which keeps each chunk's maps in the
    CPU cache: about twice as fast as one pass over the whole batch on a 2-core CPU.

    Args:
      prediction: (B, h, w) predicted PSMs.
      ground_truth: (B, h', w') ground-truth PSMs.
      fixation_x, fixation_y: (B, F) native 0-based pixel-centre coordinates; fixation_mask (B, F).
      image_size: (B, 2) or (2,) native (H, W) the fixations refer to.
      grid: (H, W) evaluation grid.
      chunk_size: examples per chunk.

    Returns:
      {"cc", "sim", "auc_judd", "nss", "kld"}: (B,) each.
    """
    prediction = resize_to_grid(prediction, grid)
    ground_truth = resize_to_grid(ground_truth, grid)
    rows, cols = fixations_to_grid(fixation_x, fixation_y, image_size, grid)
    arrays = (prediction, ground_truth, rows, cols, fixation_mask)
    return _in_chunks(_saliency_metrics_on_grid, arrays, chunk_size)


INFORMATION_GAIN_UNIFORM = 0.01
"""The uniform share of the density a map is turned into for the information gain (ours)."""


def density(maps: jax.Array, uniform: float = INFORMATION_GAIN_UNIFORM) -> jax.Array:
    """(B, H, W) maps -> (B, H, W) densities over pixels: the map's distribution (as for KLD) mixed
    with the uniform one, (1 - uniform) * map / sum(map) + uniform / (H W), so that no pixel has
    zero probability."""
    flat = _flatten(maps)
    mixed = (1.0 - uniform) * _as_distribution(flat) + uniform / flat.shape[-1]
    return mixed.reshape(jnp.shape(maps))


@functools.partial(jax.jit, static_argnames=("grid",))
def information_gain(
    prediction: jax.Array,
    baseline: jax.Array,
    fixation_x: jax.Array,
    fixation_y: jax.Array,
    fixation_mask: jax.Array,
    image_size: jax.Array,
    grid: tuple[int, int] = (120, 160),
    uniform: float = INFORMATION_GAIN_UNIFORM,
) -> jax.Array:
    """Information gain of `prediction` over `baseline`, in bits per fixation, per example
    (Kummerer, Wallis & Bethge 2015).

    Both maps are resized to `grid` (`resize_to_grid`) and turned into densities by one rule
    (`density`: a mixture with `uniform` of the uniform density); the gain of an example is the
    mean over its fixations f of log2 p_prediction(f) - log2 p_baseline(f). It is 0 when the
    prediction is the baseline and positive when the prediction puts more probability where the
    observer looked.

    Args:
      prediction, baseline: (B, h, w) maps (e.g. a predicted PSM and the ground-truth USM).
      fixation_x, fixation_y, fixation_mask, image_size: as in `saliency_metrics`.
      grid: (H, W) evaluation grid.
      uniform: the uniform share of each density.

    Returns:
      (B,) bits per fixation; NaN for an example without fixations.
    """
    rows, cols = fixations_to_grid(fixation_x, fixation_y, image_size, grid)
    index = _pixel_index(rows, cols, grid[1])
    log_ratio = jnp.log2(
        _values_at(_flatten(density(resize_to_grid(prediction, grid), uniform)), index)
    ) - jnp.log2(_values_at(_flatten(density(resize_to_grid(baseline, grid), uniform)), index))
    weights = jnp.asarray(fixation_mask, jnp.float32)
    count = jnp.sum(weights, axis=-1)
    return jnp.where(count > 0, jnp.sum(log_ratio * weights, axis=-1) / count, jnp.nan)


# ----------------------------------------------------------------------------- embeddings


@jax.jit
def precision_at_1(embeddings: jax.Array, labels: jax.Array) -> jax.Array:
    """Per embedding: 1.0 if its nearest neighbour has the same label, else 0.0.

    Nearest = highest cosine similarity among the other embeddings (itself excluded); among
    equally similar neighbours the first in order wins. The mean is the precision at one.

    Args:
      embeddings: (N, D), N >= 2; labels: (N,) int user labels.
    """
    embeddings = jnp.asarray(embeddings, jnp.float32)
    norms = jnp.linalg.norm(embeddings, axis=-1, keepdims=True)
    unit = embeddings / jnp.maximum(norms, 1e-12)
    similarity = unit @ unit.T
    similarity = jnp.where(jnp.eye(len(unit), dtype=bool), -jnp.inf, similarity)
    neighbour = jnp.argmax(similarity, axis=-1)
    labels = jnp.asarray(labels)
    return (labels[neighbour] == labels).astype(jnp.float32)


# ----------------------------------------------------------------------------- consistency


@jax.jit
def inter_observer_consistency(
    psm: jax.Array, rows: jax.Array, cols: jax.Array, mask: jax.Array, valid: jax.Array
) -> jax.Array:
    """Mean pairwise AUC-Judd between different observers on one image (Xu et al., Table 1).

    For every ordered pair (i, j), i != j, of observers with valid maps and at least one
    fixation, the AUC-Judd of observer i's map at observer j's fixations; the result is the mean
    over those pairs (NaN if there is none). Averaging over images is the caller's step.

    Args:
      psm: (O, H, W) the observers' maps on the evaluation grid.
      rows, cols, mask: (O, F) every observer's fixations on that grid.
      valid: (O,) bool, False for observers without a map.

    Returns:
      A scalar.
    """
    num_observers, num_fixations = mask.shape
    flat = _flatten(psm)
    index = _pixel_index(rows, cols, psm.shape[-1])  # (O, F)
    # Map i's values at every observer's fixations: (O_map, O_fix * F).
    values = flat[:, index.reshape(-1)]
    all_mask = jnp.broadcast_to(mask.reshape(1, -1), values.shape)
    counts = _count_at_or_above(flat, jnp.where(all_mask, values, jnp.inf)).astype(jnp.float32)
    # Pair (i, j): map i, fixations j, as a batch of O * O rows.
    pair_values = values.reshape(num_observers * num_observers, num_fixations)
    pair_counts = counts.reshape(num_observers * num_observers, num_fixations)
    pair_index = jnp.tile(index, (num_observers, 1))
    pair_mask = jnp.tile(mask, (num_observers, 1))
    first = _first_occurrence(pair_index, pair_mask).astype(jnp.float32)
    area = _auc_judd_from_counts(pair_values, pair_mask, first, pair_counts, flat.shape[-1])
    area = area.reshape(num_observers, num_observers)
    usable = valid & jnp.any(mask, axis=-1)
    pairs = usable[:, None] & usable[None, :] & ~jnp.eye(num_observers, dtype=bool)
    count = jnp.sum(pairs)
    return jnp.where(count > 0, jnp.sum(jnp.where(pairs, area, 0.0)) / count, jnp.nan)


# ----------------------------------------------------------------------------- summaries, tests


def average(scores: Mapping[str, jax.Array], valid: jax.Array | None = None) -> dict[str, float]:
    """Mean of each per-example score over the examples where `valid` (default: all).

    NaN scores (examples without fixations) are not dropped silently: mask them with `valid`.
    """
    result = {}
    for name, values in scores.items():
        values = np.asarray(values, np.float64)
        if valid is not None:
            values = values[np.asarray(valid, bool)]
        result[name] = float(np.mean(values)) if values.size else float("nan")
    return result


def mann_whitney_p(scores_a: np.ndarray, scores_b: np.ndarray) -> float:
    """Two-sided Mann-Whitney U test p-value between two methods' per-example scores.

    The test the papers use (an asterisk when p < 0.05). It treats the two samples as
    independent; for scores of the same examples, `wilcoxon_p` is the better-suited test.
    """
    return float(scipy.stats.mannwhitneyu(scores_a, scores_b, alternative="two-sided").pvalue)


def wilcoxon_p(scores_a: np.ndarray, scores_b: np.ndarray) -> float:
    """Two-sided Wilcoxon signed-rank test p-value for paired per-example scores.

    1.0 when the two methods score identically on every example (no difference to test).
    """
    differences = np.asarray(scores_a, np.float64) - np.asarray(scores_b, np.float64)
    if not np.any(differences != 0):
        return 1.0
    return float(scipy.stats.wilcoxon(scores_a, scores_b, alternative="two-sided").pvalue)


def compare(
    scores_a: Mapping[str, np.ndarray],
    scores_b: Mapping[str, np.ndarray],
    metrics: Sequence[str] | None = None,
    alpha: float = 0.05,
) -> dict[str, dict]:
    """Compares method A with method B per metric on the same examples.

    Examples where either score is NaN are left out of that metric's comparison.

    Returns:
      metric -> {"mean_a", "mean_b", "n", "mann_whitney_p", "wilcoxon_p", "a_better",
      "significant"}: `a_better` respects the metric's direction (lower KLD is better) and
      `significant` means A is better with a Mann-Whitney p < alpha (the papers' asterisk).
    """
    result = {}
    for name in metrics or [m for m in scores_a if m in scores_b]:
        a = np.asarray(scores_a[name], np.float64)
        b = np.asarray(scores_b[name], np.float64)
        if a.shape != b.shape:
            raise ValueError(f"{name}: scores of different examples, {a.shape} vs {b.shape}.")
        keep = np.isfinite(a) & np.isfinite(b)
        a, b = a[keep], b[keep]
        sign = 1.0 if HIGHER_IS_BETTER.get(name, True) else -1.0
        a_better = bool(sign * (a.mean() - b.mean()) > 0) if a.size else False
        p_mw = mann_whitney_p(a, b) if a.size else float("nan")
        result[name] = {
            "mean_a": float(a.mean()) if a.size else float("nan"),
            "mean_b": float(b.mean()) if b.size else float("nan"),
            "n": int(a.size),
            "mann_whitney_p": p_mw,
            "wilcoxon_p": wilcoxon_p(a, b) if a.size else float("nan"),
            "a_better": a_better,
            "significant": a_better and p_mw < alpha,
        }
    return result
