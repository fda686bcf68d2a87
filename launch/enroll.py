"""Enrols a new person: their user embedding from m (image, fixations) pairs, no retraining.

    python launch/enroll.py --encoder_workdir=runs/synthetic_personal_saliency/embedding \
        --images_dir=my_study/images --fixations=my_study/alice.csv --output=alice.npy

The fixation table is a CSV with columns image, x, y and optionally duration_ms (native 0-based
pixel centres; image = a file name in --images_dir), one person per file.
"""

import numpy as np
from absl import app, flags

from psm_jax import personalise

_ENCODER = flags.DEFINE_string("encoder_workdir", None, "The trained embedding encoder's workdir.")
_IMAGES = flags.DEFINE_string("images_dir", None, "Folder of the images the fixations refer to.")
_FIXATIONS = flags.DEFINE_string("fixations", None, "CSV: image, x, y[, duration_ms].")
_OUTPUT = flags.DEFINE_string("output", None, "Where the embedding (.npy) goes.")
_SIGMA = flags.DEFINE_float("sigma_px", None, "PSM blur in native pixels (default: OSIE's rule).")


def main(argv):
    del argv
    images, psms, names = personalise.read_viewer(
        _IMAGES.value, _FIXATIONS.value, sigma_px=_SIGMA.value
    )
    embedding = personalise.enroll(_ENCODER.value, images, psms)
    np.save(_OUTPUT.value, embedding)
    print(
        f"Embedding of {len(names)} (image, PSM) pairs ({embedding.shape[0]}-d) -> {_OUTPUT.value}"
    )


if __name__ == "__main__":
    flags.mark_flags_as_required(["encoder_workdir", "images_dir", "fixations", "output"])
    app.run(main)
