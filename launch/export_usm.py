r"""Writes a trained universal network's USM of every image of a dataset, one .npy per image.

    .venv/bin/python launch/export_usm.py --workdir=runs/osie_personal/universal \
        --output_dir=runs/osie_personal/predicted_usm

The folder is what `--config.usm=external --config.external_usm_dir=...` (the "predicted" config
option) reads: `<image stem>.npy`, the map at the working resolution in [0, 1].
"""

from pathlib import Path

import runner

from absl import app, flags

from psm_jax import inference

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
    output = Path(_OUTPUT_DIR.value)
    if output.is_dir() and not any(output.iterdir()):
        output.rmdir()  # an empty folder made for it
    elif output.exists():
        raise app.UsageError(f"--output_dir={output} exists and is not empty; give a new folder.")
    inference.export_usms(universal, output, batch_size=_BATCH.value)
    print(f"Wrote the USMs of {universal.config.dataset} to {output}")


if __name__ == "__main__":
    flags.mark_flags_as_required(["workdir", "output_dir"])
    runner.run(main)
