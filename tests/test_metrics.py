"""Metrics: hand-computed values, analytic cases, invariances, masks, and agreement of the batched
JAX metrics with the per-map NumPy reference (`psm_jax.metrics_reference`)."""

import jax.numpy as jnp
import numpy as np
import pytest

from psm_jax import metrics
from psm_jax import metrics_reference as reference

H, W = 12, 16


def _random_batch(seed: int, batch: int = 12, max_fixations: int = 10, ties: bool = False):
    """Random maps (some with ties, negative values, or constant) and padded random fixations."""
    rng = np.random.default_rng(seed)
    prediction = rng.random((batch, H, W)).astype(np.float32)
    ground_truth = rng.random((batch, H, W)).astype(np.float32) ** 3
    if ties:
        prediction = np.round(prediction * 4) / 4  # five distinct values: many ties
    prediction[0] -= 0.5  # negative values
    prediction[1] = 0.3  # constant prediction
    ground_truth[2] = 0.0  # all-zero ground truth
    rows = rng.integers(0, H, (batch, max_fixations))
    cols = rng.integers(0, W, (batch, max_fixations))
    counts = rng.integers(1, max_fixations + 1, batch)
    counts[3] = max_fixations
    mask = np.arange(max_fixations)[None, :] < counts[:, None]
    rows[4, 1] = rows[4, 0]  # two fixations on one pixel
    cols[4, 1] = cols[4, 0]
    mask[4, :2] = True
    return prediction, ground_truth, rows, cols, mask


def _per_map(function, *arrays, mask):
    return np.array([function(*[a[b] for a in arrays], mask=mask[b]) for b in range(len(mask))])


# ----------------------------------------------------------------------------- hand-computed


def test_hand_computed_values_on_a_2x2_map():
    ramp = np.array([[[1.0, 2.0], [3.0, 4.0]]], np.float32)
    rows, cols, mask = np.array([[1]]), np.array([[0]]), np.array([[True]])  # the value 3
    # Rescaled [0, 1/3, 2/3, 1]; threshold 2/3: TPR 1, FPR 1/3 (1 of the 3 other pixels).
    # Curve (0,0) -> (1/3, 1) -> (1, 1): area 1/6 + 2/3.
    assert float(metrics.auc_judd(ramp, rows, cols, mask)[0]) == pytest.approx(5 / 6)
    # (3 - 2.5) / sqrt(1.25)
    assert float(metrics.nss(ramp, rows, cols, mask)[0]) == pytest.approx(0.5 / np.sqrt(1.25))
    # Two pixels below 3, one equal: (2 + 0.5) / 4.
    assert float(metrics.auc_borji(ramp, rows, cols, mask)[0]) == pytest.approx(0.625)
    assert float(metrics.cc(ramp, ramp[:, ::-1, ::-1])[0]) == pytest.approx(-1.0)
    half = np.array([[[1.0, 1.0], [0.0, 0.0]]], np.float32)
    corner = np.array([[[1.0, 0.0], [0.0, 0.0]]], np.float32)
    assert float(metrics.sim(half, corner)[0]) == pytest.approx(0.5)
    assert float(metrics.sim(corner, corner[:, ::-1])[0]) == pytest.approx(0.0)
    # KL(corner || half) = 1 * log(eps + 1 / (0.5 + eps)) = log 2.
    assert float(metrics.kld(half, corner)[0]) == pytest.approx(np.log(2), rel=1e-6)


def test_auc_judd_collapses_ties_independently_of_order():
    # Rescaled [1, 1, 1, 0], fixation on a 1: threshold 1 gives TPR 1 and FPR 2/3 (two of the three
    # non-fixated pixels tie with it); area 2/3 * 1/2 + 1/3 = 2/3, whichever tied pixel is fixated.
    tied = np.array([[[1.0, 1.0], [1.0, 0.0]]], np.float32)
    for r, c in [(0, 0), (0, 1), (1, 0)]:
        score = metrics.auc_judd(tied, np.array([[r]]), np.array([[c]]), np.array([[True]]))
        assert float(score[0]) == pytest.approx(2 / 3)


