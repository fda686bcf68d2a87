"""Writes a trained universal network's USM of every image of a dataset, one .npy per image.

    python launch/export_usm.py --workdir=runs/osie/universal \
        --output_dir=runs/osie_personal/predicted_usm

The folder is what `--config.usm=external --config.external_usm_dir=...` (the "predicted" config
option) reads: `<image stem>.npy`, the map at the working resolution in [0, 1].
"""

from pathlib import Path

import numpy as np
from absl import app, flags
from flax import nnx
from tqdm import tqdm

from psm_jax.data import pipeline
from psm_jax.models import layers
from psm_jax.train import loop

_WORKDIR = flags.DEFINE_string("workdir", None, "The universal network's training workdir.")
_OUTPUT_DIR = flags.DEFINE_string("output_dir", None, "Where the .npy maps go.")
_BATCH = flags.DEFINE_integer("batch_size", 32, "Images per forward pass.")


def main(argv):
    del argv
    model, config, metadata = loop.restore_model(_WORKDIR.value)
    if config.model != "universal":
        raise app.UsageError(f"--workdir holds a {config.model!r} model, not 'universal'.")
    output = Path(_OUTPUT_DIR.value)
    output.mkdir(parents=True, exist_ok=True)
    predict = nnx.jit(lambda model, images: model.usm(layers.model_input(images, None)))
    for split in ("train", "validation", "test"):
        source, _ = pipeline.open_split(config.dataset, split, config.data_dir)
        for start in tqdm(range(0, len(source), _BATCH.value), desc=f"USMs of {split}"):
            records = [source[i] for i in range(start, min(start + _BATCH.value, len(source)))]
            images = np.stack(
                [pipeline.decode_image(r["image"], metadata.working_size) for r in records]
            )
            for record, usm in zip(records, np.asarray(predict(model, images)), strict=True):
                image_id = record["image_id"]
                image_id = image_id.decode() if isinstance(image_id, bytes) else str(image_id)
                np.save(output / f"{Path(image_id).stem}.npy", usm.astype(np.float32))
    print(f"Wrote the USMs of {config.dataset} to {output}")


if __name__ == "__main__":
    flags.mark_flags_as_required(["workdir", "output_dir"])
    app.run(main)
