r"""The composition's discrepancy weight, chosen on VALIDATION images for every personalised row.

    .venv/bin/python studies/composition_study.py --data_dir=/tmp/tfds --runs=/tmp/sweep \
        --weights=0.25,0.5,0.75,1

Predicted PSM = clip(USM + w x predicted discrepancy, usm_floor x USM, 1); w = 1 is the papers'
composition. For each draw (`--datasets`) it restores the main job's trained models from
`--runs/<draw>/<model>` (the seed sweep's layout; the universal network is not needed) and scores
the closed set on the validation images (the test images stay for the main job's tables) at each
weight: every personalised row against the ground-truth USM (difference of the means, paired
Wilcoxon p) on CC, SIM and KLD. Prints one markdown table for RESULTS.md.
"""

import copy
import json
from pathlib import Path

from absl import app, flags

import tfds_builders
from psm_jax import cli, xla_defaults
from psm_jax.configs import evaluation as evaluation_configs
from psm_jax.configs import synthetic
from psm_jax.evaluation import evaluators, methods

_DATA_DIR = flags.DEFINE_string("data_dir", "data/tfds", "Where the datasets are built.")
_RUNS = flags.DEFINE_string("runs", None, "Main-job workdirs, one per draw.", required=True)
_DATASETS = flags.DEFINE_list("datasets", list(synthetic.DRAWS), "The draws.")
_WEIGHTS = flags.DEFINE_list("weights", ["0.25", "0.5", "0.75", "1"], "Discrepancy weights.")
_OUTPUT = flags.DEFINE_string("output", None, "Also write the results as JSON here.")

_MODELS = ("embedding", "psm_network", "multi_task", "per_observer")
_METRICS = ("cc", "sim", "kld")


def main(argv):
    del argv
    floor = evaluation_configs.get_config().usm_floor
    results = []
    print("| draw | row | w | CC diff. (p) | SIM diff. (p) | KLD diff. (p) |")
    print("|---|---|---|---|---|---|")
    for dataset in _DATASETS.value:
        run = Path(_RUNS.value) / dataset.replace("/", "_")
        workdirs = {m: str(run / m) for m in _MODELS if (run / m).exists()}
        if not workdirs:
            raise ValueError(f"{run}: none of {_MODELS} is there.")
        models = methods.Models.restore(workdirs)
        settings = evaluation_configs.get_config()
        settings.split, settings.usm_floor, settings.m = "validation", floor, 32
        context = evaluators.Context(models, settings, run / "composition_study")
        for weight in map(float, _WEIGHTS.value):
            settings = copy.deepcopy(settings)
            settings.discrepancy_weight = weight
            table = context.with_config(settings).table("closed")
            for row_id, row in table.rows.items():
                if row_id in (methods.GT_USM, methods.CENTRE_BIAS, methods.PRIOR_BLEND):
                    continue
                versus = {m: row[m]["versus_usm"] for m in _METRICS}
                results.append({"dataset": dataset, "row": row_id, "weight": weight, **versus})
                cells = " | ".join(
                    f"{v['difference']:+.4f} ({v['p']:.2g})" for v in versus.values()
                )
                print(f"| {dataset} | {row['name']} | {weight:g} | {cells} |", flush=True)
    if _OUTPUT.value:
        Path(_OUTPUT.value).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    xla_defaults.apply()  # before JAX starts a backend (as the launchers do)
    tfds_builders.register()
    app.run(main, flags_parser=cli.parse_flags)  # --help exits 0
