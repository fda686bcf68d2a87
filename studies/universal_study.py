r"""Universal-model variants side by side, scored on VALIDATION images (issue 39).

    .venv/bin/python studies/universal_study.py --dataset=osie_personal --data_dir=/tmp/tfds_osie \
        --workdir=/tmp/universal_study \
        --variants='lite0_384:network.backbone=efficientnet_lite0' \
        --variants='lite0_240:network.backbone=efficientnet_lite0,network.input_size=(240,320)'

Trains the main job's universal model (`psm_jax.configs.main.training_config`, the dataset's quick
schedule) once per variant (`name:path=value,...`, fields of that config as `launch/train.py`
takes them after `--config.`; a finished workdir is reused) and scores its predicted USM on the
closed set's VALIDATION images (the training observers' PSMs; the test images stay for the main
job's tables): CC, SIM and KLD against each observer's PSM beside the ground-truth USM and the
centre bias, and the mean per-image CC between the predicted and the ground-truth USM. Prints one
markdown table for RESULTS.md.
"""

import json
import time
from pathlib import Path

import numpy as np
import variants
from absl import app, flags

import tfds_builders
from psm_jax import cli, metrics, xla_defaults
from psm_jax.configs import evaluation as evaluation_configs
from psm_jax.configs import main as main_configs
from psm_jax.data import datasets
from psm_jax.evaluation import evaluators, methods
from psm_jax.train import loop

_DATASET = flags.DEFINE_string("dataset", "osie_personal", "The dataset.")
_DATA_DIR = flags.DEFINE_string("data_dir", "data/tfds", "Where the datasets are built.")
_MANUAL_DIR = flags.DEFINE_string("manual_dir", None, "The release, if not yet built.")
_WORKDIR = flags.DEFINE_string("workdir", "runs/universal_study", "One workdir per variant.")
_VARIANTS = flags.DEFINE_multi_string(
    "variants", ["small:"], "name:path=value,... fields of the universal model's config."
)
_OUTPUT = flags.DEFINE_string("output", None, "Also write the results as JSON here.")

_METRICS = ("cc", "sim", "kld")


def main(argv):
    del argv
    dataset = _DATASET.value
    datasets.build_dataset(dataset, data_dir=_DATA_DIR.value, manual_dir=_MANUAL_DIR.value)
    settings = evaluation_configs.get_config()
    settings.split, settings.protocols = "validation", ("closed",)
    rows = []
    for text in _VARIANTS.value:
        name, fields = variants.parse(text)
        config = main_configs.training_config(dataset, "universal")
        config.data_dir = _DATA_DIR.value
        variants.apply(config, fields)
        workdir = Path(_WORKDIR.value) / dataset.replace("/", "_") / name
        start = time.perf_counter()
        loop.train_and_evaluate(config, workdir)
        seconds = time.perf_counter() - start
        models = methods.Models.restore({"universal": str(workdir)})
        context = evaluators.Context(models, settings, workdir / "validation")
        table = context.table("closed")
        evaluation = context.evaluation_set("closed")
        predicted = next(r.psm for r in context.rows("closed") if r.id == methods.PREDICTED_USM)
        first = np.unique(evaluation.image, return_index=True)[1]  # one pair per image
        agreement = float(np.mean(metrics.cc(predicted[first], evaluation.pair_usm[first])))
        result = {"variant": name, "fields": fields, "train_seconds": seconds}
        for row_id in (methods.GT_USM, methods.PREDICTED_USM, methods.CENTRE_BIAS):
            for metric in _METRICS:
                result[f"{row_id}/{metric}"] = table.mean(row_id, metric)
        result["cc_with_gt_usm"] = agreement
        rows.append(result)
        print(json.dumps(rows[-1]), flush=True)
    print(
        f"{dataset}, closed set, validation images: each row's CC / SIM / KLD against the "
        "observers' PSMs\n"
    )
    print("| variant | predicted USM | GT USM | centre bias | CC(predicted, GT USM) | train s |")
    print("|---|---|---|---|---|---|")
    for r in rows:

        def cells(row_id, r=r):
            return " / ".join(f"{r[f'{row_id}/{m}']:.3f}" for m in _METRICS)

        print(
            f"| {r['variant']} | {cells(methods.PREDICTED_USM)} | {cells(methods.GT_USM)} | "
            f"{cells(methods.CENTRE_BIAS)} | {r['cc_with_gt_usm']:.3f} | "
            f"{r['train_seconds']:.0f} |"
        )
    if _OUTPUT.value:
        Path(_OUTPUT.value).write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    xla_defaults.apply()  # before JAX starts a backend (as the launchers do)
    tfds_builders.register()
    app.run(main, flags_parser=cli.parse_flags)  # --help exits 0
