"""Baselines without learning (ours): what a personalised network must beat.

Each baseline is computed from exactly the data the embedding network gets for an observer: in the
closed set every training image the observer viewed, in the open set the m enrolment pairs their
embedding is made from. Per observer:

  mean PSM          the mean of the observer's PSMs on those images;
  mean discrepancy  the mean of PSM - USM on those images (working resolution);
  blend weight a    in {0, 0.1, ..., 1}: the a whose map a x USM + (1 - a) x mean PSM has the
                    lowest mean KLD to the observer's PSMs on those same images;
  density ratio     (mean PSM + e) / (mean USM + e) on those images, e = 0.05 x the mean USM's
                    maximum: where the observer looks more (> 1) or less (< 1) than people in
                    general, as a ratio of densities;
  gamma g, weight w the exponents of USM^g x density ratio^w, chosen in that order from `GAMMAS`
                    and `RATIO_WEIGHTS` by the lowest mean KLD on those same images (g: how much
                    more concentrated or spread the observer's maps are than the population's);
                    w by two-fold cross-fitting (the ratio from one half of the pairs scored on
                    the other), since a ratio fitted and scored on the same 32 enrolment pairs
                    chose w too large and fell below the USM in the open set (CC 0.622 against
                    0.690 on OSIE, 2026-12-03).

And one population map, the standard saliency baseline: the centre bias, the mean ground-truth USM
of the training images (the training observers' fixations on the training images, blurred), the
same map for every image.

The rows they give (`psm_jax.evaluation.methods`): `centre_bias`, `mean_discrepancy` (USM + the
observer's mean discrepancy, composed like every personalised row), `prior_blend` and
`density_ratio` (USM^g x density ratio^w: a per-person reweighting in the density's log space,
which on OSIE beats the USM on CC, SIM and KLD where the additive forms lower SIM and raise KLD;
docs/results_log.md, 2026-12-03).
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from psm_jax import metrics
from psm_jax.data import pipeline
from psm_jax.models import layers

BLEND_WEIGHTS = tuple(np.round(np.linspace(0.0, 1.0, 11), 2))
GAMMAS = (0.6, 0.7, 0.8, 0.9, 1.0, 1.1, 1.25, 1.4, 1.6, 1.8, 2.0)
RATIO_WEIGHTS = (0.0, 0.25, 0.5, 1.0, 1.5, 2.0)
RATIO_EPSILON = 0.05
"""e of the density ratio, as a fraction of the observer's mean USM's maximum."""


@dataclasses.dataclass(frozen=True)
class ObserverPriors:
    """Per observer of a group (K): mean_psm, mean_discrepancy, density_ratio (K, H, W); blend
    (K,) weights of the USM; gamma, ratio_weight (K,) the exponents of `density_ratio_map`;
    pairs (K,) the number of (image, PSM) pairs they came from."""

    mean_psm: np.ndarray
    mean_discrepancy: np.ndarray
    blend: np.ndarray
    pairs: np.ndarray
    density_ratio: np.ndarray
    gamma: np.ndarray
    ratio_weight: np.ndarray


def centre_bias(source, metadata) -> np.ndarray:
    """(H, W): the mean ground-truth USM over the training images of `source`."""
    total, count = 0.0, 0
    for index in range(len(source)):
        _, _, usm = pipeline.ground_truth_maps(source[index], metadata)
        if usm is not None:
            total, count = total + usm, count + 1
    if not count:
        raise ValueError(f"{metadata.name}: no training image with a USM for the centre bias.")
    return (total / count).astype(np.float32)


def observer_priors(
    source, metadata, group: str, images: list[np.ndarray] | None = None
) -> ObserverPriors:
    """The priors of every observer of `group` (module docstring).

    Args:
      source, metadata: the dataset's training split (`psm_jax.data.pipeline.open_split`).
      group: the observer group ("train" for the closed set, "test" for the open set).
      images: per observer of the group, the record indices of their images (the enrolment
        sets); None: every training image each observer viewed.
    """
    observers = metadata.observers(group)
    wanted: dict[int, list[int]] = {}
    if images is None:
        for index in range(len(source)):
            wanted[index] = list(range(len(observers)))
    else:
        for k, indices in enumerate(images):
            for index in np.asarray(indices).reshape(-1):
                wanted.setdefault(int(index), []).append(k)
    maps = {}
    for index in sorted(wanted):
        psm, valid, usm = pipeline.ground_truth_maps(source[index], metadata)
        if usm is None:
            continue
        for k in wanted[index]:
            if valid[observers[k]]:
                maps.setdefault(k, []).append((psm[observers[k]], usm))
    missing = [k for k in range(len(observers)) if k not in maps]
    if missing:
        raise ValueError(f"{metadata.name}: observers {missing} of {group!r} have no usable pair.")
    mean_psm, mean_discrepancy, blend, pairs = [], [], [], []
    ratio, gamma, ratio_weight = [], [], []
    for k in range(len(observers)):
        psms = np.stack([p for p, _ in maps[k]])
        usms = np.stack([u for _, u in maps[k]])
        mean_psm.append(psms.mean(axis=0))
        mean_discrepancy.append((psms - usms).mean(axis=0))
        blend.append(_best_blend(psms, usms, mean_psm[-1]))
        pairs.append(len(psms))
        ratio.append(density_ratio(psms, usms))
        gamma.append(_best("gamma", GAMMAS, psms, usms))
        ratio_weight.append(_cross_fitted_ratio_weight(psms, usms, gamma[-1]))
    return ObserverPriors(
        mean_psm=np.stack(mean_psm).astype(np.float32),
        mean_discrepancy=np.stack(mean_discrepancy).astype(np.float32),
        blend=np.asarray(blend, np.float32),
        pairs=np.asarray(pairs),
        density_ratio=np.stack(ratio).astype(np.float32),
        gamma=np.asarray(gamma, np.float32),
        ratio_weight=np.asarray(ratio_weight, np.float32),
    )


_CHUNK = 64
"""Pairs per call of `_kld_sums`: one compiled shape whatever an observer's pair count."""