# ----------------------------------------------------------------------------- analytic cases


def test_a_map_equal_to_the_ground_truth_is_perfect():
    _, ground_truth, *_ = _random_batch(0)
    ground_truth = ground_truth[3:]  # skip the all-zero one (CC is 0 there by definition)
    np.testing.assert_allclose(metrics.cc(ground_truth, ground_truth), 1.0, atol=1e-5)
    np.testing.assert_allclose(metrics.sim(ground_truth, ground_truth), 1.0, atol=1e-5)
    np.testing.assert_allclose(metrics.kld(ground_truth, ground_truth), 0.0, atol=1e-5)


def test_auc_judd_of_peaked_reversed_and_constant_maps():
    rng = np.random.default_rng(1)
    batch, count = 4, 40
    # Distinct fixated pixels, each with its own peak height.
    pixels = np.stack([rng.choice(H * W, count, replace=False) for _ in range(batch)])
    rows, cols = pixels // W, pixels % W
    mask = np.ones((batch, count), bool)
    peaked = np.zeros((batch, H, W), np.float32)
    for b in range(batch):
        peaked[b, rows[b], cols[b]] = np.linspace(1.0, 0.5, count)
    assert np.all(np.asarray(metrics.auc_judd(peaked, rows, cols, mask)) > 0.99)
    # Reversed: every non-fixated pixel is above every fixation; the Judd curve climbs to
    # (1, 1/N) at once, so the area is 1 / (2N).
    reversed_scores = np.asarray(metrics.auc_judd(1 - peaked, rows, cols, mask))
    np.testing.assert_allclose(reversed_scores, 1 / (2 * count), atol=1e-6)
    # With all fixated pixels tied at the minimum, the curve has no threshold between them and
    # the rest: one point (1, 1), area 0.5 (the documented cost of collapsing ties).
    binary = (peaked > 0).astype(np.float32)
    np.testing.assert_allclose(metrics.auc_judd(1 - binary, rows, cols, mask), 0.5)
    constant = np.full((batch, H, W), 0.7, np.float32)
    np.testing.assert_array_equal(metrics.auc_judd(constant, rows, cols, mask), 0.5)
    np.testing.assert_array_equal(metrics.auc_borji(constant, rows, cols, mask), 0.5)
    np.testing.assert_array_equal(metrics.cc(constant, peaked), 0.0)
    np.testing.assert_array_equal(metrics.nss(constant, rows, cols, mask), 0.0)


def test_no_fixation_gives_nan_not_a_score():
    prediction, _, rows, cols, mask = _random_batch(2)
    mask[5] = False
    for function in (metrics.nss, metrics.auc_judd, metrics.auc_borji):
        scores = np.asarray(function(prediction, rows, cols, mask))
        assert np.isnan(scores[5]) and np.all(np.isfinite(np.delete(scores, 5)))


# ----------------------------------------------------------------------------- invariances, masks


def test_cc_and_nss_unchanged_by_positive_affine_rescaling():
    prediction, ground_truth, rows, cols, mask = _random_batch(3)
    rescaled = 3.5 * prediction + 2.0
    np.testing.assert_allclose(
        metrics.cc(rescaled, ground_truth), metrics.cc(prediction, ground_truth), atol=1e-5
    )
    np.testing.assert_allclose(
        metrics.nss(rescaled, rows, cols, mask),
        metrics.nss(prediction, rows, cols, mask),
        atol=1e-4,
    )
    # AUC-Judd rescales to [0, 1] first, so it too is unchanged.
    np.testing.assert_allclose(
        metrics.auc_judd(rescaled, rows, cols, mask),
        metrics.auc_judd(prediction, rows, cols, mask),
        atol=1e-6,
    )


