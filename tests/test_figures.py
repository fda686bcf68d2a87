"""Figures: the NumPy t-SNE keeps clusters apart; the plots are written, their rows named and
their maps drawn in one perceptually ordered colour map."""

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


def _drawn(monkeypatch, draw) -> list:
    """The figures `draw` saves, kept open for inspection."""
    import matplotlib.figure

    saved = []
    monkeypatch.setattr(
        matplotlib.figure.Figure, "savefig", lambda self, *a, **k: saved.append(self)
    )
    draw()
    return saved


def test_the_example_grid_names_each_rows_image_and_draws_maps_in_the_colour_map(
    tmp_path, monkeypatch
):
    rng = np.random.default_rng(2)
    names = ["img_0003", "img_0017"]
    [figure] = _drawn(
        monkeypatch,
        lambda: figures.example_grid(
            rng.integers(0, 256, (2, 12, 16, 3), dtype=np.uint8),
            rng.random((2, 12, 16)),
            rng.random((2, 2, 12, 16)),
            rng.random((2, 2, 12, 16)),
            ["sub_01", "sub_07"],
            tmp_path / "g.png",
            image_names=names,
        ),
    )
    axes = [axis for axis in figure.axes if axis.images]
    labels = [axis.get_ylabel() for axis in axes if axis.get_ylabel()]
    assert labels == names
    assert "PSM sub_07\npredicted" in [axis.get_title() for axis in axes]
    maps = [image for axis in axes for image in axis.images if image.get_array().ndim == 2]
    assert len(maps) == 2 * 5 and {m.get_cmap().name for m in maps} == {figures.COLOUR_MAP}


def test_the_overlay_draws_the_map_in_the_colour_map(tmp_path, monkeypatch):
    """A map of 1 everywhere on a black image: every pixel is the colour map's top colour at the
    overlay's opacity there (0.3 + 0.6)."""
    import matplotlib

    [figure] = _drawn(
        monkeypatch,
        lambda: figures.save_overlay(
            np.zeros((30, 40, 3), np.uint8), np.ones((15, 20)), tmp_path / "o.png"
        ),
    )
    [image] = figure.axes[0].images
    top = np.array(matplotlib.colormaps[figures.COLOUR_MAP](1.0)[:3])
    drawn = image.get_array().reshape(-1, 3).astype(float)
    assert np.abs(drawn - 0.9 * top * 255).max() <= 1


def test_the_colour_map_grows_lighter_from_low_to_high_saliency():
    """Perceptually ordered: CIE lightness rises steadily along the map, so a brighter colour
    always means more saliency (jet's lightness rises and falls: its cyan and yellow bands look
    like edges)."""
    import matplotlib

    def lightness(name):
        rgb = matplotlib.colormaps[name](np.linspace(0, 1, 256))[:, :3]
        linear = np.where(rgb <= 0.04045, rgb / 12.92, ((rgb + 0.055) / 1.055) ** 2.4)
        y = linear @ np.array([0.2126, 0.7152, 0.0722])
        return np.where(y > 216 / 24389, 116 * np.cbrt(y) - 16, y * 24389 / 27)

    assert np.all(np.diff(lightness(figures.COLOUR_MAP)) > 0)
    assert not np.all(np.diff(lightness("jet")) > 0)
