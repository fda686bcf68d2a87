"""Writes an enrolled person's predicted saliency map for an image: a .npy and a PNG overlay.

    python launch/predict.py --psm_network=runs/synthetic_personal_saliency/psm_network \
        --universal=runs/synthetic_personal_saliency/universal --embedding=alice.npy \
        --image=photo.jpg --output=alice_photo

writes alice_photo.npy (the PSM at the working resolution, [0, 1]), alice_photo.png (overlay) and
alice_photo_usm.png (the universal map, for comparison).
"""

import numpy as np
from absl import app, flags

from psm_jax import personalise

_PSM_NETWORK = flags.DEFINE_string("psm_network", None, "The trained PSM network's workdir.")
_UNIVERSAL = flags.DEFINE_string("universal", None, "The trained universal network's workdir.")
_EMBEDDING = flags.DEFINE_string("embedding", None, "The person's embedding (launch/enroll.py).")
_IMAGE = flags.DEFINE_string("image", None, "The image.")
_OUTPUT = flags.DEFINE_string("output", None, "Output path prefix.")


def main(argv):
    del argv
    embedding = np.load(_EMBEDDING.value)
    image, usm, psm = personalise.predict(
        _PSM_NETWORK.value, _UNIVERSAL.value, embedding, _IMAGE.value
    )
    np.save(f"{_OUTPUT.value}.npy", psm)
    personalise.save_overlay(image, psm, f"{_OUTPUT.value}.png")
    personalise.save_overlay(image, usm, f"{_OUTPUT.value}_usm.png")
    print(f"Wrote {_OUTPUT.value}.npy, {_OUTPUT.value}.png and {_OUTPUT.value}_usm.png")


if __name__ == "__main__":
    flags.mark_flags_as_required(["psm_network", "universal", "embedding", "image", "output"])
    app.run(main)
