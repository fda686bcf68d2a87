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
import scipy.io

from psm_jax.data.fixations import FixationTable
from psm_jax.data.releases.base import Release, image_size, require_path

INSTRUCTIONS = """\
Download the OSIE release (MIT License) from the NUS-VIP repository
"predicting-human-gaze-beyond-pixels" and pass its root as manual_dir, so that
<manual_dir>/data/stimuli/*.jpg and <manual_dir>/data/eye/fixations.mat exist.
A copy lives at ../shared/datasets/osie in this project's workspace."""

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
    try:
        records = np.atleast_1d(
            scipy.io.loadmat(mat_path, squeeze_me=True, struct_as_record=False)["fixations"]
        )
    except (KeyError, ValueError, OSError, NotImplementedError) as error:
        raise ValueError(f"Cannot read {mat_path} as an OSIE fixations.mat: {error}") from error

    image_ids, columns = [], {k: [] for k in ("image", "observer", "x", "y", "duration_ms")}
    num_observers = None
    for image_index, record in enumerate(records):
        image_ids.append(str(record.img))
        subjects = np.atleast_1d(record.subjects)
        if num_observers is None:
            num_observers = len(subjects)
        elif len(subjects) != num_observers:
            raise ValueError(
                f"{mat_path}: image {record.img} has {len(subjects)} subjects, "
                f"the first image has {num_observers}."
            )
        for observer, subject in enumerate(subjects):
            x = np.atleast_1d(np.asarray(subject.fix_x, np.float64)) - 1.0
            y = np.atleast_1d(np.asarray(subject.fix_y, np.float64)) - 1.0
            duration = np.atleast_1d(np.asarray(subject.fix_duration, np.float64))
            columns["image"].append(np.full(len(x), image_index))
            columns["observer"].append(np.full(len(x), observer))
            columns["x"].append(x)
            columns["y"].append(y)
            columns["duration_ms"].append(np.resize(duration, len(x)))
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