@functools.partial(jax.jit, static_argnames=("form",))
def _kld_sums(form, candidates, psms, usms, mean_psm, ratio, gamma, valid) -> jax.Array:
    """For each candidate of a form ("blend": a; "gamma": g; "ratio": w given g), the sum over
    the valid pairs of its map's KLD to the PSMs.

    The powers are taken as exp(g log USM + w log ratio) with the logarithms computed once for
    every candidate (USM^g is exp(g log USM) for USM >= 0; 0 stays 0): a third of the time of
    `jnp.power` per candidate, the same mean KLDs within 4e-7 (docs/results_log.md,
    2026-12-03)."""
    if form == "blend":

        def prediction(candidate):
            return candidate * usms + (1.0 - candidate) * mean_psm

    else:
        log_usms = jnp.log(usms)
        log_ratio = jnp.log(ratio) if form == "ratio" else None

        def prediction(candidate):
            if form == "gamma":
                return jnp.exp(candidate * log_usms)
            return jnp.exp(gamma * log_usms + candidate * log_ratio)

    def total(candidate):
        return jnp.sum(jnp.where(valid, metrics.kld(prediction(candidate), psms), 0.0))

    return lax.map(total, jnp.asarray(candidates, jnp.float32))


def _mean_klds(
    form: str,
    candidates,
    psms: np.ndarray,
    usms: np.ndarray,
    *,
    mean_psm=None,
    ratio=None,
    gamma: float = 1.0,
) -> np.ndarray:
    """(len(candidates),) the mean KLD of each candidate's map to the PSMs."""
    zeros = np.zeros(psms.shape[1:], np.float32)
    mean_psm = zeros if mean_psm is None else mean_psm
    ratio = np.ones_like(zeros) if ratio is None else ratio
    pending = []  # every chunk dispatched before any is read: XLA runs them back to back
    for start in range(0, len(psms), _CHUNK):
        chunk = slice(start, start + _CHUNK)
        valid = np.arange(_CHUNK) < len(psms[chunk])
        padded = [layers.pad_batch(maps[chunk], _CHUNK) for maps in (psms, usms)]
        pending.append(
            _kld_sums(form, candidates, *padded, mean_psm, ratio, np.float32(gamma), valid)
        )
    sums = sum((np.asarray(part, np.float64) for part in pending), np.zeros(len(candidates)))
    return (sums.astype(np.float32) / len(psms)).astype(np.float32)


