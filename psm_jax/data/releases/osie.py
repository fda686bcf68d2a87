"""Reader of the OSIE release layout (Xu et al., JoV 2014).

    <manual_dir>/data/stimuli/<name>.jpg
    <manual_dir>/data/eye/fixations.mat   fixations{N}: img 'NNNN.jpg', subjects{O}: fix_x, fix_y,
                                           fix_duration (1-based pixels of the image, ms)

The number of images, of observers and the image sizes are read from the release, so any release
in this lab's layout reads. Coordinates are MATLAB 1-based and converted to 0-based pixel centres.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from psm_jax.data.fixations import FixationTable
from psm_jax.data.releases.base import Release, image_size, load_mat_variable, require_path

INSTRUCTIONS = (
    "download the OSIE release (MIT License) from "
    "https://github.com/NUS-VIP/predicting-human-gaze-beyond-pixels (`git clone` it) and pass its "
    "root, which holds data/stimuli/*.jpg and data/eye/fixations.mat, as --manual_dir (main job: "
    "--config.manual_dir)."
)

SIGMA_PX = 24.0
"""OSIE's own code blurs fixations with sigma = 24 px at 800x600 (about 1 degree)."""


def read_osie(manual_dir: str | Path, sigma_px: float = SIGMA_PX) -> Release:
    """Parses an OSIE-layout release.

    Args:
      manual_dir: the release root (holding data/stimuli and data/eye).
      sigma_px: Gaussian sigma in native image pixels.

    Returns:
      The release; observers are named 'subject_01'... in the order of the .mat file.
    """
    root = Path(manual_dir)
    require_path(root, "osie_personal", INSTRUCTIONS)
    mat_path = require_path(root / "data" / "eye" / "fixations.mat", "osie_personal", INSTRUCTIONS)
    stimuli = require_path(root / "data" / "stimuli", "osie_personal", INSTRUCTIONS)
    records = load_mat_variable(mat_path, "fixations", "an OSIE fixations.mat")

    image_ids, columns = [], {k: [] for k in ("image", "observer", "x", "y", "duration_ms")}
    num_observers = None
    for image_index, record in enumerate(records):
        image = _field(record, "img", f"{mat_path}: entry {image_index + 1} of fixations")
        image_ids.append(str(image))
        where = f"{mat_path}: image {image} (entry {image_index + 1})"
        subjects = np.atleast_1d(_field(record, "subjects", where))
        if num_observers is None:
            num_observers = len(subjects)
        elif len(subjects) != num_observers:
            raise ValueError(
                f"{where} has {len(subjects)} subjects, the first image has {num_observers}."
            )
        for observer, subject in enumerate(subjects):
            x, y, duration = _subject_fixations(subject, f"{where}, subject {observer + 1}")
            columns["image"].append(np.full(len(x), image_index))
            columns["observer"].append(np.full(len(x), observer))
            columns["x"].append(x - 1.0)
            columns["y"].append(y - 1.0)
            columns["duration_ms"].append(duration)
    fixations = FixationTable.from_columns(**{k: np.concatenate(v) for k, v in columns.items()})

    paths = []
    for name in image_ids:
        path = stimuli / name
        if not path.exists():
            raise FileNotFoundError(f"osie_personal: image {path} is missing.\n{INSTRUCTIONS}")
        paths.append(path)
    sizes = np.array([image_size(p) for p in paths], np.int64).reshape(-1, 2)
    return Release(
        name="osie_personal",
        image_ids=tuple(image_ids),
        image_sizes=sizes,
        observer_ids=tuple(f"subject_{i + 1:02d}" for i in range(num_observers or 0)),
        fixations=fixations,
        sigma=np.full((len(image_ids), 2), sigma_px),
        read_image=lambda i: paths[i].read_bytes(),
        image_source=lambda i: str(paths[i]),
    )


def _field(entry, name: str, where: str):
    """`entry.name` of a MATLAB struct, or an error naming where the malformed entry is."""
    try:
        return getattr(entry, name)
    except AttributeError:
        raise ValueError(
            f"{where} is not a struct with a field {name!r} (it is a {type(entry).__name__})."
        ) from None


def _subject_fixations(subject, where: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(x, y, duration) of one subject's struct, 1-based; they must have one value per fixation."""
    values = []
    for name in ("fix_x", "fix_y", "fix_duration"):
        value = _field(subject, name, where)
        try:
            values.append(np.atleast_1d(np.asarray(value, np.float64)))
        except (TypeError, ValueError) as error:
            raise ValueError(f"{where}: {name} is not numeric ({error}).") from None
    x, y, duration = values
    if any(v.shape != x.shape for v in values) or x.ndim != 1:
        raise ValueError(
            f"{where}: fix_x, fix_y and fix_duration must be vectors of one length, got "
            f"{x.shape}, {y.shape} and {duration.shape}."
        )
    return x, y, duration
