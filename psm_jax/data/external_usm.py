"""USMs precomputed by an external saliency model: one map file per image.

The papers feed USMs from external predictors (DeepGaze IIE, SalNet, LDS, ...) into the
personalised networks. Run such a model yourself and save one map per image into a folder, named
after the image's file name in the release with another extension:

    usm_dir/
      1001.npy     a 2-D float array (any size, any range), or
      1001.png     an 8- or 16-bit grayscale image (a colour image is converted to luminance)

for the image `1001.jpg`. `.npy`, `.png`, `.jpg`/`.jpeg`, `.tif`/`.tiff` are read, in that order of
preference. Each map is resized to the working resolution (area resampling when shrinking,
bilinear when enlarging) and min-max normalised to [0, 1], the convention of every saliency map in
psm-jax. A missing or unreadable file stops with an error naming it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

EXTENSIONS = (".npy", ".png", ".jpg", ".jpeg", ".tif", ".tiff")


class ExternalUsms:
    """Reads the USM of an image from a folder of precomputed maps (see the module docstring)."""

    def __init__(self, folder: str | Path, size: tuple[int, int]):
        self.folder = Path(folder)
        self.size = tuple(size)
        if not self.folder.is_dir():
            raise FileNotFoundError(f"External USM folder {self.folder} does not exist.")
        self._cache: dict[str, np.ndarray] = {}  # image_id -> map (77 KB each at 120x160)

    def path(self, image_id: str) -> Path:
        stem = Path(image_id).stem
        for extension in EXTENSIONS:
            candidate = self.folder / f"{stem}{extension}"
            if candidate.exists():
                return candidate
        raise FileNotFoundError(
            f"No USM for image {image_id!r} in {self.folder}: expected {stem}"
            f"{{{','.join(EXTENSIONS)}}}."
        )

    def __call__(self, image_id: str) -> np.ndarray:
        """The (H, W) float32 USM in [0, 1] of `image_id` (all zeros if the map is constant)."""
        if image_id not in self._cache:
            self._cache[image_id] = self._read(image_id)
        return self._cache[image_id]

    def _read(self, image_id: str) -> np.ndarray:
        path = self.path(image_id)
        try:
            if path.suffix == ".npy":
                values = np.load(path)
            else:
                with Image.open(path) as image:
                    values = np.asarray(image.convert("F") if image.mode != "F" else image)
        except Exception as error:  # noqa: BLE001 - any reader failure names the file
            raise ValueError(f"Cannot read the USM file {path}: {error}") from error
        values = np.asarray(values, np.float32)
        if values.ndim != 2 or not np.all(np.isfinite(values)):
            raise ValueError(
                f"USM file {path} must hold a finite 2-D map, got shape {values.shape}."
            )
        return normalised_resize(values, self.size)


def normalised_resize(values: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(h, w) map -> (H, W) float32 min-max normalised to [0, 1]; area-shrunk / bilinear-grown."""
    height, width = size
    if values.shape != (height, width):
        shrinking = values.shape[0] >= height and values.shape[1] >= width
        method = Image.Resampling.BOX if shrinking else Image.Resampling.BILINEAR
        values = np.asarray(Image.fromarray(values, mode="F").resize((width, height), method))
    low, high = float(values.min()), float(values.max())
    if high <= low:
        return np.zeros((height, width), np.float32)
    return ((values - low) / (high - low)).astype(np.float32)
