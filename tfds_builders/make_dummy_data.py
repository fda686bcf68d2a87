"""Writes the dummy_data/ folders of the builders: tiny fake releases laid out like the real ones.

Run from the project root: python tfds_builders/make_dummy_data.py. The output is committed; this
script documents how it was made (and remakes it if the layouts change).

Each fake release has 10 images, so the image split is 8/1/1, and contains the irregularities the
builders must handle: a grayscale image (re-encoded as RGB), images of different sizes (PS), a
fixation outside the image (clipped and counted), a NaN coordinate (dropped and counted) and an
(image, observer) pair without fixations (masked and counted).
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np
import scipy.io
from PIL import Image

ROOT = Path(__file__).parent
NUM_IMAGES = 10


def _jpeg(rng: np.random.Generator, height: int, width: int, gray: bool = False) -> bytes:
    pixels = rng.integers(
        0, 256, size=(height, width) if gray else (height, width, 3), dtype=np.uint8
    )
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=80)
    return buffer.getvalue()


def make_osie(out: Path) -> None:
    """data/stimuli/<n>.jpg (48x64) and data/eye/fixations.mat, 5 subjects, 1-based coordinates."""
    rng = np.random.default_rng(0)
    (out / "data" / "stimuli").mkdir(parents=True, exist_ok=True)
    (out / "data" / "eye").mkdir(parents=True, exist_ok=True)
    records = []
    for i in range(NUM_IMAGES):
        name = f"{1001 + i}.jpg"
        (out / "data" / "stimuli" / name).write_bytes(_jpeg(rng, 48, 64, gray=(i == 3)))
        subjects = []
        for _ in range(5):
            n = int(rng.integers(1, 6))
            subjects.append(
                {
                    "fix_x": rng.uniform(1, 64, n).round(1),
                    "fix_y": rng.uniform(1, 48, n).round(1),
                    "fix_duration": rng.integers(60, 600, n).astype(float),
                }
            )
        if i == 0:
            subjects[0]["fix_x"][0] = 70.0  # outside the 64-px-wide image: clipped
        cell = np.empty(len(subjects), dtype=object)
        cell[:] = subjects
        records.append({"img": name, "subjects": cell})
    fixations = np.empty(len(records), dtype=object)
    fixations[:] = records
    scipy.io.savemat(out / "data" / "eye" / "fixations.mat", {"fixations": fixations})


def make_ps(out: Path) -> None:
    """images/ of two sizes and Data/fixData/ImfixData_Sub_<k>.mat: 5 subjects, 2-3 viewings."""
    rng = np.random.default_rng(1)
    (out / "images").mkdir(parents=True, exist_ok=True)
    fix_dir = out / "Data" / "fixData"
    fix_dir.mkdir(parents=True, exist_ok=True)
    names = [f"{i:06d}.jpg" for i in range(NUM_IMAGES)]
    for i, name in enumerate(names):
        height, width = (36, 64) if i % 2 else (48, 48)
        (out / "images" / name).write_bytes(_jpeg(rng, height, width))
    dtype = [(f, object) for f in ("im_name", "testID", "fix_X", "fix_Y", "duration")]
    for subject in range(1, 6):
        data = np.zeros((1, NUM_IMAGES), dtype=dtype)
        for i, name in enumerate(names):
            viewing = np.repeat(np.arange(1, 4 if subject % 2 else 3), 3).astype(np.uint8)
            n = len(viewing)
            if subject == 5 and i == 2:
                viewing, n = viewing[:0], 0  # subject 5 has no fixation on image 2: masked
            data[0, i] = (
                name,
                viewing.reshape(-1, 1),
                rng.integers(1, 1081, (n, 1)).astype(np.uint16),
                rng.integers(1, 1921, (n, 1)).astype(np.uint16),
                rng.uniform(0.05, 0.6, (n, 1)).round(3),
            )
        scipy.io.savemat(fix_dir / f"ImfixData_Sub_{subject}.mat", {"ImfixDataALL": data})


def make_id(out: Path) -> None:
    """fixations.csv (6 subjects, 2 sessions) and stimuli/<n>.jpg (48x64)."""
    rng = np.random.default_rng(2)
    (out / "stimuli").mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(NUM_IMAGES):
        name = f"{1001 + i}.jpg"
        (out / "stimuli" / name).write_bytes(_jpeg(rng, 48, 64))
        for subject in range(1, 7):
            if subject == 6 and i == 4:
                continue  # no fixation of subject 6 on this image: masked and counted
            for session in (1, 2):
                for _ in range(int(rng.integers(1, 5))):
                    rows.append(
                        [
                            f"s{subject:03d}",
                            name,
                            f"{rng.uniform(0, 63):.1f}",
                            f"{rng.uniform(0, 47):.1f}",
                            f"{rng.uniform(80, 500):.0f}",
                            session,
                            1,
                        ]
                    )
    rows[3][2] = "nan"  # a NaN coordinate: dropped and counted
    rows[5][3] = "-12"  # outside the image: clipped and counted
    with open(out / "fixations.csv", "w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["subject", "image", "x", "y", "duration_ms", "session", "trial"])
        writer.writerows(rows)


if __name__ == "__main__":
    make_osie(ROOT / "osie_personal" / "dummy_data")
    make_ps(ROOT / "personalized_saliency" / "dummy_data")
    make_id(ROOT / "individual_differences" / "dummy_data")
