r"""Does the PSM network personalise on every draw? Variants side by side, on VALIDATION images.

    .venv/bin/python studies/psm_network_study.py --data_dir=/tmp/tfds_sweep2 --runs=/tmp/sweep2 \
        --workdir=/tmp/psm_study --variants='relu:' \
        --variants='leaky:network.dynamic_activation=leaky_relu'

For each draw (`--datasets`) and variant (`name:field=value,...` overrides of the main job's PSM
network config; `network.<field>` for architecture fields), trains the PSM network on the
encoder of a finished main job (`--runs/<draw>/embedding`, e.g. the seed sweep's) and scores the
closed set on the validation images (the test images stay for the main job's tables): the
embedding network and the shuffled-embedding control against the ground-truth USM (difference of
the means, paired Wilcoxon p) on CC, SIM and KLD, and the embedding-generated layer's live units.
Prints one markdown table for RESULTS.md.
"""

import json
import time
from pathlib import Path

import variants
from absl import app, flags

import tfds_builders
from psm_jax import cli, xla_defaults
from psm_jax.configs import evaluation as evaluation_configs
from psm_jax.configs import main as main_configs
from psm_jax.configs import synthetic
from psm_jax.evaluation import evaluators, methods
from psm_jax.train import loop

_DATA_DIR = flags.DEFINE_string("data_dir", "data/tfds", "Where the datasets are built.")
_RUNS = flags.DEFINE_string("runs", None, "Main-job workdirs, one per draw (the encoders).")
_WORKDIR = flags.DEFINE_string("workdir", "runs/psm_network_study", "One workdir per run.")
_DATASETS = flags.DEFINE_list(
    "datasets",
    list(synthetic.DRAWS),
    "The draws.",
)
_VARIANTS = flags.DEFINE_multi_string("variants", ["relu:"], "name:field=value,... overrides.")
_OUTPUT = flags.DEFINE_string("output", None, "Also write the results as JSON here.")
_WEIGHT = flags.DEFINE_float(
    "discrepancy_weight",
    1.0,
    "The composition's discrepancy weight (1: the papers', what the studies in RESULTS.md until "
    "2026-12-01 used; the evaluation's default is psm_jax/configs/evaluation.py's).",
)


def main(argv):
    del argv
    rows = []
    for dataset in _DATASETS.value:
        run = Path(_RUNS.value) / dataset.replace("/", "_")
        for text in _VARIANTS.value:
            name, fields = variants.parse(text)
            config = main_configs.training_config(dataset, "psm_network")
            config.data_dir = _DATA_DIR.value
            config.encoder_workdir = str(run / "embedding")
            variants.apply(config, fields)
            workdir = Path(_WORKDIR.value) / dataset.replace("/", "_") / name
            start = time.perf_counter()
            loop.train_and_evaluate(config, workdir)
            seconds = time.perf_counter() - start
            models = methods.Models.restore(
                {"embedding": str(run / "embedding"), "psm_network": str(workdir)}
            )
            evaluation = evaluation_configs.get_config()
            evaluation.split = "validation"
            evaluation.usm_floor, evaluation.m = 0.3, 32
            evaluation.discrepancy_weight = _WEIGHT.value
            context = evaluators.Context(models, evaluation, workdir / "validation")
            table = context.table("closed")
            vectors, _ = context.observer_embeddings("train")
            activity = methods.psm_network_activity(
                context.evaluation_set("closed"), models, vectors
            )
            result = {"dataset": dataset, "variant": name, "train_seconds": seconds}
            for row_id in (methods.OURS, methods.EMBEDDING_SHUFFLED):
                for metric in ("cc", "sim", "kld"):
                    result[f"{row_id}/{metric}"] = table.rows[row_id][metric]["versus_usm"]
            result["live_dynamic"] = activity.get("live_units/dynamic")
            rows.append(result)
            print(json.dumps(rows[-1]), flush=True)
    print(
        "| draw | variant | CC diff. (p) | SIM diff. (p) | KLD diff. (p) | control CC / KLD "
        "diff. | dynamic live | train s |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        cells = [
            f"{r[f'embedding/{m}']['difference']:+.4f} ({r[f'embedding/{m}']['p']:.2g})"
            for m in ("cc", "sim", "kld")
        ]
        control = (
            f"{r['embedding_shuffled/cc']['difference']:+.4f} / "
            f"{r['embedding_shuffled/kld']['difference']:+.4f}"
        )
        print(
            f"| {r['dataset'].split('/')[-1]} | {r['variant']} | "
            + " | ".join(cells)
            + f" | {control} | {100 * (r['live_dynamic'] or 0):.1f}% | {r['train_seconds']:.0f} |"
        )
    if _OUTPUT.value:
        Path(_OUTPUT.value).write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    flags.mark_flags_as_required(["runs"])
    xla_defaults.apply()  # before JAX starts a backend (as the launchers do)
    tfds_builders.register()
    app.run(main, flags_parser=cli.parse_flags)  # --help exits 0
