"""The embedding network against each baseline without learning, pair by pair (issue 14).

    .venv/bin/python studies/versus_baselines.py --run=<main-job workdir> [--protocol=closed]

Issue 14 asks that the embedding network beat the ground-truth USM *and* the baselines without
learning (paired p < 0.05); the report gives each row against the USM only. This restores the
run's encoder and PSM network, predicts the rows on the run's test pairs as the evaluation does
(`psm_jax.evaluation.methods`, default settings), and prints, per baseline, the embedding row's
difference of the means and the paired Wilcoxon p on CC, SIM and KLD.
"""

from absl import app, flags

import tfds_builders
from psm_jax import cli, xla_defaults
from psm_jax.configs import evaluation as evaluation_config
from psm_jax.evaluation import evaluators, methods, pairs, scoring

_RUN = flags.DEFINE_string("run", None, "The main job's workdir.", required=True)
_PROTOCOL = flags.DEFINE_enum("protocol", "closed", list(pairs.PROTOCOLS), "Observers scored.")


def main(_):
    models = methods.Models.restore(
        {"embedding": f"{_RUN.value}/embedding", "psm_network": f"{_RUN.value}/psm_network"}
    )
    context = evaluators.Context(models, evaluation_config.get_config(), f"{_RUN.value}/report")
    rows, scores = context.rows(_PROTOCOL.value), context.scores(_PROTOCOL.value)
    evaluation = context.evaluation_set(_PROTOCOL.value)
    ours = scores[methods.EMBEDDING]
    print(f"{context.dataset}, {_PROTOCOL.value} set, {len(evaluation.image)} pairs")
    print("| embedding network against | CC diff. (p) | SIM diff. (p) | KLD diff. (p) |")
    print("|---|---|---|---|")
    for row in rows:
        if row.id not in methods.BASELINES + (methods.GT_USM,):
            continue
        cells = []
        for metric in ("cc", "sim", "kld"):
            versus = scoring.versus_usm(ours[metric], scores[row.id][metric])
            cells.append(f"{versus['difference']:+.4f} ({versus['p']:.1g})")
        print(f"| {row.name} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    xla_defaults.apply()  # before JAX starts a backend (as the launchers do)
    tfds_builders.register()
    app.run(main, flags_parser=cli.parse_flags)  # --help exits 0
