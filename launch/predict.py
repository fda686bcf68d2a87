r"""Writes an enrolled person's predicted saliency map for an image: a .npy and a PNG overlay.

With STUDY=runs/synthetic_personal_saliency/example_study (a new viewer the main job writes:
README, "Enrol and predict a new person"):

A person enrolled with an embedding (Strohm et al., launch/enroll.py):

    .venv/bin/python launch/predict.py \
        --psm_network=runs/synthetic_personal_saliency/psm_network \
        --embedding=runs/people/alice.npy --image=$STUDY/photo.jpg \
        --output=runs/people/alice_photo

A person enrolled with a multi-task head (Xu et al., launch/enroll.py --method=multi_task_head):

    .venv/bin/python launch/predict.py \
        --multi_task=runs/synthetic_personal_saliency/multi_task \
        --head=runs/people/alice_head.npz --image=$STUDY/photo.jpg \
        --output=runs/people/alice_photo

writes runs/people/alice_photo.npy (the PSM at the working resolution, [0, 1]), alice_photo.png
(overlay) and alice_photo_usm.png (the universal map, for comparison), creating the folder (runs/
is git-ignored). The image has no ground-truth USM: its USM is the universal model's, by default
the one the main job trained beside the given model (`--universal` names another). An additive
discrepancy is composed as the evaluation does, clip(USM + 0.5 x discrepancy, 0.3 x USM, 1):
`--config.usm_floor=0 --config.discrepancy_weight=1` gives the papers' composition.
"""

from pathlib import Path

import runner

import numpy as np
from absl import app, flags
from ml_collections import config_flags

from psm_jax import figures, inference, personalise
from psm_jax.configs import evaluation as evaluation_config

flags.adopt_module_key_flags(runner)  # --verbose shows in --help

_CONFIG = runner.define_config(
    config_flags.DEFINE_config_dict,
    "config",
    evaluation_config.get_config(),
    "The composition, --config.<field>=<value>: --config.usm_floor, --config.discrepancy_weight "
    "(the evaluation config, psm_jax/configs/evaluation.py, whose other fields predict does not "
    "read).",
    fields="psm_jax/configs/evaluation.py's docstring (predict reads usm_floor and "
    "discrepancy_weight)",
)
flags.declare_key_flag("config")  # listed in --help (ml_collections defines it)

_PSM_NETWORK = flags.DEFINE_string("psm_network", None, "The trained PSM network's workdir.")
_EMBEDDING = flags.DEFINE_string("embedding", None, "The person's embedding (launch/enroll.py).")
_MULTI_TASK = flags.DEFINE_string("multi_task", None, "The trained multi-task CNN's workdir.")
_HEAD = flags.DEFINE_string(
    "head", None, "The person's multi-task head (launch/enroll.py --method=multi_task_head)."
)
_UNIVERSAL = flags.DEFINE_string(
    "universal",
    None,
    "The trained universal model's workdir (the image's USM). Default: the universal model the "
    "main job trained beside --psm_network or --multi_task.",
)
_IMAGE = flags.DEFINE_string("image", None, "The image.")
_OUTPUT = flags.DEFINE_string(
    "output",
    None,
    "Output path prefix: <output>.npy (the PSM at the working resolution, e.g. 120x160), "
    "<output>.png and <output>_usm.png (overlays on the image shrunk to at most 1024 px on its "
    "long side).",
)


def main(argv):
    del argv
    strohm = bool(_PSM_NETWORK.value or _EMBEDDING.value)
    xu = bool(_MULTI_TASK.value or _HEAD.value)
    if (
        strohm == xu
        or (strohm and not (_PSM_NETWORK.value and _EMBEDDING.value))
        or (xu and not (_MULTI_TASK.value and _HEAD.value))
    ):
        raise app.UsageError(
            "Give either --psm_network with --embedding, or --multi_task with --head."
        )
    inference.check_composition(_CONFIG.value.usm_floor, _CONFIG.value.discrepancy_weight)
    universal_workdir = _UNIVERSAL.value or inference.universal_beside(
        _PSM_NETWORK.value, _MULTI_TASK.value
    )
    if not universal_workdir:
        raise app.UsageError(
            "The image needs a USM and no universal model was found beside the given workdir: "
            "give --universal (a trained universal model's workdir)."
        )
    universal = inference.restore(universal_workdir, kind="universal")
    if strohm:
        psm_network = inference.restore(_PSM_NETWORK.value, kind="psm_network")
        embedding = personalise.load_embedding(_EMBEDDING.value)
        try:
            embedding = personalise.check_embedding(psm_network, embedding)
        except ValueError as error:
            raise app.UsageError(f"--embedding={_EMBEDDING.value}: {error}") from error
        image, usm, psm = personalise.predict(
            psm_network,
            universal,
            embedding,
            _IMAGE.value,
            _CONFIG.value.usm_floor,
            _CONFIG.value.discrepancy_weight,
        )
    else:
        image, usm, psm = personalise.predict_with_head(
            inference.restore(_MULTI_TASK.value, kind="multi_task"),
            _HEAD.value,
            universal,
            _IMAGE.value,
            _CONFIG.value.usm_floor,
            _CONFIG.value.discrepancy_weight,
        )
    Path(_OUTPUT.value).parent.mkdir(parents=True, exist_ok=True)
    np.save(f"{_OUTPUT.value}.npy", psm)
    native = personalise.read_rgb(_IMAGE.value)
    person = Path(_EMBEDDING.value or _HEAD.value).stem
    method = "embedding network" if strohm else "multi-task CNN head"
    name = Path(_IMAGE.value).name
    figures.save_overlay(
        native, psm, f"{_OUTPUT.value}.png", title=f"{person}'s predicted PSM ({method}), {name}"
    )
    figures.save_overlay(
        native, usm, f"{_OUTPUT.value}_usm.png", title=f"USM (universal network), {name}"
    )
    print(f"Wrote {_OUTPUT.value}.npy, {_OUTPUT.value}.png and {_OUTPUT.value}_usm.png")


if __name__ == "__main__":
    flags.mark_flags_as_required(["image", "output"])
    runner.run(main)
