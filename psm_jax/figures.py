"""Figures: example map grids (Xu Fig. 7 / Strohm Fig. 4), a t-SNE of embeddings (Strohm Fig. 6)
and overlays of a map on its image, written as PNG with matplotlib (Agg backend, no display needed).

Every saliency map is drawn in `COLOUR_MAP`, one perceptually uniform scale, so that equal steps in
saliency look like equal steps in colour (jet's bright bands invent edges where the map has none).

`tsne` is a small exact t-SNE (van der Maaten & Hinton 2008) in NumPy: the report embeds a few
hundred vectors at most, and this avoids a scikit-learn dependency.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np

COLOUR_MAP = "inferno"
"""matplotlib's colour map for every saliency map drawn (grids, overlays): perceptually uniform,
dark (low) to bright yellow (high), readable in grey and by colour-blind readers."""


def _conditional_probabilities(distances: np.ndarray, perplexity: float) -> np.ndarray:
    """Row-wise Gaussian affinities whose entropy matches log(perplexity) (binary search)."""
    n = len(distances)
    target = np.log(perplexity)
    probabilities = np.zeros((n, n))
    for i in range(n):
        row = np.delete(distances[i], i)
        low, high, beta = 0.0, np.inf, 1.0
        for _ in range(64):
            weights = np.exp(-(row - row.min()) * beta)
            total = weights.sum()
            p = weights / total
            entropy = -np.sum(p * np.log(np.maximum(p, 1e-300)))
            if abs(entropy - target) < 1e-5:
                break
            if entropy > target:
                low, beta = beta, beta * 2 if high == np.inf else (beta + high) / 2
            else:
                high, beta = beta, (beta + low) / 2
        probabilities[i, np.arange(n) != i] = p
    return probabilities


def tsne(
    vectors: np.ndarray, perplexity: float = 10.0, steps: int = 750, seed: int = 0
) -> np.ndarray:
    """(N, D) -> (N, 2) exact t-SNE: perplexity-calibrated affinities, Student-t similarities,
    gradient descent with momentum and early exaggeration (x4 for the first 100 steps)."""
    vectors = np.asarray(vectors, np.float64)
    n = len(vectors)
    perplexity = min(perplexity, max(1.0, (n - 1) / 3))
    squared = np.sum(vectors**2, axis=1)
    distances = np.maximum(squared[:, None] + squared[None] - 2 * vectors @ vectors.T, 0.0)
    p = _conditional_probabilities(distances, perplexity)
    p = np.maximum((p + p.T) / (2 * n), 1e-12)
    rng = np.random.default_rng(seed)
    points = 1e-4 * rng.normal(size=(n, 2))
    velocity = np.zeros_like(points)
    learning_rate = max(n / 12.0, 50.0)
    for step in range(steps):
        exaggeration = 4.0 if step < 100 else 1.0
        difference = points[:, None] - points[None]
        kernel = 1.0 / (1.0 + np.sum(difference**2, axis=-1))
        np.fill_diagonal(kernel, 0.0)
        q = np.maximum(kernel / kernel.sum(), 1e-12)
        gradient = 4.0 * np.sum(((exaggeration * p - q) * kernel)[..., None] * difference, axis=1)
        momentum = 0.5 if step < 250 else 0.8
        velocity = momentum * velocity - learning_rate * gradient
        points = points + velocity
    return points - points.mean(axis=0)


def embedding_plot(
    embeddings: np.ndarray,
    labels: np.ndarray,
    path: str | Path,
    title: str,
    names: list[str] | None = None,
):
    """A t-SNE scatter of embeddings coloured by observer; `names[label]` in the legend (the
    observer ids as in the dataset), else "observer <label>"."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    points = tsne(embeddings)
    figure, axis = plt.subplots(figsize=(5, 5))
    for label in np.unique(labels):
        own = labels == label
        name = names[label] if names is not None else f"observer {label}"
        axis.scatter(points[own, 0], points[own, 1], s=18, label=name)
    axis.set_title("\n".join(textwrap.wrap(title, 60)), fontsize=9)
    axis.set_xticks([])
    axis.set_yticks([])
    axis.legend(fontsize=6, loc="best")
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def example_grid(
    images: np.ndarray,
    usm: np.ndarray,
    ground_truth: np.ndarray,
    predicted: np.ndarray,
    observer_names: list[str],
    path: str | Path,
    title: str = "",
    image_names: list[str] | None = None,
):
    """Rows = images; columns = image, USM, then ground-truth and predicted PSM per observer, all
    maps on one colour scale (0 to 1; a PSM peaks at 1, a USM, the mean of PSMs, lower;
    `COLOUR_MAP`) with its colour bar.

    Args:
      images: (R, H, W, 3) uint8; usm: (R, H, W); ground_truth, predicted: (R, K, H, W).
      observer_names: K observer ids, as in the dataset, for the column titles.
      title: what the figure shows (above the grid).
      image_names: R image ids, as in the dataset, each written left of its row.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows, observers = ground_truth.shape[:2]
    columns = 2 + 2 * observers
    figure, axes = plt.subplots(
        rows, columns, figsize=(1.6 * columns + 0.8, 1.3 * rows + 0.6), squeeze=False
    )
    shown = None
    for r in range(rows):
        panels = [(images[r], "image"), (usm[r], "USM (GT)")]
        for k in range(observers):
            panels += [
                (ground_truth[r, k], f"PSM {observer_names[k]}\nground truth"),
                (predicted[r, k], f"PSM {observer_names[k]}\npredicted"),
            ]
        for c, (panel, name) in enumerate(panels):
            axis = axes[r, c]
            drawn = axis.imshow(panel, cmap=None if panel.ndim == 3 else COLOUR_MAP, vmin=0, vmax=1)
            if panel.ndim == 2:
                shown = drawn
            axis.set_xticks([])
            axis.set_yticks([])
            if r == 0:
                axis.set_title(name, fontsize=7)
        if image_names is not None:
            axes[r, 0].set_ylabel(image_names[r], fontsize=6)  # the column's title: "image"
    if title:
        figure.suptitle(title, fontsize=8)
    figure.tight_layout(rect=(0, 0, 0.93, 1))
    if shown is not None:
        bar = figure.colorbar(shown, ax=axes.ravel().tolist(), fraction=0.02, pad=0.01)
        bar.set_label("saliency (one scale for every map)", fontsize=7)
        bar.ax.tick_params(labelsize=6)
    figure.savefig(path, dpi=120)
    plt.close(figure)


OVERLAY_MAX_SIDE = 1024
"""The longest side of an overlay's image, in pixels (a larger image is box-shrunk first)."""