@pytest.mark.slow
def test_padding_fixations_change_nothing():
    prediction, _, rows, cols, mask = _random_batch(4, max_fixations=6)
    rng = np.random.default_rng(5)
    pad = 7
    padded_rows = np.concatenate([rows, rng.integers(0, H, (len(rows), pad))], axis=1)
    padded_cols = np.concatenate([cols, rng.integers(0, W, (len(cols), pad))], axis=1)
    padded_mask = np.concatenate([mask, np.zeros((len(mask), pad), bool)], axis=1)
    for function in (metrics.nss, metrics.auc_judd, metrics.auc_borji):
        np.testing.assert_allclose(
            function(prediction, padded_rows, padded_cols, padded_mask),
            function(prediction, rows, cols, mask),
            atol=1e-6,
            err_msg=function.__name__,
        )
    # Garbage in masked-out slots must not matter either.
    garbage_rows = np.where(mask, rows, 0)
    np.testing.assert_allclose(
        metrics.auc_judd(prediction, garbage_rows, cols, mask),
        metrics.auc_judd(prediction, rows, cols, mask),
    )


# ----------------------------------------------------------------------------- vs. the reference


@pytest.mark.parametrize("ties", [False, True])
def test_jax_metrics_agree_with_the_numpy_reference(ties):
    prediction, ground_truth, rows, cols, mask = _random_batch(6, batch=16, ties=ties)

    def fixation_metric(function):
        return lambda p, r, c, mask: function(p, r[mask], c[mask])

    for name in ("cc", "sim", "kld"):
        expected = [
            getattr(reference, name)(p, g) for p, g in zip(prediction, ground_truth, strict=True)
        ]
        np.testing.assert_allclose(
            getattr(metrics, name)(prediction, ground_truth), expected, atol=2e-5, err_msg=name
        )
    for name in ("nss", "auc_judd", "auc_borji"):
        expected = _per_map(
            fixation_metric(getattr(reference, name)), prediction, rows, cols, mask=mask
        )
        np.testing.assert_allclose(
            getattr(metrics, name)(prediction, rows, cols, mask), expected, atol=2e-5, err_msg=name
        )


@pytest.mark.parametrize("fixations", [7, 8, 16])
def test_auc_judd_with_every_slot_a_fixation_agrees_with_the_reference(fixations):
    # A power-of-two number of slots, all valid, once gave AUC-Judd in the thousands on OSIE: the
    # threshold array had no +inf pad, so pixels above every fixation fell out of the counts.
    prediction, _, rows, cols, _ = _random_batch(9, batch=6, max_fixations=fixations)
    mask = np.ones(rows.shape, bool)
    expected = _per_map(
        lambda p, r, c, mask: reference.auc_judd(p, r[mask], c[mask]),
        prediction,
        rows,
        cols,
        mask=mask,
    )
    np.testing.assert_allclose(metrics.auc_judd(prediction, rows, cols, mask), expected, atol=2e-5)


def test_shuffled_auc_agrees_with_the_reference_and_uses_other_images():
    prediction, _, rows, cols, mask = _random_batch(7, ties=True)
    batch = len(prediction)
    image_index = np.arange(batch) // 2  # pairs of examples share an image
    pool_rows, pool_cols = rows[mask], cols[mask]
    pool_image = np.repeat(image_index, mask.sum(axis=1))
    import jax

    negative_rows, negative_cols, negative_mask = metrics.shuffled_negatives(
        jax.random.key(0), image_index, pool_rows, pool_cols, pool_image, num=20
    )
    assert np.all(negative_mask)
    # Every drawn negative is a pooled fixation of another image.
    for b in range(batch):
        allowed = {
            (r, c)
            for r, c, i in zip(pool_rows, pool_cols, pool_image, strict=True)
            if i != image_index[b]
        }
        assert (
            set(zip(np.asarray(negative_rows[b]), np.asarray(negative_cols[b]), strict=True))
            <= allowed
        )
    scores = metrics.shuffled_auc(
        prediction, rows, cols, mask, negative_rows, negative_cols, negative_mask
    )
    expected = [
        reference.shuffled_auc(
            prediction[b],
            rows[b][mask[b]],
            cols[b][mask[b]],
            np.asarray(negative_rows[b]),
            np.asarray(negative_cols[b]),
        )
        for b in range(batch)
    ]
    np.testing.assert_allclose(scores, expected, atol=1e-6)


