"""Deterministic image and observer splits.

Images are split train/validation/test 80/10/10 and observers by per-dataset counts (the papers'
open-set protocol: PS 20/5/5, ID 80/10/12; OSIE 9/3/3 here), both from a fixed seed. The builders
record both splits in the dataset metadata, and every later stage reads them from there.

One split tests a few people (OSIE: 3); `fold_observers` makes K splits that together test every
observer exactly once (k-fold cross-validation over observers, `studies/observer_folds.py`).
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


MIN_FOLDS = 3
"""Folds need a test, a validation and a training chunk of observers."""


def check_fold(fold: int, folds: int) -> None:
    """A ValueError unless 0 <= fold < folds and folds >= `MIN_FOLDS`."""
    if folds < MIN_FOLDS:
        raise ValueError(
            f"{folds} folds: give at least {MIN_FOLDS} folds (each fold's test, validation and "
            "training observers are chunks of their own)."
        )
    if not 0 <= fold < folds:
        raise ValueError(f"fold {fold} of {folds}: folds are 0 to {folds - 1}.")


def fold_observers(
    observer_ids: Sequence[str], fold: int, folds: int, seed: int = DEFAULT_SEED
) -> dict[str, list[str]]:
    """Fold `fold` of k-fold cross-validation over observers.

    The observers (sorted, so independent of input order) are permuted once by `seed`, the same
    permutation for every fold, and cut into `folds` nearly equal consecutive chunks (the first
    ones one larger where the folds do not divide the observers). Fold k tests chunk k, validates
    on chunk (k + 1) mod K and trains on the rest, so over k = 0 .. K - 1 every observer is a test
    observer exactly once (and a validation observer exactly once).

    Args:
      observer_ids: all observers of the dataset.
      fold, folds: k and K; 0 <= k < K, 3 <= K <= the number of observers.
      seed: permutation seed.

    Returns:
      {"train", "validation", "test"} -> sorted observer ids.
    """
    check_fold(fold, folds)
    if folds > len(observer_ids):
        raise ValueError(
            f"{folds} folds of {len(observer_ids)} observers: give at most {len(observer_ids)} "
            "folds (every fold tests at least one observer)."
        )
    if len(set(observer_ids)) != len(observer_ids):
        raise ValueError("Ids to split are not unique.")
    ordered = sorted(observer_ids)
    permutation = np.random.default_rng(seed).permutation(len(ordered))
    chunks = [[ordered[i] for i in chunk] for chunk in np.array_split(permutation, folds)]
    test, validation = chunks[fold], chunks[(fold + 1) % folds]
    held_out = (fold, (fold + 1) % folds)
    train = [o for k, chunk in enumerate(chunks) if k not in held_out for o in chunk]
    return {"train": sorted(train), "validation": sorted(validation), "test": sorted(test)}
