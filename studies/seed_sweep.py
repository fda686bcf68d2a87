r"""The main job on several synthetic generator draws: do the results hold across draws?

    .venv/bin/python studies/seed_sweep.py --config.data_dir=/tmp/tfds_sweep --workdir=/tmp/sweep
    .venv/bin/python studies/seed_sweep.py --workdir=/tmp/sweep_mean \
        --config.models.embedding.network.pooling=mean   # an option, measured across draws

Runs `launch/main.py`'s job (its config, psm_jax/configs/main.py, with any `--config.` field as
there: quick schedules, default evaluation settings) on
`synthetic_personal_saliency` (seed 0), `/seed1` and `/seed2`, one workdir each below
`--workdir` (a finished stage is reused, so a sweep can be resumed or extended), then prints, per
protocol, the mean +- sd over draws of every row's metrics, each row's difference to the GT USM
with the number of draws where it is significant (paired Wilcoxon p < 0.05) in the right
direction, and the unseen observers' precision@1 at m = 32. Paste the output into RESULTS.md.
"""

import copy
from pathlib import Path

import numpy as np
from absl import app, flags
from ml_collections import config_flags

import tfds_builders
from psm_jax import cli, main_job, metrics, xla_defaults
from psm_jax.configs import synthetic
from psm_jax.evaluation import report, scoring

_CONFIG = config_flags.DEFINE_config_file(
    "config",
    str(Path(__file__).resolve().parents[1] / "psm_jax" / "configs" / "main.py"),
    "The main job's config (psm_jax/configs/main.py); its dataset is each draw in turn.",
)
_WORKDIR = flags.DEFINE_string("workdir", "runs/seed_sweep", "One workdir per draw below it.")
_DATASETS = flags.DEFINE_list(
    "datasets",
    list(synthetic.DRAWS),
    "The draws.",
)


def _summary(tables: list[scoring.Table]) -> str:
    """Mean +- sd over draws per row and metric, and per row the draws where it beats the USM."""
    row_ids = [r for r in tables[0].rows if all(r in t.rows for t in tables)]
    header = "| Row | " + " | ".join(report.HEADERS[m] for m in scoring.METRICS)
    lines = [header + " | IG (bits/fix.) |", "|---|" + "---|" * (len(scoring.METRICS) + 1)]
    for row_id in row_ids:
        cells = []
        for metric in scoring.METRICS:
            means = [t.rows[row_id][metric]["mean"] for t in tables]
            better = sum(
                (t.rows[row_id][metric]["versus_usm"]["difference"] > 0)
                == metrics.HIGHER_IS_BETTER[metric]
                and t.rows[row_id][metric]["versus_usm"]["p"] < 0.05
                for t in tables
            )
            cells.append(f"{np.mean(means):.3f} +- {np.std(means):.3f} ({better}/{len(tables)})")
        gains = [t.rows[row_id][scoring.INFORMATION_GAIN] for t in tables]
        cells.append(f"{np.mean(gains):+.3f} +- {np.std(gains):.3f}")
        lines.append(f"| {tables[0].rows[row_id]['name']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv):
    del argv
    results = {}
    for dataset in _DATASETS.value:
        config = copy.deepcopy(_CONFIG.value)  # its own references (ConfigDict() shares them)
        config.dataset = dataset
        workdir = f"{_WORKDIR.value}/{dataset.replace('/', '_')}"
        results[dataset] = main_job.run(config, workdir)
    print(
        f"\n## Seed sweep: {', '.join(results)}\n\nMean +- sd over the {len(results)} draws; in "
        "brackets, the draws where the row beats the ground-truth USM on that metric with a "
        "paired Wilcoxon p < 0.05.\n"
    )
    for protocol in ("closed", "open"):
        print(f"### {protocol} set\n")
        print(_summary([r["tables"][protocol] for r in results.values()]))
    precision = [r["precision_at_1"][32] for r in results.values()]
    print(
        "Unseen observers' precision@1 at m = 32: "
        + ", ".join(f"{p:.2f}" for p in precision)
        + f" (mean {np.mean(precision):.2f})."
    )


if __name__ == "__main__":
    xla_defaults.apply()  # before JAX starts a backend (as the launchers do)
    tfds_builders.register()
    app.run(main, flags_parser=cli.parse_flags)  # --help exits 0
