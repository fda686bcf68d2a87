"""Cleaning rules of the fixation table, and the deterministic splits."""

import numpy as np
import pytest

from psm_jax.data import splits
from psm_jax.data.fixations import FixationTable, clean_fixations


def _table(**overrides):
    columns = dict(
        image=[0, 0, 1, 1, 1],
        observer=[0, 1, 0, 1, 1],
        x=[1.0, np.nan, 50.0, -3.0, 2.0],
        y=[1.0, 2.0, 2.0, 2.0, np.inf],
        duration_ms=[100.0, 100.0, np.nan, -5.0, 200.0],
    )
    columns.update(overrides)
    return FixationTable.from_columns(**columns)


def test_clean_drops_nan_clips_outside_and_counts():
    sizes = np.array([[10, 20], [10, 20]])
    cleaned, counts = clean_fixations(_table(), sizes)
    assert counts == {
        "nan_fixations_dropped": 2,
        "outside_fixations_clipped": 2,
        "invalid_durations_zeroed": 2,
    }
    np.testing.assert_allclose(cleaned.x, [1.0, 19.5, -0.5])
    np.testing.assert_allclose(cleaned.duration_ms, [100.0, 0.0, 0.0])
    np.testing.assert_array_equal(cleaned.image, [0, 1, 1])


def test_table_rejects_ragged_columns_and_groups_by_image():
    with pytest.raises(ValueError, match="differ in length"):
        FixationTable(*(np.zeros(n) for n in (2, 2, 2, 2, 2, 3)))
    rows = _table().rows_by_image(3)
    assert [r.tolist() for r in rows] == [[0, 1], [2, 3, 4], []]


def test_image_split_is_80_10_10_deterministic_and_order_free():
    ids = [f"im{i:03d}" for i in range(700)]
    first = splits.split_images(ids, seed=0)
    assert [len(first[s]) for s in splits.SPLIT_NAMES] == [560, 70, 70]
    assert splits.split_images(list(reversed(ids)), seed=0) == first
    assert splits.split_images(ids, seed=1) != first
    assert sorted(sum(first.values(), [])) == ids


def test_observer_split_counts_and_fallback():
    observers = [f"o{i}" for i in range(15)]
    split = splits.split_observers(observers, (9, 3, 3))
    assert [len(split[s]) for s in splits.SPLIT_NAMES] == [9, 3, 3]
    fallback = splits.split_observers(observers[:5], (9, 3, 3))
    assert [len(fallback[s]) for s in splits.SPLIT_NAMES] == [3, 1, 1]
    with pytest.raises(ValueError, match="not unique"):
        splits.split_observers(["a", "a", "b"], (1, 1, 1))


def test_observer_folds_put_every_observer_in_exactly_one_test_set():
    observers = [f"o{i:02d}" for i in range(15)]
    folds = [splits.fold_observers(observers, fold, 5) for fold in range(5)]
    for fold in folds:  # OSIE with 5 folds: 9 / 3 / 3, disjoint, everyone somewhere
        assert [len(fold[s]) for s in splits.SPLIT_NAMES] == [9, 3, 3]
        assert sorted(sum(fold.values(), [])) == observers
    tested = sum((fold["test"] for fold in folds), [])
    assert sorted(tested) == observers  # each observer tested exactly once
    for k in range(5):  # one permutation for every fold: fold k validates fold k+1's test set
        assert folds[k]["validation"] == folds[(k + 1) % 5]["test"]
    assert splits.fold_observers(list(reversed(observers)), 2, 5) == folds[2]  # order-free
    assert splits.fold_observers(observers, 2, 5, seed=1) != folds[2]
    # Nearly equal chunks where the folds do not divide the observers: 10 into 4 -> 3 3 2 2.
    sizes = [len(splits.fold_observers(observers[:10], k, 4)["test"]) for k in range(4)]
    assert sorted(sizes) == [2, 2, 3, 3]


@pytest.mark.parametrize(
    ("fold", "folds", "match"),
    [
        (0, 2, "at least 3 folds"),
        (3, 3, r"fold 3 of 3: folds are 0 to 2"),
        (-1, 3, "fold -1"),
        (0, 6, "6 folds of 5 observers"),
    ],
)
def test_observer_folds_refuse_impossible_folds(fold, folds, match):
    with pytest.raises(ValueError, match=match):
        splits.fold_observers([f"o{i}" for i in range(5)], fold, folds)
