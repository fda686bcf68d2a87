"""The long-format fixation table every release reader produces, and its cleaning.

A release (OSIE, PS, ID, a user's own study, the synthetic generator) is read into one
`FixationTable`: a row per fixation with the image and observer it belongs to, the repeated
viewing it came from, its position in 0-based pixel-centre coordinates of the native image (see
`psm_jax.data.saliency_maps`) and its duration in milliseconds. `clean_fixations` applies the
data-quality rules once, for every dataset alike, and returns what it changed as counts that the
builders store in the dataset metadata: nothing is dropped or moved silently.
"""

from __future__ import annotations

import dataclasses

import numpy as np


@dataclasses.dataclass(frozen=True)
class FixationTable:
    """Fixations in long format; all columns have the same length.

    Attributes:
      image: int64 index of the image in the release's image list.
      observer: int64 index of the observer in the release's observer list.
      viewing: int64 index of the repeated viewing (0 when every image was viewed once).
      x, y: float32 native-image coordinates (0-based pixel centres; x = column, y = row).
      duration_ms: float32 fixation duration in milliseconds.
    """

    image: np.ndarray
    observer: np.ndarray
    viewing: np.ndarray
    x: np.ndarray
    y: np.ndarray
    duration_ms: np.ndarray

    def __post_init__(self):
        lengths = {f.name: len(getattr(self, f.name)) for f in dataclasses.fields(self)}
        if len(set(lengths.values())) > 1:
            raise ValueError(f"FixationTable columns differ in length: {lengths}")

    @classmethod
    def from_columns(cls, **columns) -> FixationTable:
        """Builds a table with the canonical dtypes; `viewing` defaults to 0."""
        n = len(columns["x"])
        return cls(
            image=np.asarray(columns["image"], np.int64).reshape(n),
            observer=np.asarray(columns["observer"], np.int64).reshape(n),
            viewing=np.asarray(columns.get("viewing", np.zeros(n)), np.int64).reshape(n),
            x=np.asarray(columns["x"], np.float32).reshape(n),
            y=np.asarray(columns["y"], np.float32).reshape(n),
            duration_ms=np.asarray(columns["duration_ms"], np.float32).reshape(n),
        )

    @classmethod
    def concatenate(cls, tables: list[FixationTable]) -> FixationTable:
        if not tables:
            return cls.from_columns(image=[], observer=[], x=[], y=[], duration_ms=[])
        return cls(
            **{
                f.name: np.concatenate([getattr(t, f.name) for t in tables])
                for f in dataclasses.fields(cls)
            }
        )

    def __len__(self) -> int:
        return len(self.x)

    def select(self, rows) -> FixationTable:
        """The table restricted to `rows` (a boolean mask or an index array)."""
        return FixationTable(
            **{f.name: getattr(self, f.name)[rows] for f in dataclasses.fields(self)}
        )

    def rows_by_image(self, num_images: int) -> list[np.ndarray]:
        """For each image index, the row indices of its fixations (in table order)."""
        order = np.argsort(self.image, kind="stable")
        bounds = np.searchsorted(self.image[order], np.arange(num_images + 1))
        return [order[bounds[i] : bounds[i + 1]] for i in range(num_images)]


def clean_fixations(
    table: FixationTable, image_sizes: np.ndarray
) -> tuple[FixationTable, dict[str, int]]:
    """Applies the data-quality rules and counts what they changed.

    - A fixation with a NaN or infinite coordinate is dropped (``nan_fixations_dropped``).
    - A fixation outside its image's extent [-0.5, W-0.5] x [-0.5, H-0.5] is clipped onto the
      border (``outside_fixations_clipped``).
    - A NaN, infinite or negative duration is set to 0 (``invalid_durations_zeroed``); it still
      counts as a fixation unless maps are weighted by duration.

    Args:
      table: fixations of a release in native coordinates.
      image_sizes: (num_images, 2) native (H, W) of each image.

    Returns:
      (cleaned table, counts).
    """
    finite = np.isfinite(table.x) & np.isfinite(table.y)
    table = table.select(finite)
    heights = image_sizes[table.image, 0].astype(np.float32)
    widths = image_sizes[table.image, 1].astype(np.float32)
    x = np.clip(table.x, -0.5, widths - 0.5)
    y = np.clip(table.y, -0.5, heights - 0.5)
    moved = (x != table.x) | (y != table.y)
    duration_ok = np.isfinite(table.duration_ms) & (table.duration_ms >= 0)
    cleaned = dataclasses.replace(
        table, x=x, y=y, duration_ms=np.where(duration_ok, table.duration_ms, 0).astype(np.float32)
    )
    counts = {
        "nan_fixations_dropped": int((~finite).sum()),
        "outside_fixations_clipped": int(moved.sum()),
        "invalid_durations_zeroed": int((~duration_ok).sum()),
    }
    return cleaned, counts