# ----------------------------------------------------------------------------- evaluation grid


def test_fixations_map_onto_the_grid_by_pixel_centres():
    x = np.array([[0.0, 799.0, 402.0, -3.0]])
    y = np.array([[0.0, 599.0, 302.0, 650.0]])
    rows, cols = metrics.fixations_to_grid(x, y, np.array([600, 800]), (120, 160))
    # x: (x + 0.5) * 0.2 - 0.5 -> -0.4, 159.4, 80.0, -1.0 (clipped); y likewise, 650 clipped.
    np.testing.assert_array_equal(cols, [[0, 159, 80, 0]])
    np.testing.assert_array_equal(rows, [[0, 119, 60, 119]])


@pytest.mark.slow
def test_saliency_metrics_resize_and_agree_with_the_single_metrics():
    rng = np.random.default_rng(8)
    prediction = rng.random((5, 15, 20)).astype(np.float32)  # the networks' output size
    ground_truth = rng.random((5, 120, 160)).astype(np.float32)
    x = rng.uniform(0, 800, (5, 9))
    y = rng.uniform(0, 600, (5, 9))
    mask = rng.random((5, 9)) < 0.7
    mask[:, 0] = True
    scores = metrics.saliency_metrics(prediction, ground_truth, x, y, mask, np.array([600, 800]))
    assert set(scores) == set(metrics.MAP_METRICS)
    resized = metrics.resize_to_grid(prediction, (120, 160))
    assert resized.shape == (5, 120, 160)
    rows, cols = metrics.fixations_to_grid(x, y, np.array([600, 800]), (120, 160))
    np.testing.assert_allclose(scores["cc"], metrics.cc(resized, ground_truth), atol=1e-6)
    np.testing.assert_allclose(
        scores["auc_judd"], metrics.auc_judd(resized, rows, cols, mask), atol=1e-6
    )
    # Chunked evaluation (the last chunk overlapping the one before) equals one pass.
    many = rng.random((37, 15, 20)).astype(np.float32)
    truth = rng.random((37, 120, 160)).astype(np.float32)
    args = (rng.uniform(0, 800, (37, 9)), rng.uniform(0, 600, (37, 9)), rng.random((37, 9)) < 0.8)
    size = np.array([600, 800])
    chunked = metrics.saliency_metrics(many, truth, *args, size, chunk_size=16)
    whole = metrics.saliency_metrics(many, truth, *args, size, chunk_size=37)
    for name in metrics.MAP_METRICS:
        np.testing.assert_allclose(chunked[name], whole[name], atol=1e-6, err_msg=name)
    # A constant map stays constant when resized.
    constant = metrics.resize_to_grid(np.full((1, 15, 20), 0.25, np.float32), (120, 160))
    np.testing.assert_allclose(constant, 0.25, atol=1e-6)


# ----------------------------------------------------------------------------- embeddings


def test_precision_at_1_on_hand_made_clusters():
    centres = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    rng = np.random.default_rng(9)
    labels = np.repeat(np.arange(3), 4)
    embeddings = centres[labels] + 0.05 * rng.standard_normal((12, 3))
    np.testing.assert_array_equal(metrics.precision_at_1(embeddings, labels), 1.0)
    # One user's point moved next to another user's cluster (about 17 degrees from it, farther
    # than that cluster's points are from each other): it and nobody else misses.
    moved = embeddings.copy()
    moved[0] = centres[1] + 0.3 * centres[2]
    hits = np.asarray(metrics.precision_at_1(moved, labels))
    assert hits[0] == 0.0 and hits[1:].all()
    # Scale does not matter (cosine similarity), and the result matches the reference loop.
    scaled = embeddings * rng.uniform(0.5, 3.0, (12, 1))
    np.testing.assert_array_equal(metrics.precision_at_1(scaled, labels), 1.0)
    noisy = rng.standard_normal((30, 8))
    noisy_labels = rng.integers(0, 4, 30)
    np.testing.assert_array_equal(
        metrics.precision_at_1(noisy, noisy_labels), reference.precision_at_1(noisy, noisy_labels)
    )


