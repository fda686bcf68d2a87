"""Reader of the PS (Personalized Saliency) release of Xu et al. (IJCAI 2017).

    <manual_dir>/**/fixData/ImfixData_Sub_<k>.mat   one file per participant, ImfixDataALL: struct
        array over images (same order in every file) with im_name, testID (repeated viewing,
        1..4, rarely 5), fix_X (1-based screen ROW, 1..1080), fix_Y (1-based screen COLUMN,
        1..1920), duration (seconds)
    <manual_dir>/**/<im_name>                          the images, anywhere below manual_dir

Images were shown stretched to the 1920x1080 screen, so a fixation maps into an image of (H, W)
by rescaling each axis (`rescale_coordinates`), and a sigma given in screen pixels becomes
(sigma * H / 1080, sigma * W / 1920) in image pixels.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from psm_jax.data.fixations import FixationTable
from psm_jax.data.releases.base import (
    Release,
    find_images,
    image_size,
    load_mat_variable,
    require_path,
)
from psm_jax.data.saliency_maps import rescale_coordinates

INSTRUCTIONS = """\
Download the PS release archive (images and Data/fixData/ImfixData_Sub_<k>.mat) from the links in
the README of the GitHub repository "xuyanyu-shh/Personalized-Saliency" (Google Drive or Baidu
Pan), unpack it and pass the unpacked folder as manual_dir. The fixation files may sit anywhere
below it in a folder named fixData; the images anywhere below it, under their im_name."""

SCREEN_SIZE = (1080, 1920)
"""(H, W) of the screen the PS images were shown on."""

SIGMA_SCREEN_PX = 64.0
"""One degree of visual angle on the PS setup: a 24-inch 16:9 monitor is 20.9 in wide, so 1920 px
are 91.8 px/in, and 1 degree at 40 in viewing distance is 0.70 in = 64 px (Judd et al. 2009 blur
fixation maps with a Gaussian of about 1 degree)."""

_SUBJECT = re.compile(r"ImfixData_Sub_(\d+)\.mat$")


def read_ps_fixations(fix_dir: str | Path) -> tuple[list[str], list[str], FixationTable]:
    """Parses every ImfixData_Sub_<k>.mat of a fixData folder, in screen coordinates.

    Returns:
      image_names: im_name of each image, in file order (checked identical across files).
      observer_ids: 'sub_<k>' sorted by k.
      fixations: x = column, y = row, 0-based pixel centres of the 1920x1080 SCREEN; viewing =
        testID - 1; durations converted to ms.
    """
    fix_dir = Path(fix_dir)
    files = sorted(
        (p for p in fix_dir.glob("ImfixData_Sub_*.mat") if _SUBJECT.search(p.name)),
        key=lambda p: int(_SUBJECT.search(p.name).group(1)),
    )
    if not files:
        raise FileNotFoundError(f"personalized_saliency: no ImfixData_Sub_<k>.mat in {fix_dir}.")
    image_names: list[str] | None = None
    tables = []
    for observer, path in enumerate(files):
        records = load_mat_variable(path, "ImfixDataALL", "a PS ImfixData file")
        names = [str(r.im_name) for r in records]
        if image_names is None:
            image_names = names
        elif names != image_names:
            raise ValueError(f"{path}: image order differs from {files[0].name}.")
        lengths = [np.atleast_1d(r.fix_X).size for r in records]

        def column(field, records=records):
            return np.concatenate(
                [np.atleast_1d(np.asarray(getattr(r, field), np.float64)) for r in records]
            )

        tables.append(
            FixationTable.from_columns(
                image=np.repeat(np.arange(len(records)), lengths),
                observer=np.full(sum(lengths), observer),
                viewing=column("testID") - 1,
                x=column("fix_Y") - 1.0,
                y=column("fix_X") - 1.0,
                duration_ms=column("duration") * 1000.0,
            )
        )
    observer_ids = [f"sub_{int(_SUBJECT.search(p.name).group(1))}" for p in files]
    return image_names or [], observer_ids, FixationTable.concatenate(tables)


def read_ps(manual_dir: str | Path, sigma_screen_px: float = SIGMA_SCREEN_PX) -> Release:
    """Parses the PS release: fixations mapped from screen to native image coordinates."""
    root = require_path(Path(manual_dir), "personalized_saliency", INSTRUCTIONS)
    fix_dirs = sorted(p for p in root.rglob("fixData") if p.is_dir())
    if not fix_dirs:
        raise FileNotFoundError(
            f"personalized_saliency: no fixData folder below {root}.\n{INSTRUCTIONS}"
        )
    image_names, observer_ids, screen = read_ps_fixations(fix_dirs[0])
    paths = find_images(root, image_names, "personalized_saliency", INSTRUCTIONS)
    sizes = np.array([image_size(p) for p in paths], np.int64).reshape(-1, 2)
    heights = sizes[screen.image, 0]
    widths = sizes[screen.image, 1]
    fixations = FixationTable.from_columns(
        image=screen.image,
        observer=screen.observer,
        viewing=screen.viewing,
        x=rescale_coordinates(screen.x, SCREEN_SIZE[1], widths),
        y=rescale_coordinates(screen.y, SCREEN_SIZE[0], heights),
        duration_ms=screen.duration_ms,
    )
    sigma = sigma_screen_px * sizes / np.array(SCREEN_SIZE, np.float64)
    return Release(
        name="personalized_saliency",
        image_ids=tuple(image_names),
        image_sizes=sizes,
        observer_ids=tuple(observer_ids),
        fixations=fixations,
        sigma=sigma,
        read_image=lambda i: paths[i].read_bytes(),
        image_source=lambda i: str(paths[i]),
        metadata={"screen_size": list(SCREEN_SIZE), "sigma_screen_px": sigma_screen_px},
    )
