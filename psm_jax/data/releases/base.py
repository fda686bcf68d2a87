"""The `Release` every reader returns, and the image helpers the readers share."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import scipy.io
from PIL import Image, UnidentifiedImageError

from psm_jax.data.fixations import FixationTable

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")


@dataclasses.dataclass(frozen=True)
class Release:
    """A raw release parsed into the common form (before maps, splits and records).

    Attributes:
      name: dataset name, for messages.
      image_ids: id of each image (its file name in the release).
      image_sizes: (num_images, 2) native (H, W) that the fixation coordinates refer to.
      observer_ids: id of each observer.
      fixations: every fixation, native 0-based pixel-centre coordinates, not yet cleaned.
      sigma: (num_images, 2) Gaussian (sigma_y, sigma_x) in native pixels of each image.
      read_image: returns the encoded bytes (JPEG or PNG) of image i.
      image_source: where image i comes from (its path), for error messages.
      metadata: anything dataset-specific to store in the dataset metadata (JSON-serialisable).
      quality: what the reader itself dropped (e.g. duplicate rows), counts added to the
        builder's data-quality counts.
    """

    name: str
    image_ids: tuple[str, ...]
    image_sizes: np.ndarray
    observer_ids: tuple[str, ...]
    fixations: FixationTable
    sigma: np.ndarray
    read_image: Callable[[int], bytes]
    image_source: Callable[[int], str]
    metadata: dict = dataclasses.field(default_factory=dict)
    quality: dict = dataclasses.field(default_factory=dict)

    @property
    def num_images(self) -> int:
        return len(self.image_ids)

    @property
    def num_observers(self) -> int:
        return len(self.observer_ids)


def image_size(path: str | os.PathLike) -> tuple[int, int]:
    """(H, W) of an image file, read from its header; an unreadable file raises naming it."""
    try:
        with Image.open(path) as image:
            width, height = image.size
    except (OSError, UnidentifiedImageError) as error:
        raise ValueError(f"Corrupt or unreadable image {path}: {error}") from error
    return height, width


SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")
"""Pillow's modes of a 16-bit greyscale image (a 16-bit greyscale PNG opens as 'I;16', or as 'I'
in older Pillow), whose RGB conversion would clip every value above 255."""


def to_rgb(image: Image.Image) -> Image.Image:
    """The image as 8-bit RGB by its real range: what every image psm-jax reads goes through.

    16-bit greyscale is scaled by its bit depth (value / 257, so an 8-bit picture saved as 16-bit
    comes back within a grey level), where Pillow's own conversion clips it nearly white; 16-bit
    RGB PNGs Pillow already reads as 8-bit RGB. Transparent pixels (an alpha channel, or a palette
    or tRNS transparency) are composited onto white, the page they would be shown on, instead of
    showing whatever colour lies under them. Everything else is Pillow's RGB conversion.
    """
    if image.mode in SIXTEEN_BIT_MODES:
        values = np.asarray(image, np.float64) / 257.0
        image = Image.fromarray(np.clip(np.round(values), 0, 255).astype(np.uint8), "L")
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info:
        page = Image.new("RGBA", image.size, (255, 255, 255, 255))
        return Image.alpha_composite(page, image.convert("RGBA")).convert("RGB")
    return image.convert("RGB")


def as_rgb_jpeg(encoded: bytes, source: str) -> tuple[bytes, tuple[int, int]]:
    """Fully decodes an image (so a corrupt file fails here, named) and returns RGB JPEG bytes.

    An RGB JPEG is returned unchanged; any other format or mode (grayscale, CMYK, PNG, 16-bit) is
    converted to RGB (`to_rgb`) and re-encoded at quality 95, so every record holds a 3-channel
    JPEG.

    Returns:
      (JPEG bytes, (H, W)).
    """
    try:
        with Image.open(io.BytesIO(encoded)) as image:
            image.load()
            size = (image.height, image.width)
            if image.format == "JPEG" and image.mode == "RGB":
                return encoded, size
            buffer = io.BytesIO()
            to_rgb(image).save(buffer, format="JPEG", quality=95)
            return buffer.getvalue(), size
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError) as error:
        raise ValueError(f"Corrupt or unreadable image {source}: {error}") from error


def load_mat_variable(path: Path, variable: str, what: str) -> np.ndarray:
    """`variable` of the MATLAB file `path` (structs as attribute objects, squeezed), at least 1-D.

    Raises:
      ValueError naming the file and `what` it should be (e.g. "an OSIE fixations.mat") for any
      file scipy cannot read as one: empty or truncated (scipy's MatReadError), not a MAT file,
      MATLAB v7.3 (HDF5), or without `variable`.
    """
    try:
        return np.atleast_1d(
            scipy.io.loadmat(path, squeeze_me=True, struct_as_record=False)[variable]
        )
    except (
        KeyError,
        ValueError,
        OSError,
        NotImplementedError,
        scipy.io.matlab.MatReadError,
    ) as error:
        raise ValueError(
            f"Cannot read {path} as {what} ({error}); copy it again from the release's download."
        ) from error


def find_images(root: Path, names: Sequence[str], release: str, instructions: str) -> list[Path]:
    """Paths of the image files `names`, searched anywhere below `root` (archives nest differently).

    Raises:
      FileNotFoundError naming the first missing images and how to get the release.
    """
    index: dict[str, Path] = {}
    for path in sorted(root.rglob("*")):
        if path.suffix.lower() in IMAGE_SUFFIXES:
            index.setdefault(path.name, path)
    missing = [name for name in names if name not in index]
    if missing:
        raise FileNotFoundError(
            f"{release}: {len(missing)} of {len(names)} images are missing below {root}, e.g. "
            f"{', '.join(missing[:5])}.\n{instructions}"
        )
    return [index[name] for name in names]


def require_path(path: Path, release: str, instructions: str) -> Path:
    """Returns `path` if it exists, else raises FileNotFoundError naming it, with instructions."""
    if not path.exists():
        raise FileNotFoundError(f"{release}: {path} does not exist.\n{instructions}")
    return path


DATA_SUFFIXES = (".mat", ".csv", ".parquet")
"""The fixation files the readers read (OSIE's and PS's .mat files, a fixation table)."""

FINGERPRINT_VERSION = 2
"""1 (recorded without a "version"): every file below the release, non-images read whole. 2: only
the files a reader can read (`_read_by_builders`), hashed in chunks."""


def _read_by_builders(relative: Path) -> bool:
    """Whether a file of a release is of a kind the readers read: an image or a fixation file, not
    hidden (.DS_Store, macOS's ._<name> copies, anything in a hidden folder or __MACOSX)."""
    if any(part.startswith(".") or part == "__MACOSX" for part in relative.parts):
        return False
    return relative.suffix.lower() in IMAGE_SUFFIXES + DATA_SUFFIXES


def fingerprint(root: str | os.PathLike, *, every_file: bool = False) -> dict:
    """What identifies a release on disk, recorded in the dataset metadata at build time.

    The files the builders read (images and fixation files, `_read_by_builders`; not hidden files
    such as .DS_Store, nor stray files such as an archive) by relative path and size, and the
    content (SHA-256, read in chunks) of the fixation files (small, and what a re-export changes).
    A copy of the same release elsewhere has the same fingerprint; another release, a re-exported
    fixation file, or added or removed images do not.

    Args:
      root: the release folder.
      every_file: fingerprint every file below `root` as version 1 did (what a fingerprint
        recorded without a "version" is compared with).

    Returns:
      {"version", "root": the absolute path, "num_files", "bytes", "listing": SHA-256 of the
       (path, size) list, "data_files": {relative path: SHA-256} of the non-image files}.
    """
    root = Path(root).resolve()
    listing, data_files, total, count = hashlib.sha256(), {}, 0, 0
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        relative = path.relative_to(root)
        if not every_file and not _read_by_builders(relative):
            continue
        size = path.stat().st_size
        total += size
        count += 1
        listing.update(f"{relative.as_posix()}\0{size}\n".encode())
        if path.suffix.lower() not in IMAGE_SUFFIXES:
            with open(path, "rb") as file:  # in chunks: a large file costs no memory
                data_files[relative.as_posix()] = hashlib.file_digest(file, "sha256").hexdigest()
    return {
        "version": 1 if every_file else FINGERPRINT_VERSION,
        "root": str(root),
        "num_files": count,
        "bytes": total,
        "listing": listing.hexdigest(),
        "data_files": data_files,
    }


def fingerprint_differences(recorded: dict, current: dict) -> list[str]:
    """How two `fingerprint`s differ, in words (empty when they match; the root may differ)."""
    differences = []
    if recorded["listing"] != current["listing"]:
        differences.append(
            f"{recorded['num_files']} files, {recorded['bytes']} bytes then; "
            f"{current['num_files']} files, {current['bytes']} bytes now"
        )
    old, new = recorded["data_files"], current["data_files"]
    changed = sorted(n for n in set(old) | set(new) if old.get(n) != new.get(n))
    if changed:
        differences.append(f"changed data files: {', '.join(changed[:5])}")
    return differences