def _pick(form: str, candidates, losses, prefer=None) -> float:
    """The candidate with the lowest loss; ties go to the lowest `prefer(candidate)` (default:
    the candidate nearest the population map)."""
    losses = [float(loss) for loss in losses]
    best = min(losses)
    tied = [c for c, loss in zip(candidates, losses, strict=True) if loss == best]
    population = {"blend": 1.0, "gamma": 1.0, "ratio": 0.0}[form]
    return float(min(tied, key=prefer or (lambda c: abs(c - population))))


def _best(form: str, candidates, psms, usms, *, prefer=None, **maps) -> float:
    """The candidate with the lowest mean KLD to the observer's PSMs (`_pick`)."""
    return _pick(form, candidates, _mean_klds(form, candidates, psms, usms, **maps), prefer)


def density_ratio(psms: np.ndarray, usms: np.ndarray) -> np.ndarray:
    """(H, W): (mean PSM + e) / (mean USM + e) over the pairs, e = `RATIO_EPSILON` x the mean
    USM's maximum."""
    mean_usm = usms.mean(axis=0)
    epsilon = RATIO_EPSILON * float(mean_usm.max())
    return ((psms.mean(axis=0) + epsilon) / (mean_usm + epsilon)).astype(np.float32)


def _cross_fitted_ratio_weight(psms: np.ndarray, usms: np.ndarray, gamma: float) -> float:
    """w of `RATIO_WEIGHTS` by two-fold cross-fitting: the ratio from the even pairs scored on
    the odd ones and the other way round, so that a ratio estimated from few pairs (the open set's
    m) is not rewarded for fitting its own noise; 0 with fewer than 2 pairs."""
    if len(psms) < 2:
        return 0.0
    folds = (slice(0, None, 2), slice(1, None, 2))
    total = np.zeros(len(RATIO_WEIGHTS))
    for fit, held in (folds, folds[::-1]):
        ratio = density_ratio(psms[fit], usms[fit])
        losses = _mean_klds(
            "ratio", RATIO_WEIGHTS, psms[held], usms[held], ratio=ratio, gamma=gamma
        )
        total += losses * len(psms[held])
    return _pick("ratio", RATIO_WEIGHTS, (total / len(psms)).astype(np.float32))


def _best_blend(psms: np.ndarray, usms: np.ndarray, mean_psm: np.ndarray) -> float:
    """The weight a of `BLEND_WEIGHTS` whose a USM + (1 - a) mean PSM has the lowest mean KLD to
    the observer's PSMs (ties: the larger a, i.e. the population map)."""
    return _best("blend", BLEND_WEIGHTS, psms, usms, mean_psm=mean_psm, prefer=lambda a: -a)


def blend(usm: np.ndarray, mean_psm: np.ndarray, weight) -> np.ndarray:
    """weight x USM + (1 - weight) x mean PSM; `weight` broadcasts over the leading axes."""
    weight = np.asarray(weight, np.float32).reshape(np.shape(weight) + (1, 1))
    return (weight * usm + (1.0 - weight) * mean_psm).astype(np.float32)


def density_ratio_map(usm: np.ndarray, ratio: np.ndarray, gamma, weight) -> np.ndarray:
    """USM^gamma x ratio^weight, each map scaled to a maximum of 1; `gamma` and `weight`
    broadcast over the leading axes (per pair), `ratio` is (..., H, W) like `usm`."""
    gamma = np.asarray(gamma, np.float32).reshape(np.shape(gamma) + (1, 1))
    weight = np.asarray(weight, np.float32).reshape(np.shape(weight) + (1, 1))
    maps = np.power(np.asarray(usm, np.float32), gamma) * np.power(ratio, weight)
    peak = maps.max(axis=(-2, -1), keepdims=True)
    return np.where(peak > 0, maps / np.where(peak > 0, peak, 1.0), maps).astype(np.float32)
