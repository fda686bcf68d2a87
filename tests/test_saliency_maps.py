"""The saliency-map core against brute-force references and classic blur-then-resize pipelines."""

import numpy as np
import pytest
import scipy.ndimage

from psm_jax.data import saliency_maps as sm


def brute_force_psm(x, y, observer, viewing, num_observers, native_size, sigma, working_size):
    """The module docstring's definition, with loops over pixels and fixations."""
    native_h, native_w = native_size
    work_h, work_w = working_size
    maps = np.zeros((num_observers, work_h, work_w))
    valid = np.zeros(num_observers, bool)
    for o in range(num_observers):
        native = np.zeros(native_size)
        for v in set(viewing[observer == o].tolist()):
            own = np.flatnonzero((observer == o) & (viewing == v))
            for i in range(native_h):
                for j in range(native_w):
                    for f in own:
                        native[i, j] += np.exp(
                            -((j - x[f]) ** 2) / (2 * sigma**2) - (i - y[f]) ** 2 / (2 * sigma**2)
                        ) / len(own)
        # Area resampling, pixel by pixel, with fractional overlaps.
        scale_h, scale_w = native_h / work_h, native_w / work_w
        for r in range(work_h):
            for c in range(work_w):
                total = 0.0
                for i in range(native_h):
                    overlap_i = max(0.0, min((r + 1) * scale_h, i + 1) - max(r * scale_h, i))
                    for j in range(native_w):
                        overlap_j = max(0.0, min((c + 1) * scale_w, j + 1) - max(c * scale_w, j))
                        total += native[i, j] * overlap_i * overlap_j
                maps[o, r, c] = total / (scale_h * scale_w)
        if maps[o].max() > maps[o].min():
            valid[o] = True
            maps[o] = (maps[o] - maps[o].min()) / (maps[o].max() - maps[o].min())
        else:
            maps[o] = 0
    return maps, valid


@pytest.mark.parametrize("native_size, working_size", [((12, 16), (6, 8)), ((10, 15), (4, 6))])
def test_psm_matches_brute_force_reference(native_size, working_size):
    rng = np.random.default_rng(0)
    n = 25
    x = rng.uniform(-0.5, native_size[1] - 0.5, n)
    y = rng.uniform(-0.5, native_size[0] - 0.5, n)
    observer = rng.integers(0, 3, n)
    observer[observer == 2] = 1  # observer 2 has no fixation
    viewing = rng.integers(0, 3, n)
    expected, expected_valid = brute_force_psm(
        x, y, observer, viewing, 3, native_size, 2.5, working_size
    )
    psm, valid = sm.personal_saliency_maps(
        x,
        y,
        observer,
        viewing=viewing,
        num_observers=3,
        native_size=native_size,
        sigma=2.5,
        working_size=working_size,
    )
    np.testing.assert_array_equal(valid, expected_valid)
    np.testing.assert_array_equal(valid, [True, True, False])
    np.testing.assert_allclose(psm, expected, atol=1e-5)
    assert psm.dtype == np.float32 and psm.shape == (3, *working_size)


def test_psm_close_to_scipy_blur_then_block_mean():
    """Integer fixations: scipy's gaussian_filter at native resolution, then a 5x5 block mean."""
    rng = np.random.default_rng(1)
    native_h, native_w = 600, 800
    x = rng.integers(0, native_w, 12).astype(float)
    y = rng.integers(0, native_h, 12).astype(float)
    impulses = np.zeros((native_h, native_w))
    np.add.at(impulses, (y.astype(int), x.astype(int)), 1.0)
    blurred = scipy.ndimage.gaussian_filter(impulses, 24.0, mode="constant", truncate=6.0)
    reference = blurred.reshape(120, 5, 160, 5).mean(axis=(1, 3))
    reference = (reference - reference.min()) / (reference.max() - reference.min())
    psm, valid = sm.personal_saliency_maps(
        x, y, np.zeros(12, int), num_observers=1, native_size=(native_h, native_w), sigma=24.0
    )
    assert valid[0]
    np.testing.assert_allclose(psm[0], reference, atol=2e-3)


def test_each_viewing_counts_equally_and_duration_weighting():
    # Viewing 0 has 3 fixations at one place, viewing 1 has 1 fixation elsewhere: averaged
    # viewings give both places the same peak.
    x = np.array([10.0, 10.0, 10.0, 40.0])
    y = np.array([20.0, 20.0, 20.0, 20.0])
    psm, _ = sm.personal_saliency_maps(
        x,
        y,
        np.zeros(4, int),
        viewing=np.array([0, 0, 0, 1]),
        num_observers=1,
        native_size=(40, 50),
        sigma=3.0,
        working_size=(40, 50),
    )
    assert psm[0, 20, 10] == pytest.approx(psm[0, 20, 40], abs=1e-4)
    # With durations and a single viewing, the longer fixation gets the peak.
    psm, _ = sm.personal_saliency_maps(
        x[2:],
        y[2:],
        np.zeros(2, int),
        duration_ms=np.array([100.0, 400.0]),
        weight_by_duration=True,
        num_observers=1,
        native_size=(40, 50),
        sigma=3.0,
        working_size=(40, 50),
    )
    assert psm[0, 20, 40] == pytest.approx(1.0) and psm[0, 20, 10] < 0.3


