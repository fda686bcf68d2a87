"""Deterministic image and observer splits.

Images are split train/validation/test 80/10/10 and observers by per-dataset counts (the papers'
open-set protocol: PS 20/5/5, ID 80/10/12; OSIE 9/3/3 here), both from a fixed seed. The builders
record both splits in the dataset metadata, and every later stage reads them from there.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from absl import logging

SPLIT_NAMES = ("train", "validation", "test")
IMAGE_FRACTIONS = (0.8, 0.1, 0.1)
DEFAULT_SEED = 0


def split_counts(total: int, fractions: Sequence[float] = IMAGE_FRACTIONS) -> tuple[int, ...]:
    """Counts per split that add up to `total`: rounded shares, the remainder to the first split."""
    counts = [int(round(total * f)) for f in fractions[1:]]
    return (total - sum(counts), *counts)


def _assign(ids: Sequence[str], counts: Sequence[int], seed: int) -> dict[str, list[str]]:
    if sum(counts) != len(ids):
        raise ValueError(f"Split counts {tuple(counts)} do not add up to {len(ids)} items.")
    if len(set(ids)) != len(ids):
        raise ValueError("Ids to split are not unique.")
    ordered = sorted(ids)
    permutation = np.random.default_rng(seed).permutation(len(ordered))
    out, start = {}, 0
    for name, count in zip(SPLIT_NAMES, counts, strict=True):
        out[name] = sorted(ordered[i] for i in permutation[start : start + count])
        start += count
    return out


def split_images(
    image_ids: Sequence[str],
    fractions: Sequence[float] = IMAGE_FRACTIONS,
    seed: int = DEFAULT_SEED,
) -> dict[str, list[str]]:
    """Splits image ids into train/validation/test by `fractions`, independent of input order."""
    return _assign(image_ids, split_counts(len(image_ids), fractions), seed)


def split_observers(
    observer_ids: Sequence[str],
    counts: Sequence[int] | None,
    seed: int = DEFAULT_SEED,
) -> dict[str, list[str]]:
    """Splits observer ids into train/validation/test observers.

    Args:
      observer_ids: all observers of the dataset.
      counts: (train, validation, test) counts; if None or if they do not add up to the number of
        observers (a release with another number of observers than the paper's), a 60/20/20 split,
        with a warning naming both in the second case.
      seed: permutation seed.
    """
    if counts is not None and sum(counts) != len(observer_ids):
        fallback = split_counts(len(observer_ids), (0.6, 0.2, 0.2))
        logging.warning(
            "The observer split %s adds up to %d observers but the release has %d: using the "
            "60/20/20 split %s instead. Choose one with the dataset config "
            "'<config>+observers_<train>_<validation>_<test>' (launch/build_dataset.py "
            "--observer_split).",
            tuple(counts),
            sum(counts),
            len(observer_ids),
            fallback,
        )
        counts = fallback
    if counts is None:
        counts = split_counts(len(observer_ids), (0.6, 0.2, 0.2))
    return _assign(observer_ids, counts, seed)
