"""Losses: deep-supervised MSE by hand, triplet mining against a brute-force reference."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from psm_jax import losses


def test_deep_supervised_mse_by_hand():
    target = jnp.zeros((2, 2, 2))
    outputs = [jnp.ones((2, 2, 2)), jnp.full((2, 2, 2), 2.0), jnp.zeros((2, 2, 2))]
    # Per example: mean errors 1 + 4 + 0 = 5.
    assert float(losses.deep_supervised_mse(outputs, target)) == pytest.approx(5.0)
    # Caffe's EuclideanLoss: half the sum over the 4 pixels: 0.5 * (4 + 16 + 0) = 10.
    assert float(
        losses.deep_supervised_mse(outputs, target, reduction="caffe_euclidean")
    ) == pytest.approx(10.0)
    with pytest.raises(ValueError, match="reduction"):
        losses.deep_supervised_mse(outputs, target, reduction="sum")


def test_deep_supervised_mse_masks_invalid_examples():
    target = jnp.zeros((3, 2, 2))
    output = jnp.stack([jnp.ones((2, 2)), jnp.full((2, 2), 100.0), jnp.full((2, 2), 3.0)])
    valid = jnp.array([True, False, True])
    assert float(losses.deep_supervised_mse([output], target, valid)) == pytest.approx((1 + 9) / 2)
    assert float(losses.deep_supervised_mse([output], target, jnp.zeros(3, bool))) == 0.0


def test_deep_supervised_mse_resizes_the_target_to_each_output():
    target = jnp.tile(jnp.arange(4.0)[None, None, :], (1, 4, 1))  # (1, 4, 4), columns 0..3
    coarse = losses.resize_target(target, (2, 2))
    np.testing.assert_allclose(coarse[0], [[0.5, 2.5], [0.5, 2.5]], atol=1e-6)
    exact = [jnp.asarray(coarse), target]
    assert float(losses.deep_supervised_mse(exact, target)) == pytest.approx(0.0, abs=1e-10)


def _brute_force_triplet(embeddings, labels, margin, mining, valid):
    e = np.asarray(embeddings, np.float64)
    unit = e / np.linalg.norm(e, axis=1, keepdims=True)
    s = unit @ unit.T
    batch = len(labels)
    total, count = 0.0, 0
    for a, p in itertools.product(range(batch), repeat=2):
        if a == p or labels[a] != labels[p] or not (valid[a] and valid[p]):
            continue
        negatives = [n for n in range(batch) if labels[n] != labels[a] and valid[n]]
        if not negatives:
            continue
        hardest = max(s[a, n] for n in negatives)
        chosen = hardest
        if mining == "semi_hard":
            semi = [s[a, n] for n in negatives if s[a, p] - margin < s[a, n] < s[a, p]]
            if semi:
                chosen = max(semi)
        total += max(chosen - s[a, p] + margin, 0.0)
        count += 1
    return total / max(count, 1)


@pytest.mark.slow
def test_composed_kld_pushes_up_a_clipped_pixel_the_observer_looked_at():
    usm = np.full((1, 8, 8), 0.5, np.float32)
    psm = np.full((1, 8, 8), 0.5, np.float32)
    discrepancy = np.full((1, 2, 2), -0.9, np.float32)  # clips the whole composed map to 0
    discrepancy[0, 0, 0] = 0.0
    grad = jax.grad(lambda d: losses.composed_kld(d, usm, psm))(jnp.asarray(discrepancy))
    # Raising a clipped region lowers the loss: a hard clip alone would give no gradient there.
    assert grad[0, 1, 1] < 0 and np.isfinite(np.asarray(grad)).all()


@pytest.mark.parametrize("mining", ["semi_hard", "hard"])
@pytest.mark.parametrize("seed", range(6))
def test_triplet_mining_equals_brute_force(mining, seed):
    rng = np.random.default_rng(seed)
    batch = 10
    labels = rng.integers(0, 3, batch)
    embeddings = rng.normal(size=(batch, 4)).astype(np.float32)
    # Pull same-label embeddings together a little so that semi-hard negatives exist.
    embeddings += 1.5 * rng.normal(size=(3, 4)).astype(np.float32)[labels]
    valid = rng.random(batch) > 0.15
    margin = 0.3  # wide, so that random embeddings give semi-hard cases
    expected = _brute_force_triplet(embeddings, labels, margin, mining, valid)
    result = losses.triplet_loss(
        jnp.asarray(embeddings), jnp.asarray(labels), margin, mining, jnp.asarray(valid)
    )
    assert float(result) == pytest.approx(expected, rel=1e-4, abs=1e-6)


@pytest.mark.slow
def test_semi_hard_prefers_a_semi_hard_negative_to_the_hardest():
    # Anchor 0 and positive 1 have similarity cos(0.3); negative 2 is semi-hard (a little farther),
    # negative 3 is the hardest (more similar to the anchor than the positive).
    angle = np.array([0.0, 0.3, 0.32, 0.1, 2.0])
    embeddings = jnp.asarray(np.stack([np.cos(angle), np.sin(angle)], axis=1))
    labels = jnp.array([0, 0, 1, 1, 2])
    _, pair_mask, negative = losses.mined_triplet_losses(embeddings, labels, 0.05, "semi_hard")
    assert bool(pair_mask[0, 1]) and int(negative[0, 1]) == 2
    _, _, hard = losses.mined_triplet_losses(embeddings, labels, 0.05, "hard")
    assert int(hard[0, 1]) == 3


@pytest.mark.slow
def test_triplet_loss_without_pairs_is_zero_and_is_differentiable():
    embeddings = jax.random.normal(jax.random.key(0), (4, 3))
    assert float(losses.triplet_loss(embeddings, jnp.arange(4))) == 0.0
    labels = jnp.array([0, 0, 1, 1])
    gradient = jax.grad(lambda e: losses.triplet_loss(e, labels, margin=2.0))(embeddings)
    assert np.all(np.isfinite(gradient)) and float(jnp.abs(gradient).max()) > 0
    with pytest.raises(ValueError, match="mining"):
        losses.triplet_loss(embeddings, labels, mining="easy")


@pytest.mark.slow
def test_triplet_diagnostics_say_when_embeddings_collapse():
    import jax.numpy as jnp

    labels = jnp.array([0, 0, 1, 1])
    collapsed = jnp.ones((4, 3))
    loss, d = losses.triplet_diagnostics(collapsed, labels, margin=0.05)
    assert float(loss) == pytest.approx(0.05)  # every triplet at the margin
    assert float(d["positive_pairs"]) == 4 and float(d["active_triplets"]) == 1.0
    assert float(d["positive_cosine"]) == pytest.approx(1.0)
    assert float(d["negative_cosine"]) == pytest.approx(1.0)
    separated = jnp.array([[1.0, 0, 0], [1.0, 0.01, 0], [0, 1.0, 0], [0, 1.0, 0.01]])
    loss, d = losses.triplet_diagnostics(separated, labels, margin=0.05)
    assert float(loss) == 0 and float(d["active_triplets"]) == 0
    assert float(d["negative_cosine"]) == pytest.approx(0.0, abs=0.02)
    assert float(loss) == float(losses.triplet_loss(separated, labels, margin=0.05))


def _brute_force_supervised_contrastive(embeddings, labels, temperature, valid):
    unit = embeddings / np.linalg.norm(embeddings, axis=1, keepdims=True)
    similarity = unit @ unit.T / temperature
    per_anchor = []
    for a in range(len(labels)):
        if not valid[a]:
            continue
        others = [j for j in range(len(labels)) if j != a and valid[j]]
        positives = [p for p in others if labels[p] == labels[a]]
        if not positives:
            continue
        log_normaliser = np.log(np.sum(np.exp(similarity[a, others])))
        per_anchor.append(-np.mean([similarity[a, p] - log_normaliser for p in positives]))
    return np.mean(per_anchor) if per_anchor else 0.0


@pytest.mark.parametrize("seed", range(4))
def test_supervised_contrastive_equals_brute_force(seed):
    rng = np.random.default_rng(seed)
    embeddings = rng.standard_normal((10, 5)).astype(np.float32)
    labels = rng.integers(0, 4, 10)
    valid = rng.random(10) < 0.8
    expected = _brute_force_supervised_contrastive(embeddings, labels, 0.1, valid)
    result = losses.supervised_contrastive_loss(
        jnp.asarray(embeddings), jnp.asarray(labels), 0.1, jnp.asarray(valid)
    )
    np.testing.assert_allclose(float(result), expected, rtol=1e-5, atol=1e-5)


def test_supervised_contrastive_pushes_collapsed_embeddings_apart():
    """Where the triplet loss sits at its margin with a vanishing push (all embeddings alike),
    the contrastive loss is high and its gradient separates the people."""
    labels = jnp.array([0, 0, 1, 1])
    nearly_collapsed = jnp.ones((4, 3)) + 1e-3 * jax.random.normal(jax.random.key(1), (4, 3))
    loss = losses.supervised_contrastive_loss(nearly_collapsed, labels, 0.1)
    assert float(loss) == pytest.approx(np.log(3.0), abs=0.05)
    moved = nearly_collapsed - 0.5 * jax.grad(
        lambda e: losses.supervised_contrastive_loss(e, labels, 0.1)
    )(nearly_collapsed)
    assert float(losses.supervised_contrastive_loss(moved, labels, 0.1)) < float(loss)
    separated = jnp.array([[1.0, 0, 0], [1.0, 0.01, 0], [0, 1.0, 0], [0, 1.0, 0.01]])
    assert float(losses.supervised_contrastive_loss(separated, labels, 0.1)) < 0.01
    assert float(losses.supervised_contrastive_loss(separated, jnp.arange(4), 0.1)) == 0.0
