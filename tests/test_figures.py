"""Figures: the NumPy t-SNE keeps clusters apart; the plots are written."""

import numpy as np

from psm_jax import figures


def test_tsne_keeps_well_separated_clusters_apart():
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(4), 12)
    vectors = 3 * rng.normal(size=(4, 16))[labels] + rng.normal(size=(48, 16))
    points = figures.tsne(vectors)
    assert points.shape == (48, 2) and np.all(np.isfinite(points))
    distances = np.sum((points[:, None] - points[None]) ** 2, axis=-1)
    np.fill_diagonal(distances, np.inf)
    assert np.mean(labels[distances.argmin(axis=1)] == labels) == 1.0


def test_plots_are_written(tmp_path):
    rng = np.random.default_rng(1)
    figures.embedding_plot(rng.normal(size=(20, 8)), np.repeat([0, 1], 10), tmp_path / "t.png", "t")
    images = rng.integers(0, 256, (2, 12, 16, 3), dtype=np.uint8)
    maps = rng.random((2, 12, 16))
    figures.example_grid(
        images,
        maps,
        rng.random((2, 2, 12, 16)),
        rng.random((2, 2, 12, 16)),
        ["a", "b"],
        tmp_path / "g.png",
    )
    assert (tmp_path / "t.png").stat().st_size > 1000 and (tmp_path / "g.png").stat().st_size > 1000