# ----------------------------------------------------------------------------- significance


def test_compare_respects_direction_and_significance():
    rng = np.random.default_rng(10)
    base = rng.random(200)
    better = {"cc": base + 0.2, "kld": base - 0.2}
    worse = {"cc": base, "kld": base}
    result = metrics.compare(better, worse)
    for name in ("cc", "kld"):
        assert result[name]["a_better"] and result[name]["significant"], name
        assert result[name]["wilcoxon_p"] < 1e-10 and result[name]["mann_whitney_p"] < 0.05
    reverse = metrics.compare(worse, better)
    assert not reverse["cc"]["a_better"] and not reverse["cc"]["significant"]
    assert not reverse["kld"]["a_better"]
    same = metrics.compare(worse, worse)
    assert same["cc"]["wilcoxon_p"] == 1.0 and not same["cc"]["significant"]
    # NaN examples (no fixations) are left out and counted.
    with_nan = {"cc": np.where(np.arange(200) < 10, np.nan, base + 0.2)}
    assert metrics.compare(with_nan, {"cc": base})["cc"]["n"] == 190
    assert metrics.mann_whitney_p(base, base + 0.2) == pytest.approx(
        __import__("scipy.stats").stats.mannwhitneyu(base, base + 0.2).pvalue
    )


def test_average_uses_only_valid_examples():
    scores = {"nss": np.array([1.0, np.nan, 3.0])}
    assert np.isnan(metrics.average(scores)["nss"])
    assert metrics.average(scores, valid=np.array([True, False, True]))["nss"] == 2.0


# ----------------------------------------------------------------------------- consistency


def test_inter_observer_consistency_matches_the_pairwise_reference():
    rng = np.random.default_rng(11)
    observers, fixations = 5, 8
    psm = rng.random((observers, H, W)).astype(np.float32)
    psm = np.round(psm * 6) / 6  # ties
    rows = rng.integers(0, H, (observers, fixations))
    cols = rng.integers(0, W, (observers, fixations))
    mask = rng.random((observers, fixations)) < 0.7
    mask[:, 0] = True
    mask[3] = False  # an observer without fixations
    valid = np.ones(observers, bool)
    valid[1] = False  # an observer without a map
    expected = [
        reference.auc_judd(psm[i], rows[j][mask[j]], cols[j][mask[j]])
        for i in range(observers)
        for j in range(observers)
        if i != j and i not in (1, 3) and j not in (1, 3)
    ]
    value = metrics.inter_observer_consistency(psm, rows, cols, mask, valid)
    assert float(value) == pytest.approx(np.mean(expected), abs=1e-5)


def test_information_gain_in_bits_per_fixation_against_a_direct_computation():
    rng = np.random.default_rng(3)
    prediction = rng.random((3, 6, 8)).astype(np.float32)
    baseline = rng.random((3, 6, 8)).astype(np.float32)
    x = rng.uniform(0, 79, (3, 4)).astype(np.float32)  # native 60x80 images
    y = rng.uniform(0, 59, (3, 4)).astype(np.float32)
    mask = np.array([[1, 1, 1, 0], [1, 0, 0, 0], [0, 0, 0, 0]], bool)
    size = np.array([60, 80])
    gain = np.asarray(metrics.information_gain(prediction, baseline, x, y, mask, size, grid=(6, 8)))
    rows, cols = (np.asarray(a) for a in metrics.fixations_to_grid(x, y, size, (6, 8)))

    def density(m):
        return 0.99 * m / m.sum() + 0.01 / m.size

    for b in range(2):
        p, q = density(prediction[b]), density(baseline[b])
        own = mask[b]
        expected = np.mean(np.log2(p[rows[b, own], cols[b, own]] / q[rows[b, own], cols[b, own]]))
        assert gain[b] == pytest.approx(expected, rel=1e-4, abs=1e-5)
    assert np.isnan(gain[2])  # no fixation
    same = metrics.information_gain(baseline, baseline, x, y, mask, size, grid=(6, 8))
    np.testing.assert_allclose(np.asarray(same)[:2], 0.0, atol=1e-6)
    # A map with all its mass on the fixated pixels gains over a uniform one.
    peaked = np.zeros((1, 6, 8), np.float32)
    peaked[0, rows[0, :3], cols[0, :3]] = 1.0
    better = metrics.information_gain(
        peaked, np.ones((1, 6, 8), np.float32), x[:1], y[:1], mask[:1], size, grid=(6, 8)
    )
    assert float(better[0]) > 3.9  # log2(0.99 * 48 / 3 + 0.01) ~ 3.99 bits, or more


