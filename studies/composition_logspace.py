r"""Non-additive compositions without learning, on the closed set's VALIDATION images (issue 14).

    .venv/bin/python studies/composition_logspace.py --data_dir=<data_dir> \
        --datasets=osie_personal,synthetic_personal_saliency,...

The additive form clip(USM + w D, f USM, 1) with D the observer's mean discrepancy raises CC on
OSIE but lowers SIM and raises KLD at every w and f (docs/results_log.md, 2026-12-02). This asks
whether a per-person form in the density's log space does better, with no network: everything per
observer comes from their TRAINING images only (as the closed set's embedding does), and is scored
on the validation images against the ground-truth USM (difference of means, paired Wilcoxon p, IG).

Forms (USM^g is the USM raised to the power g, then used as a map; every metric normalises):
  global_gamma    USM^g, one g for all observers (chosen on the training pairs by mean KLD);
  person_gamma    USM^g_k, g_k chosen per observer on their training pairs by mean KLD;
  log_ratio w     USM x R_k^w, R_k = (mean PSM_k + e) / (centre bias + e), the observer's
                  spatial preference as a ratio of densities (e = 0.05 x the centre bias's max);
  person_gamma + log_ratio: both, w chosen per observer on the training pairs.
"""

import time

import jax.numpy as jnp
import numpy as np
import study_rows
from absl import app, flags

import tfds_builders
from psm_jax import cli, metrics, xla_defaults
from psm_jax.data import pipeline
from psm_jax.evaluation import pairs, priors, scoring

flags.DEFINE_string("data_dir", None, "Built datasets.", required=True)
flags.DEFINE_list("datasets", ["osie_personal"], "Datasets to score.")
FLAGS = flags.FLAGS

GAMMAS, WEIGHTS = priors.GAMMAS, priors.RATIO_WEIGHTS


def _kld(prediction, target) -> np.ndarray:
    return np.asarray(metrics.kld(jnp.asarray(prediction), jnp.asarray(target)))


def _gamma_klds(usm, psm) -> np.ndarray:
    """(len(GAMMAS), P) KLD of USM^g against each pair's PSM."""
    return np.stack([_kld(np.power(usm, g), psm) for g in GAMMAS])


def _log_ratio(mean_psm, centre):
    eps = priors.RATIO_EPSILON * centre.max()
    return (mean_psm + eps) / (centre + eps)


def _per_observer_best(losses: np.ndarray, observer: np.ndarray, k: int) -> np.ndarray:
    """losses (G, P) -> per observer the index of the lowest mean loss."""
    return np.array([int(np.argmin(losses[:, observer == o].mean(axis=1))) for o in range(k)])


def study(dataset: str) -> None:
    start = time.time()
    train = pairs.evaluation_set(dataset, FLAGS.data_dir, "closed", "train")
    val = pairs.evaluation_set(dataset, FLAGS.data_dir, "closed", "validation")
    k = len(train.observer_ids)
    t_usm, t_psm = train.pair_usm, train.psm
    centre = train.usm.mean(axis=0)
    mean_psm = np.stack([t_psm[train.observer == o].mean(axis=0) for o in range(k)])
    ratios = np.stack([_log_ratio(mean_psm[o], centre) for o in range(k)])

    gamma_losses = _gamma_klds(t_usm, t_psm)
    g_global = GAMMAS[int(np.argmin(gamma_losses.mean(axis=1)))]
    g_person = np.array(GAMMAS)[_per_observer_best(gamma_losses, train.observer, k)]
    ratio_losses = np.stack(
        [
            _kld(
                np.power(t_usm, g_person[train.observer, None, None]) * ratios[train.observer] ** w,
                t_psm,
            )
            for w in WEIGHTS
        ]
    )
    w_person = np.array(WEIGHTS)[_per_observer_best(ratio_losses, train.observer, k)]
    print(
        f"## {dataset}: {len(train.psm)} training pairs, {len(val.psm)} validation pairs, "
        f"{k} observers; global g = {g_global}; per-observer g = {g_person.tolist()}; "
        f"per-observer w = {w_person.tolist()}",
        flush=True,
    )

    v_usm = val.pair_usm
    base = scoring.score(val, v_usm)
    print("| form | CC | SIM | KLD | IG (bits/fix.) |\n|---|---|---|---|---|")

    def show(name, prediction):
        print(study_rows.versus_usm_row(val, base, name, prediction), flush=True)

    gamma = g_person[val.observer, None, None]
    ratio = ratios[val.observer]
    show(f"global gamma ({g_global})", np.power(v_usm, g_global))
    show("per-observer gamma", np.power(v_usm, gamma))
    for w in WEIGHTS[1:]:
        show(f"log ratio, w = {w}", v_usm * ratio**w)
    show(
        "per-observer gamma + log ratio (per-observer w)",
        np.power(v_usm, gamma) * ratio ** w_person[val.observer, None, None],
    )
    # The evaluation's row (`priors.observer_priors`, the same grids and rule): must match.
    source, metadata = pipeline.open_split(dataset, "train", FLAGS.data_dir)
    fitted = priors.observer_priors(source, metadata, "train")
    o = val.observer
    show(
        "the evaluation's density_ratio row",
        priors.density_ratio_map(
            v_usm, fitted.density_ratio[o], fitted.gamma[o], fitted.ratio_weight[o]
        ),
    )
    print(f"({time.time() - start:.0f} s)\n", flush=True)


def main(_):
    for dataset in FLAGS.datasets:
        study(dataset)


if __name__ == "__main__":
    xla_defaults.apply()  # before JAX starts a backend (as the launchers do)
    tfds_builders.register()
    app.run(main, flags_parser=cli.parse_flags)  # --help exits 0
