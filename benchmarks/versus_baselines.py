"""The embedding network against each baseline without learning, pair by pair (issue 14).

    python benchmarks/versus_baselines.py --run=<main-job workdir> [--protocol=closed]

Issue 14 asks that the embedding network beat the ground-truth USM *and* the baselines without
learning (paired p < 0.05); the report gives each row against the USM only. This restores the
run's encoder and PSM network, predicts the rows on the run's test pairs as the evaluation does
(`psm_jax.evaluation.methods`, default settings), and prints, per baseline, the embedding row's
difference of the means and the paired Wilcoxon p on CC, SIM and KLD.
"""

from absl import app, flags

import tfds_builders  # noqa: F401
from psm_jax import inference
from psm_jax.configs import evaluation as evaluation_config
from psm_jax.evaluation import methods, pairs, report

_RUN = flags.DEFINE_string("run", None, "The main job's workdir.", required=True)
_PROTOCOL = flags.DEFINE_enum("protocol", "closed", list(pairs.PROTOCOLS), "Observers scored.")


def main(_):
    settings = evaluation_config.get_config()
    encoder = inference.restore(f"{_RUN.value}/embedding")
    config = encoder.config
    evaluation = pairs.evaluation_set(
        config.dataset, config.data_dir, _PROTOCOL.value, settings.split
    )
    models = methods.Models.restore(
        {"embedding": f"{_RUN.value}/embedding", "psm_network": f"{_RUN.value}/psm_network"}
    )
    rows = methods.predict_rows(
        evaluation,
        models,
        usm_floor=settings.usm_floor,
        m=settings.m,
        discrepancy_weight=settings.discrepancy_weight,
    )
    scores = {row.id: report.score(evaluation, row.psm) for row in rows}
    ours = scores[methods.EMBEDDING]
    print(f"{config.dataset}, {_PROTOCOL.value} set, {len(evaluation.image)} pairs")
    print("| embedding network against | CC diff. (p) | SIM diff. (p) | KLD diff. (p) |")
    print("|---|---|---|---|")
    for row in rows:
        if row.id not in methods.BASELINES + (methods.GT_USM,):
            continue
        cells = []
        for metric in ("cc", "sim", "kld"):
            versus = report.versus_usm(ours[metric], scores[row.id][metric])
            cells.append(f"{versus['difference']:+.4f} ({versus['p']:.1g})")
        print(f"| {row.name} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    app.run(main)
