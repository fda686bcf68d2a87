"""Reader of a long-format fixation table: the ID dataset, or any user's own eye-tracking study.

Layout of the manual_dir:

    <manual_dir>/fixations.csv  (or fixations.parquet)   one row per fixation
    <manual_dir>/stimuli/<image>                          the images, anywhere below stimuli/

Columns (a header row names them; extra columns are ignored):

    subject      observer id (any string)
    image        stimulus file name as found below stimuli/ ('1001.jpg'); a name without a
                 suffix matches the file with that stem
    x, y         fixation position in pixels of the stimulus image, 0-based pixel centres
                 (x = column, y = row; subtract 1 from MATLAB's 1-based coordinates)
    duration_ms  fixation duration in milliseconds
    trial        optional: the repeated viewing of the image by this subject
    session      optional: with trial, what tells repeated viewings apart

Reading Parquet needs pyarrow (`pip install pyarrow`).
"""

from __future__ import annotations

import csv
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from psm_jax.data.fixations import FixationTable
from psm_jax.data.releases.base import IMAGE_SUFFIXES, Release, image_size, require_path

REQUIRED_COLUMNS = ("subject", "image", "x", "y", "duration_ms")
OPTIONAL_COLUMNS = ("trial", "session")
TABLE_NAMES = ("fixations.parquet", "fixations.csv")


def _read_columns(path: Path) -> dict[str, np.ndarray]:
    if path.suffix == ".parquet":
        try:
            import pyarrow.parquet as pq
        except ImportError as error:
            raise ImportError(f"Reading {path} needs pyarrow: pip install pyarrow") from error
        table = pq.read_table(path)
        if table.num_rows == 0:
            raise ValueError(f"{path} has no fixations.")
        return {
            name: np.asarray(table.column(name).to_pylist(), object) for name in table.column_names
        }
    # utf-8-sig: Excel's "CSV UTF-8" starts the file with a byte-order mark, which would otherwise
    # become part of the first column's name ('\ufeffsubject') and hide that column.
    with open(path, newline="", encoding="utf-8-sig") as file:
        try:
            header, *rows = list(csv.reader(file))
        except UnicodeDecodeError as error:
            raise ValueError(
                f"{path} is not UTF-8 text ({error}); save it as UTF-8 (Excel: CSV UTF-8)."
            ) from None
        except ValueError:  # no line to unpack
            raise ValueError(
                f"{path} is empty; expected a header row {REQUIRED_COLUMNS}."
            ) from None
    header = [h.strip() for h in header]
    if not rows:
        raise ValueError(f"{path} has a header row but no fixations.")
    bad = [i + 2 for i, row in enumerate(rows) if len(row) != len(header)]
    if bad:
        raise ValueError(
            f"{path}: rows {bad[:5]} do not have {len(header)} fields like the header."
        )
    data = np.array(rows, dtype=object).reshape(len(rows), len(header))
    return {name: data[:, i] for i, name in enumerate(header)}


def _as_float(values: np.ndarray, path: Path, column: str, lines: np.ndarray) -> np.ndarray:
    """The column as floats; `lines` are the rows' line numbers in the file, for the error."""
    out = np.empty(len(values))
    for i, value in enumerate(values):
        try:
            out[i] = np.nan if value is None or value == "" else float(value)
        except (TypeError, ValueError):
            raise ValueError(
                f"{path}: column {column!r} row {lines[i]} holds {value!r}, not a number."
            ) from None
    return out


def _unique_rows(columns: dict[str, np.ndarray]) -> np.ndarray:
    """Indices of the rows that do not repeat an earlier row exactly (every column equal, as
    read), in file order: an export that wrote a fixation twice would count it twice in a map."""
    keys = np.stack([columns[n].astype(str) for n in sorted(columns)], axis=1)
    _, first = np.unique(keys, axis=0, return_index=True)
    return np.sort(first)