def test_zero_duration_observer_is_invalid_when_weighted():
    psm, valid = sm.personal_saliency_maps(
        np.array([5.0, 6.0]),
        np.array([5.0, 6.0]),
        np.array([0, 1]),
        duration_ms=np.array([200.0, 0.0]),
        weight_by_duration=True,
        num_observers=2,
        native_size=(12, 16),
        sigma=2.0,
        working_size=(6, 8),
    )
    np.testing.assert_array_equal(valid, [True, False])
    assert not psm[1].any()


def test_rescale_coordinates_maps_pixel_centres_and_edges():
    # The centre of the first and last pixel of a 1920-px axis onto 800 px.
    edges = sm.rescale_coordinates(np.array([-0.5, 1919.5]), 1920, 800)
    np.testing.assert_allclose(edges, [-0.5, 799.5])
    np.testing.assert_allclose(sm.rescale_coordinates(np.array([1.0]), 4, 2), [0.25])


def test_area_resize_is_block_mean_and_preserves_constants():
    maps = np.random.default_rng(2).random((3, 120, 160)).astype(np.float32)
    small = sm.area_resize(maps, (15, 20))
    np.testing.assert_allclose(small, maps.reshape(3, 15, 8, 20, 8).mean(axis=(2, 4)), atol=1e-6)
    np.testing.assert_allclose(sm.area_resize(np.ones((7, 11)), (3, 4)), np.ones((3, 4)), atol=1e-6)


def _random_psms(num_observers=5, seed=3):
    psm = np.random.default_rng(seed).random((num_observers, 6, 8)).astype(np.float32)
    return psm


def test_usm_modes():
    psm = _random_psms()
    valid = np.array([True, True, True, False, True])
    train = np.array([True, True, False, True, False])
    usm, ok = sm.universal_saliency_maps(psm, valid, mode="train", train_observers=train)
    expected = psm[[0, 1]].mean(axis=0)  # the plain mean, not renormalised
    for o in range(5):
        np.testing.assert_allclose(usm[o], expected, atol=1e-6)  # test observers' maps excluded
    assert ok.all()
    usm, _ = sm.universal_saliency_maps(psm, valid, mode="all")
    expected = psm[[0, 1, 2, 4]].mean(axis=0)
    np.testing.assert_allclose(usm[3], expected, atol=1e-6)
    usm, _ = sm.universal_saliency_maps(psm, valid, mode="leave_one_out")
    for o in range(5):
        others = [k for k in range(5) if k != o and valid[k]]
        expected = psm[others].mean(axis=0)
        np.testing.assert_allclose(usm[o], expected, atol=1e-5)
    with pytest.raises(ValueError, match="train_observers"):
        sm.universal_saliency_maps(psm, valid, mode="train")
    with pytest.raises(ValueError, match="Unknown USM mode"):
        sm.universal_saliency_maps(psm, valid, mode="mean")


def test_usm_without_contributors_is_invalid():
    psm = _random_psms(3)
    usm, ok = sm.universal_saliency_maps(
        psm, np.array([False, True, True]), mode="train", train_observers=np.array([1, 0, 0], bool)
    )
    assert not ok.any() and not usm.any()


def test_discrepancy_range_and_definition():
    rng = np.random.default_rng(4)
    psm = np.zeros((2, 120, 160), np.float32)
    usm = np.ones((2, 120, 160), np.float32)
    psm[1], usm[1] = 1.0, 0.0
    d = sm.discrepancy_maps(psm, usm)
    assert d.shape == (2, 15, 20)
    np.testing.assert_allclose(d[0], -1.0, atol=1e-6)
    np.testing.assert_allclose(d[1], 1.0, atol=1e-6)
    psm, usm = rng.random((2, 120, 160)), rng.random((2, 120, 160))
    d = sm.discrepancy_maps(psm, usm)
    assert d.min() >= -1 and d.max() <= 1
    np.testing.assert_allclose(d, (psm - usm).reshape(2, 15, 8, 20, 8).mean(axis=(2, 4)), atol=1e-5)


def test_leave_one_out_within_the_training_observers():
    """With the split's training mask, "leave_one_out" averages the other training observers for
    a training observer (issue 37, item 7), and gives a validation or test observer the training
    observers' mean: no test observer's map enters any USM."""
    rng = np.random.default_rng(3)
    psm = rng.uniform(size=(5, 4, 6)).astype(np.float32)
    valid = np.array([True, True, True, False, True])
    train = np.array([True, True, False, True, True])
    usm, ok = sm.universal_saliency_maps(psm, valid, mode="leave_one_out", train_observers=train)
    np.testing.assert_allclose(usm[0], psm[[1, 4]].mean(axis=0), atol=1e-6)
    np.testing.assert_allclose(usm[4], psm[[0, 1]].mean(axis=0), atol=1e-6)
    np.testing.assert_allclose(usm[2], psm[[0, 1, 4]].mean(axis=0), atol=1e-6)  # not training
    assert ok.all()
