"""Baselines without learning (ours): what a personalised network must beat.

Each baseline is computed from exactly the data the embedding network gets for an observer: in the
closed set every training image the observer viewed, in the open set the m enrolment pairs their
embedding is made from. Per observer:

  mean PSM          the mean of the observer's PSMs on those images;
  mean discrepancy  the mean of PSM - USM on those images (working resolution);
  blend weight a    in {0, 0.1, ..., 1}: the a whose map a x USM + (1 - a) x mean PSM has the
                    lowest mean KLD to the observer's PSMs on those same images.

And one population map, the standard saliency baseline: the centre bias, the mean ground-truth USM
of the training images (the training observers' fixations on the training images, blurred), the
same map for every image.

The rows they give (`psm_jax.evaluation.methods`): `centre_bias`, `mean_discrepancy` (USM + the
observer's mean discrepancy, composed like every personalised row) and `prior_blend`.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from psm_jax import metrics
from psm_jax.data import pipeline
from psm_jax.models import layers

BLEND_WEIGHTS = tuple(np.round(np.linspace(0.0, 1.0, 11), 2))


@dataclasses.dataclass(frozen=True)
class ObserverPriors:
    """Per observer of a group (K): mean_psm, mean_discrepancy (K, H, W), blend (K,) weights of
    the USM, pairs (K,) the number of (image, PSM) pairs they came from."""

    mean_psm: np.ndarray
    mean_discrepancy: np.ndarray
    blend: np.ndarray
    pairs: np.ndarray


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
    for k in range(len(observers)):
        psms = np.stack([p for p, _ in maps[k]])
        usms = np.stack([u for _, u in maps[k]])
        mean_psm.append(psms.mean(axis=0))
        mean_discrepancy.append((psms - usms).mean(axis=0))
        blend.append(_best_blend(psms, usms, mean_psm[-1]))
        pairs.append(len(psms))
    return ObserverPriors(
        mean_psm=np.stack(mean_psm).astype(np.float32),
        mean_discrepancy=np.stack(mean_discrepancy).astype(np.float32),
        blend=np.asarray(blend, np.float32),
        pairs=np.asarray(pairs),
    )


_BLEND_CHUNK = 64
"""Pairs per call of `_blend_kld_sums`: one compiled shape whatever an observer's pair count."""


@jax.jit
def _blend_kld_sums(psms, usms, mean_psm, valid) -> jax.Array:
    """For each weight of `BLEND_WEIGHTS`, the sum over the valid pairs of the blend's KLD."""

    def total(weight):
        prediction = weight * usms + (1.0 - weight) * mean_psm
        return jnp.sum(jnp.where(valid, metrics.kld(prediction, psms), 0.0))

    return lax.map(total, jnp.asarray(BLEND_WEIGHTS, jnp.float32))


def _best_blend(psms: np.ndarray, usms: np.ndarray, mean_psm: np.ndarray) -> float:
    """The weight a of `BLEND_WEIGHTS` whose a USM + (1 - a) mean PSM has the lowest mean KLD to
    the observer's PSMs (ties: the larger a, i.e. the population map)."""
    sums = np.zeros(len(BLEND_WEIGHTS))
    for start in range(0, len(psms), _BLEND_CHUNK):
        chunk = slice(start, start + _BLEND_CHUNK)
        valid = np.arange(_BLEND_CHUNK) < len(psms[chunk])
        padded = [layers.pad_batch(maps[chunk], _BLEND_CHUNK) for maps in (psms, usms)]
        sums += np.asarray(_blend_kld_sums(*padded, mean_psm, valid), np.float64)
    losses = [float(total / len(psms)) for total in sums.astype(np.float32)]
    best = min(losses)
    return max(a for a, loss in zip(BLEND_WEIGHTS, losses, strict=True) if loss == best)


def blend(usm: np.ndarray, mean_psm: np.ndarray, weight) -> np.ndarray:
    """weight x USM + (1 - weight) x mean PSM; `weight` broadcasts over the leading axes."""
    weight = np.asarray(weight, np.float32).reshape(np.shape(weight) + (1, 1))
    return (weight * usm + (1.0 - weight) * mean_psm).astype(np.float32)
