"""Evaluation helpers that need no trained model."""

import numpy as np

from psm_jax import evaluate


def test_preference_alignment_tracks_true_preference_distances():
    rng = np.random.default_rng(0)
    preferences = rng.dirichlet(np.ones(5), size=12)
    logits = np.log(preferences)
    logits -= logits.mean(axis=1, keepdims=True)
    # Embeddings that are the (normalised) centred log-preferences plus a little set noise: their
    # cosine distances follow the preference distances closely.
    labels = np.repeat(np.arange(12), 4)
    noisy = logits[labels] + 0.05 * rng.standard_normal((48, 5))
    aligned = evaluate.preference_alignment(noisy + 3.0 * np.eye(5)[0], labels, preferences)
    assert aligned["spearman"] > 0.5 and aligned["p_value"] < 0.01 and aligned["pairs"] == 66
    unrelated = evaluate.preference_alignment(rng.standard_normal((48, 8)), labels, preferences)
    assert abs(unrelated["spearman"]) < 0.3 and unrelated["p_value"] > 0.05


def test_the_usm_floor_keeps_a_fraction_of_the_usm_where_the_discrepancy_erases_it():
    import pytest

    usm = np.linspace(0.0, 0.8, 8 * 8, dtype=np.float32).reshape(1, 8, 8)
    discrepancy = np.full((1, 2, 2), -0.5, np.float32)  # coarse, upsampled 4x
    discrepancy[0, 0, 0] = 0.9  # and one cell pushed above 1
    papers = evaluate.personalised_psm(usm, discrepancy, usm_floor=0.0)
    np.testing.assert_allclose(papers, np.clip(usm + _up(discrepancy), 0, 1))
    floored = evaluate.personalised_psm(usm, discrepancy, usm_floor=0.3)
    erased = usm + _up(discrepancy) < 0.3 * usm
    assert erased.sum() > 10  # the case the floor is for
    np.testing.assert_allclose(floored[erased], 0.3 * usm[erased], rtol=1e-6)
    np.testing.assert_allclose(floored[~erased], papers[~erased], rtol=1e-6)
    assert floored.max() <= 1.0
    # The default is our floor of 0.3; a floor outside [0, 1] is refused.
    np.testing.assert_array_equal(evaluate.personalised_psm(usm, discrepancy), floored)
    with pytest.raises(ValueError, match="usm_floor"):
        evaluate.personalised_psm(usm, discrepancy, usm_floor=1.5)


def _up(discrepancy):
    import jax

    return np.asarray(jax.image.resize(discrepancy, (1, 8, 8), "bilinear"))
