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