def read_fixation_table(
    path: str | Path, *, one_person: bool = False, images_folder: str = "the images folder"
) -> tuple[list[str], list[str], FixationTable, dict[str, int]]:
    """Parses a long-format fixation table (columns in the module docstring).

    Args:
      path: the .csv or .parquet table.
      one_person: a table of one person's fixations (enrolling a new viewer): the `subject` column
        may be absent (one observer, id ""), and so may `duration_ms` (every fixation 1 ms, which
        only matters for duration-weighted maps).
      images_folder: what the `image` names are relative to, as the error names it.

    Returns:
      image_names: the distinct `image` values, sorted.
      observer_ids: the distinct `subject` values, sorted.
      fixations: image/observer indices into those lists; viewing = index of the distinct
        (session, trial) pair, or 0 without those columns; empty or missing numbers become NaN
        (and are dropped, counted, by `clean_fixations`).
      counts: {"duplicate_rows_dropped": rows that repeated an earlier row exactly, dropped}.

    Raises:
      ValueError naming the file: no header, no rows, missing columns, ragged rows, non-numbers,
      an image name that leaves the images folder (absolute, or through '..').
    """
    path = Path(path)
    columns = _read_columns(path)
    keep = _unique_rows(columns)
    duplicates = len(next(iter(columns.values()))) - len(keep)
    columns = {name: values[keep] for name, values in columns.items()}
    lines = keep + 2  # the header is line 1
    optional = ("subject", "duration_ms") if one_person else ()
    missing = [c for c in REQUIRED_COLUMNS if c not in columns and c not in optional]
    if missing:
        raise ValueError(f"{path} lacks columns {missing}; it has {sorted(columns)}.")
    rows = len(columns["image"])
    if "subject" not in columns:
        columns["subject"] = np.full(rows, "", object)
    if "duration_ms" not in columns:
        columns["duration_ms"] = np.ones(rows)
    image_names, first, image = np.unique(
        columns["image"].astype(str), return_index=True, return_inverse=True
    )
    for name, row in zip(image_names, first, strict=True):
        if _leaves_folder(name):
            raise ValueError(
                f"{path}, line {lines[row]}: image {str(name)!r} leaves {images_folder} (an "
                "absolute path or '..'); name each image by its path inside that folder."
            )
    observer_ids, observer = np.unique(columns["subject"].astype(str), return_inverse=True)
    repeat_keys = [columns[c].astype(str) for c in OPTIONAL_COLUMNS if c in columns]
    if repeat_keys:
        _, viewing = np.unique(np.stack(repeat_keys, axis=1), axis=0, return_inverse=True)
    else:
        viewing = np.zeros(len(image), np.int64)
    fixations = FixationTable.from_columns(
        image=image,
        observer=observer,
        viewing=viewing.reshape(-1),
        x=_as_float(columns["x"], path, "x", lines),
        y=_as_float(columns["y"], path, "y", lines),
        duration_ms=_as_float(columns["duration_ms"], path, "duration_ms", lines),
    )
    return list(image_names), list(observer_ids), fixations, {"duplicate_rows_dropped": duplicates}


def _leaves_folder(name: str) -> bool:
    """Whether an image name, read relative to a folder, reaches outside it: an absolute path, or
    one whose '..' climb above the folder (a table must not read files it was not given)."""
    normal = os.path.normpath(name)
    return os.path.isabs(name) or normal == ".." or normal.startswith(".." + os.sep)


def write_fixation_table(path: str | Path, columns: dict[str, Sequence]) -> Path:
    """Writes a fixation table as CSV, the layout `read_fixation_table` reads (the module doc).

    Args:
      path: the .csv to write.
      columns: name -> values, all of one length; must hold `REQUIRED_COLUMNS`, may hold
        `OPTIONAL_COLUMNS`; floats are written with 2 decimals.
    """
    missing = [c for c in REQUIRED_COLUMNS if c not in columns]
    if missing:
        raise ValueError(f"A fixation table needs columns {missing}.")
    names = list(REQUIRED_COLUMNS) + [c for c in OPTIONAL_COLUMNS if c in columns]
    lengths = {len(columns[c]) for c in names}
    if len(lengths) > 1:
        raise ValueError(f"The columns differ in length: {lengths}.")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(names)
        for row in zip(*(columns[c] for c in names), strict=True):
            writer.writerow(f"{v:.2f}" if isinstance(v, float | np.floating) else v for v in row)
    return path


def read_table_release(
    manual_dir: str | Path, *, name: str, instructions: str, sigma_px: float
) -> Release:
    """Parses a manual_dir holding fixations.{parquet,csv} and stimuli/ (module docstring)."""
    root = require_path(Path(manual_dir), name, instructions)
    tables = [root / t for t in TABLE_NAMES if (root / t).exists()]
    if not tables:
        raise FileNotFoundError(
            f"{name}: neither {root / TABLE_NAMES[0]} nor {root / TABLE_NAMES[1]} exists.\n"
            f"{instructions}"
        )
    stimuli = require_path(root / "stimuli", name, instructions)
    image_names, observer_ids, fixations, counts = read_fixation_table(tables[0])

    by_name, by_stem = {}, {}
    for path in sorted(stimuli.rglob("*")):
        if path.suffix.lower() in IMAGE_SUFFIXES:
            by_name.setdefault(path.name, path)
            by_stem.setdefault(path.stem, path)
    paths = [by_name.get(n) or by_stem.get(n) for n in image_names]
    missing = [n for n, p in zip(image_names, paths, strict=True) if p is None]
    if missing:
        raise FileNotFoundError(
            f"{name}: {tables[0]} names {len(missing)} images not found below {stimuli}, e.g. "
            f"{', '.join(missing[:5])}.\n{instructions}"
        )
    sizes = np.array([image_size(p) for p in paths], np.int64).reshape(-1, 2)
    return Release(
        name=name,
        image_ids=tuple(p.name for p in paths),
        image_sizes=sizes,
        observer_ids=tuple(observer_ids),
        fixations=fixations,
        sigma=np.full((len(paths), 2), sigma_px),
        read_image=lambda i: paths[i].read_bytes(),
        image_source=lambda i: str(paths[i]),
        metadata={"fixation_table": tables[0].name},
        quality=counts,
    )