def save_overlay(
    image: np.ndarray, saliency: np.ndarray, path: str | Path, title: str = ""
) -> None:
    """A PNG of the image, at most `OVERLAY_MAX_SIDE` px on its long side, with the map overlaid
    (`COLOUR_MAP`, opacity 0.3 + 0.6 x map where the map exceeds 0.05), a colour bar and a title.

    Args:
      image: (H, W, 3) uint8, at any resolution (the input image as the person gave it).
      saliency: (h, w) in [0, 1] at the network's working resolution; resized to the image's size
        bilinearly.
      path: the .png; title: what the map is (whose, which model).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from PIL import Image

    if max(image.shape[:2]) > OVERLAY_MAX_SIDE:
        shrunk = Image.fromarray(np.asarray(image, np.uint8))
        shrunk.thumbnail((OVERLAY_MAX_SIDE, OVERLAY_MAX_SIDE), Image.Resampling.BOX)
        image = np.asarray(shrunk)
    height, width = image.shape[:2]
    resized = np.asarray(
        Image.fromarray(np.asarray(saliency, np.float32)).resize((width, height), Image.BILINEAR)
    ).clip(0, 1)
    colour = matplotlib.colormaps[COLOUR_MAP](resized, bytes=True)[..., :3].astype(np.float32) / 255
    alpha = np.where(resized > 0.05, 0.3 + 0.6 * resized, 0.0).astype(np.float32)[..., None]
    blended = (1 - alpha) * (image.astype(np.float32) / 255) + alpha * colour
    dpi = 100
    figure = plt.figure(figsize=(width / dpi * 1.18, height / dpi + (0.35 if title else 0.1)))
    axis = figure.add_axes((0.0, 0.0, 1 / 1.18, height / dpi / figure.get_figheight()))
    axis.imshow((np.clip(blended, 0, 1) * 255).round().astype(np.uint8), interpolation="nearest")
    axis.set_axis_off()
    if title:
        figure.suptitle(title, fontsize=max(6, min(11, width / 60)), y=0.995, va="top")
    bar_axis = figure.add_axes((1 / 1.18 + 0.02, 0.05, 0.03, 0.8 * axis.get_position().height))
    mappable = plt.cm.ScalarMappable(cmap=COLOUR_MAP, norm=matplotlib.colors.Normalize(0, 1))
    bar = figure.colorbar(mappable, cax=bar_axis)
    bar.set_label("saliency", fontsize=max(6, min(10, width / 70)))
    bar.ax.tick_params(labelsize=max(5, min(9, width / 80)))
    figure.savefig(path, dpi=dpi)
    plt.close(figure)
