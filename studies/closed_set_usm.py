r"""How much of the closed-set ground-truth USM is the scored observer's own map? Validation images.

    .venv/bin/python studies/closed_set_usm.py --data_dir=/tmp/tfds \
        --datasets=osie_personal,synthetic_personal_saliency

The ground-truth USM is the mean PSM of the split's training observers
(`saliency_maps.universal_saliency_maps`, mode "train"). In the open set the scored observers are
test observers, never among them; in the closed set the scored observer IS one of the n training
observers, so the USM every row is compared with (and every personalised model gets as input)
holds 1/n of the very map it is scored against. This prints, per draw, on the closed-set
validation pairs:

1. the USM as the evaluation builds it against the same USM without the scored observer
   ((n USM - PSM) / (n - 1): leave-self-out), CC / SIM / KLD against the observer's PSM;
2. USM + lambda x the observer's mean discrepancy over the training images (the
   "USM + observer's mean discrepancy" baseline, clip(., 0.3 USM, 1) as the evaluation composes),
   as a difference from its own USM, in both settings: does the personal signal show more
   clearly without the leak?
3. the observer-prior blend's weight a (a USM + (1 - a) mean PSM, chosen per observer by KLD on
   the training images, `evaluation.priors`) chosen with each USM, and the blend's difference
   from the evaluation's USM (paired Wilcoxon p).
"""

import numpy as np
from absl import app, flags

import tfds_builders
from psm_jax import cli, metrics, xla_defaults
from psm_jax.configs import synthetic
from psm_jax.data import pipeline
from psm_jax.evaluation import pairs, priors

_DATA_DIR = flags.DEFINE_string("data_dir", "data/tfds", "Where the datasets are built.")
_DATASETS = flags.DEFINE_list(
    "datasets", list(synthetic.DRAWS) + ["osie_personal"], "The draws (built beforehand)."
)
_FLOOR = 0.3  # the evaluation's composition floor (psm_jax/configs/evaluation.py)


def _scores(prediction, psm) -> list[np.ndarray]:
    return [np.asarray(f(prediction, psm)) for f in (metrics.cc, metrics.sim, metrics.kld)]


def _leave_self_out(usm, psm, n):
    return np.clip((n * usm - psm) / np.maximum(n - 1, 1), 0.0, None).astype(np.float32)


def _training_maps(dataset: str):
    """Per training observer: (PSMs, USMs, leave-self-out USMs) over the training images."""
    source, metadata = pipeline.open_split(dataset, "train", _DATA_DIR.value)
    group = metadata.observers("train")
    maps = {k: ([], [], []) for k in range(len(group))}
    for index in range(len(source)):
        psm, valid, usm = pipeline.ground_truth_maps(source[index], metadata)
        if usm is None:
            continue
        n = valid[group].sum()
        for k, o in enumerate(group):
            if valid[o]:
                for into, value in zip(
                    maps[k], (psm[o], usm, _leave_self_out(usm, psm[o], n)), strict=True
                ):
                    into.append(value)
    return [tuple(np.stack(v) for v in maps[k]) for k in range(len(group))]


def main(argv):
    del argv
    for dataset in _DATASETS.value:
        training = _training_maps(dataset)
        evaluation = pairs.evaluation_set(dataset, _DATA_DIR.value, "closed", "validation")
        # Contributors per image = the training observers with a usable map there: the
        # closed-set pairs of the image (a pair needs a valid PSM and a fixation).
        n = np.bincount(evaluation.image).astype(np.float32)[evaluation.image][:, None, None]
        usms = {
            "with self": evaluation.pair_usm,
            "leave-self-out": _leave_self_out(evaluation.pair_usm, evaluation.psm, n),
        }
        print(
            f"## {dataset}: {len(evaluation.psm)} closed-set validation pairs, n = "
            f"{sorted(set(n.ravel().astype(int).tolist()))} training observers per image"
        )
        print(
            "| USM | CC | SIM | KLD | USM + l x mean discrepancy, l = 0.25 / 0.5 / 1: "
            "CC; SIM; KLD difference |"
        )
        print("|---|---|---|---|---|")
        for setting, usm in usms.items():
            base = _scores(usm, evaluation.psm)
            index = 1 if setting == "with self" else 2
            mean_discrepancy = np.stack([(maps[0] - maps[index]).mean(0) for maps in training])
            cells = []
            for metric in range(3):
                differences = []
                for weight in (0.25, 0.5, 1.0):
                    personal = usm + weight * mean_discrepancy[evaluation.observer]
                    prediction = np.clip(personal, _FLOOR * usm, 1.0)
                    score = _scores(prediction, evaluation.psm)[metric]
                    differences.append(f"{score.mean() - base[metric].mean():+.4f}")
                cells.append(" / ".join(differences))
            print(
                f"| {setting} | "
                + " | ".join(f"{b.mean():.4f}" for b in base)
                + " | "
                + "; ".join(cells)
                + " |"
            )
        base = _scores(evaluation.pair_usm, evaluation.psm)
        for setting, index in (("with self", 1), ("leave-self-out", 2)):
            weights = np.array(
                [priors._best_blend(maps[0], maps[index], maps[0].mean(0)) for maps in training],
                np.float32,
            )
            mean_psm = np.stack([maps[0].mean(0) for maps in training])
            blended = priors.blend(
                evaluation.pair_usm, mean_psm[evaluation.observer], weights[evaluation.observer]
            )
            cells = [
                f"{name} {s.mean() - b.mean():+.4f} (p {metrics.wilcoxon_p(s, b):.2g})"
                for name, s, b in zip(
                    ("CC", "SIM", "KLD"), _scores(blended, evaluation.psm), base, strict=True
                )
            ]
            print(
                f"blend a chosen {setting}: a = {[f'{w:.1f}' for w in weights]}; against the "
                "evaluation's USM: " + ", ".join(cells)
            )
        print(flush=True)


if __name__ == "__main__":
    xla_defaults.apply()  # before JAX starts a backend (as the launchers do)
    tfds_builders.register()
    app.run(main, flags_parser=cli.parse_flags)  # --help exits 0
