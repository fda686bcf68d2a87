"""Writes a trained universal network's USM of every image of a dataset, one .npy per image.

    python launch/export_usm.py --workdir=runs/osie_personal/universal \
        --output_dir=runs/osie_personal/predicted_usm

The folder is what `--config.usm=external --config.external_usm_dir=...` (the "predicted" config
option) reads: `<image stem>.npy`, the map at the working resolution in [0, 1].
"""

from pathlib import Path

import numpy as np
import runner
from absl import app, flags
from tqdm import tqdm

from psm_jax import inference
from psm_jax.data import pipeline

flags.adopt_module_key_flags(runner)  # --verbose shows in --help

_WORKDIR = flags.DEFINE_string("workdir", None, "The universal network's training workdir.")
_OUTPUT_DIR = flags.DEFINE_string("output_dir", None, "Where the .npy maps go.")
_BATCH = flags.DEFINE_integer("batch_size", 32, "Images per forward pass.")


def main(argv):
    del argv
    try:
        universal = inference.restore(_WORKDIR.value, kind="universal")
    except ValueError as error:
        raise app.UsageError(f"--workdir: {error}") from error
    config = universal.config
    output = Path(_OUTPUT_DIR.value)
    output.mkdir(parents=True, exist_ok=True)
    for split in ("train", "validation", "test"):
        source, metadata = pipeline.open_split(config.dataset, split, config.data_dir)
        for start in tqdm(range(0, len(source), _BATCH.value), desc=f"USMs of {split}"):
            records = [source[i] for i in range(start, min(start + _BATCH.value, len(source)))]
            images = [pipeline.decode_image(r["image"], universal.input_size) for r in records]
            usms = inference.predicted_usms(universal, images)
            for record, usm in zip(records, usms, strict=True):
                stem = Path(pipeline.image_id(record)).stem
                np.save(output / f"{stem}.npy", usm.astype(np.float32))
    print(f"Wrote the USMs of {config.dataset} to {output}")


if __name__ == "__main__":
    flags.mark_flags_as_required(["workdir", "output_dir"])
    runner.run(main)