def test_kld_and_sim_of_maps_with_negative_values_zeros_and_ties_match_the_reference():
    """Both entry points, `kld` / `sim` alone and inside `saliency_metrics` (where XLA fuses
    differently), on maps with negative values, exact zeros, ties and near-zero values."""
    rng = np.random.default_rng(7)
    maps = rng.normal(size=(12, 12, 16)).astype(np.float32)  # negative values
    maps[1] = np.maximum(maps[1], 0.0)  # exact zeros
    maps[2] = np.round(maps[2])  # ties
    maps[3] = np.abs(maps[3]) * 1e-30  # near zero
    maps[4] = 0.0  # all zero: uniform
    maps[5] -= 10.0  # all negative
    truth = np.abs(rng.normal(size=(12, 12, 16))).astype(np.float32)
    truth[6] = np.where(truth[6] > 1.0, truth[6], 0.0)
    x = rng.uniform(0, 15, (12, 4)).astype(np.float32)
    y = rng.uniform(0, 11, (12, 4)).astype(np.float32)
    mask = np.ones((12, 4), bool)
    together = metrics.saliency_metrics(maps, truth, x, y, mask, np.array([12, 16]), grid=(12, 16))
    alone_kld = np.asarray(metrics.kld(maps, truth))
    alone_sim = np.asarray(metrics.sim(maps, truth))
    for b in range(12):
        expected_kld = reference.kld(maps[b], truth[b])
        expected_sim = reference.sim(maps[b], truth[b])
        assert float(together["kld"][b]) == pytest.approx(expected_kld, rel=1e-4, abs=1e-5), b
        assert alone_kld[b] == pytest.approx(expected_kld, rel=1e-4, abs=1e-5), b
        assert float(together["sim"][b]) == pytest.approx(expected_sim, rel=1e-4, abs=1e-5), b
        assert alone_sim[b] == pytest.approx(expected_sim, rel=1e-4, abs=1e-5), b


@pytest.mark.slow
def test_scores_do_not_depend_on_the_chunk_size_and_new_values_do_not_recompile():
    rng = np.random.default_rng(5)
    prediction = jnp.asarray(rng.random((37, 12, 16), dtype=np.float32))
    truth = jnp.asarray(rng.random((37, 12, 16), dtype=np.float32) ** 3)
    rows = jnp.asarray(rng.integers(0, 12, (37, 6)), jnp.int32)
    cols = jnp.asarray(rng.integers(0, 16, (37, 6)), jnp.int32)
    mask = jnp.asarray(rng.random((37, 6)) < 0.8)
    pairs = {"cc": metrics.cc, "sim": metrics.sim, "kld": metrics.kld}
    fixations = {"nss": metrics.nss, "auc_judd": metrics.auc_judd}
    for name, function in {**pairs, **fixations}.items():
        args = (prediction, truth) if name in pairs else (prediction, rows, cols, mask)
        whole = np.asarray(function(*args, chunk_size=None))
        for chunk_size in (1, 5, 16, 64):
            np.testing.assert_allclose(
                function(*args, chunk_size=chunk_size), whole, rtol=1e-5, atol=1e-5, err_msg=name
            )
        function(*args)  # the default chunk size, compiled once
        compiled = function._cache_size()
        new_values = (prediction[::-1],) + args[1:]
        function(*new_values)
        assert function._cache_size() == compiled, f"{name} compiled again on new values"
