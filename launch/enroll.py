r"""Enrols a new person from m of their (image, fixations) pairs.

With STUDY=runs/synthetic_personal_saliency/example_study (a new viewer the main job writes:
README, "Enrol and predict a new person"):

Strohm et al.'s path (the default), no retraining: their user embedding from the trained encoder.
The main job's encoder reads each pair's departure from the USM, so it also needs the USMs of the
person's images, which have none but the universal model's: by default the one the main job
trained beside the encoder (`--universal` names another); an encoder with the papers' PSM input
needs none.

    .venv/bin/python launch/enroll.py \
        --encoder_workdir=runs/synthetic_personal_saliency/embedding \
        --images_dir=$STUDY/images --fixations=$STUDY/viewer.csv --output=runs/people/alice.npy

Xu et al.'s path: a new head of the trained multi-task CNN, fitted to the person's pairs with the
shared layers frozen (a few hundred SGD steps; the USMs come from the universal network).

    .venv/bin/python launch/enroll.py --method=multi_task_head \
        --multi_task_workdir=runs/synthetic_personal_saliency/multi_task \
        --images_dir=$STUDY/images --fixations=$STUDY/viewer.csv \
        --output=runs/people/alice_head.npz

The fixation table is a CSV (or Parquet) with columns image, x, y and optionally duration_ms and
subject (native 0-based pixel centres; image = a file name in --images_dir); a table of several
people needs --subject. Fixations with a NaN coordinate are dropped and those outside the image
clipped, as the dataset builders do, and both are counted in a warning.
"""

from pathlib import Path

import runner

import numpy as np
from absl import app, flags

from psm_jax import inference, personalise

flags.adopt_module_key_flags(runner)  # --verbose shows in --help

_METHOD = flags.DEFINE_enum(
    "method",
    "embedding",
    ["embedding", "multi_task_head"],
    "embedding: Strohm et al.'s user embedding (.npy); multi_task_head: Xu et al.'s new head of "
    "the multi-task CNN (.npz).",
)
_ENCODER = flags.DEFINE_string("encoder_workdir", None, "The trained embedding encoder's workdir.")
_MULTI_TASK = flags.DEFINE_string(
    "multi_task_workdir", None, "multi_task_head: the trained multi-task CNN's workdir."
)
_UNIVERSAL = flags.DEFINE_string(
    "universal",
    None,
    "The trained universal model's workdir (the USMs of the person's images): for "
    "multi_task_head, and for an encoder trained on departures from the USM. Default: the "
    "universal model the main job trained beside the encoder or the multi-task CNN.",
)
_STEPS = flags.DEFINE_integer("steps", 200, "multi_task_head: SGD steps on the person's pairs.")
_LEARNING_RATE = flags.DEFINE_float("learning_rate", 0.02, "multi_task_head: SGD learning rate.")
_IMAGES = flags.DEFINE_string("images_dir", None, "Folder of the images the fixations refer to.")
_FIXATIONS = flags.DEFINE_string(
    "fixations", None, "CSV or Parquet: image, x, y[, duration_ms][, subject]."
)
_SUBJECT = flags.DEFINE_string("subject", None, "The person, when the table holds several.")
_OUTPUT = flags.DEFINE_string("output", None, "Where the embedding (.npy) or head (.npz) goes.")
_SIGMA = flags.DEFINE_float("sigma_px", None, "PSM blur in native pixels (default: OSIE's rule).")

_NEEDS = {"embedding": ("encoder_workdir",), "multi_task_head": ("multi_task_workdir",)}


def universal_workdir() -> str:
    """--universal, or the universal model beside the given encoder or multi-task CNN; a
    UsageError when there is none."""
    found = _UNIVERSAL.value or inference.universal_beside(_ENCODER.value, _MULTI_TASK.value)
    if not found:
        raise app.UsageError(
            "The person's images need USMs and no universal model was found beside the given "
            "workdir: give --universal (a trained universal model's workdir)."
        )
    return str(found)


def main(argv):
    del argv
    missing = [name for name in _NEEDS[_METHOD.value] if not flags.FLAGS[name].value]
    if missing:
        raise app.UsageError(
            f"--method={_METHOD.value} needs " + ", ".join(f"--{name}" for name in missing)
        )
    if _METHOD.value == "multi_task_head":  # before any file is read or model restored
        personalise.check_adaptation(_STEPS.value, _LEARNING_RATE.value)
    Path(_OUTPUT.value).parent.mkdir(parents=True, exist_ok=True)  # e.g. runs/people/
    images, psms, names = personalise.read_viewer(
        _IMAGES.value, _FIXATIONS.value, subject=_SUBJECT.value, sigma_px=_SIGMA.value
    )
    if _METHOD.value == "embedding":
        encoder = inference.restore(_ENCODER.value, kind="embedding")
        usms = None
        if encoder.model.needs_usms:
            universal = inference.restore(universal_workdir(), kind="universal")
            usms = personalise.viewer_usms(universal, _IMAGES.value, names)
        embedding = personalise.enroll(encoder, images, psms, usms)
        output = _OUTPUT.value if _OUTPUT.value.endswith(".npy") else _OUTPUT.value + ".npy"
        np.save(output, embedding)  # np.save would append .npy itself; this names the file
        print(f"Embedding of {len(names)} (image, PSM) pairs ({embedding.shape[0]}-d) -> {output}")
        return
    universal = inference.restore(universal_workdir(), kind="universal")
    person, history = personalise.enroll_multi_task_head(
        inference.restore(_MULTI_TASK.value, kind="multi_task"),
        universal,
        images,
        psms,
        personalise.viewer_usms(universal, _IMAGES.value, names),
        steps=_STEPS.value,
        learning_rate=_LEARNING_RATE.value,
    )
    output = personalise.save_head(person, _OUTPUT.value)
    print(
        f"Multi-task head fitted to {len(names)} (image, PSM) pairs in {_STEPS.value} steps "
        f"(loss {history[:10].mean():.5f} -> {history[-10:].mean():.5f}) -> {output}"
    )


if __name__ == "__main__":
    flags.mark_flags_as_required(["images_dir", "fixations", "output"])
    runner.run(main)
