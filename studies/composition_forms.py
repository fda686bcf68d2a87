r"""The composition's form on the closed-set VALIDATION images (issue 14; exploration, 2026-12-02).

    .venv/bin/python studies/composition_forms.py --run=<main-job workdir> --data_dir=<data_dir> \
        --dataset=osie_personal

Restores the run's encoder and PSM network, predicts the raw discrepancies of the training
observers on the validation images (own embedding and another observer's), takes the
observer's mean discrepancy over their training images (the baseline without learning), and
scores clip(USM + w D, f USM, 1) for w in {0.1, 0.25, 0.5} and f in {0.3, 0.8, 1} against the
ground-truth USM (difference, paired Wilcoxon p; information gain). Results: docs/results_log.md.

With `--psm_networks=<workdir>,...` (2026-12-03) it scores those PSM networks instead, each in the
composition it was trained with (`psm_jax.inference.compose`; "log_ratio" networks multiply the
USM by exp(w s D)) at w in {0.5, 1}, own and another observer's embedding, beside the density-ratio
baseline (`psm_jax.evaluation.priors`, USM^g x the observer's density ratio^w).
"""

import numpy as np
import study_rows
from absl import app, flags

import tfds_builders
from psm_jax import cli, inference, xla_defaults
from psm_jax.data import pipeline
from psm_jax.evaluation import methods, pairs, scoring
from psm_jax.evaluation import priors as priors_lib

flags.DEFINE_string("run", None, "")
flags.DEFINE_string("data_dir", None, "")
flags.DEFINE_string("dataset", "osie_personal", "")
flags.DEFINE_string("split", "validation", "")
flags.DEFINE_list("psm_networks", [], "PSM network workdirs to score in their own composition.")
FLAGS = flags.FLAGS


def networks(_):
    """`--psm_networks`: each network in its own composition, and the density-ratio baseline."""
    encoder = inference.restore(f"{FLAGS.run}/embedding")
    ev = pairs.evaluation_set(FLAGS.dataset, FLAGS.data_dir, "closed", FLAGS.split)
    source, metadata = pipeline.open_split(ev.dataset, "train", ev.data_dir)
    emb = inference.embed_observers(encoder, source, metadata, group=ev.group, m=32)[:, 0]
    usm = ev.pair_usm
    base = scoring.score(ev, usm)
    another = np.roll(np.arange(len(emb)), -1)[ev.observer]

    def show(name, prediction):
        print(study_rows.versus_usm_row(ev, base, name, prediction), flush=True)

    print(f"{len(usm)} {FLAGS.split} pairs\n| row | CC | SIM | KLD | IG |\n|---|---|---|---|---|")
    pri = priors_lib.observer_priors(source, metadata, ev.group, None)
    o = ev.observer
    show(
        "density ratio (no learning)",
        priors_lib.density_ratio_map(usm, pri.density_ratio[o], pri.gamma[o], pri.ratio_weight[o]),
    )
    for workdir in FLAGS.psm_networks:
        model = inference.restore(workdir)
        form, scale = model.composition
        d_own = inference.predict_discrepancy(model, ev.pair_images, usm, emb[o])
        d_other = inference.predict_discrepancy(model, ev.pair_images, usm, emb[another])
        print(f"{workdir}: {form}, raw output std {d_own.std():.4f}", flush=True)
        for w in (0.5, 1.0):
            for name, d in (("", d_own), (", another's embedding", d_other)):
                show(f"{form} w={w}{name}", inference.compose_psm(usm, d, 0.3, w, form, scale))


def main(argv):
    if FLAGS.psm_networks:
        return networks(argv)
    run = FLAGS.run
    models = methods.Models.restore({m: f"{run}/{m}" for m in ("embedding", "psm_network")})
    ev = pairs.evaluation_set(FLAGS.dataset, FLAGS.data_dir, "closed", FLAGS.split)
    source, metadata = pipeline.open_split(ev.dataset, "train", ev.data_dir)
    emb, _ = inference.embed_observers(
        models.embedding, source, metadata, group=ev.group, m=32, with_image_index=True
    )
    emb = emb[:, 0]
    usm = ev.pair_usm
    d_emb = inference.predict_discrepancy(models.psm_network, ev.pair_images, usm, emb[ev.observer])
    another = np.roll(np.arange(len(emb)), -1)[ev.observer]
    d_shuf = inference.predict_discrepancy(models.psm_network, ev.pair_images, usm, emb[another])
    pri = priors_lib.observer_priors(source, metadata, ev.group, None)
    d_mean = pri.mean_discrepancy[ev.observer]
    print(
        "pairs",
        len(usm),
        "disc std emb",
        d_emb.std(),
        "shuf",
        d_shuf.std(),
        "mean-disc",
        d_mean.std(),
        flush=True,
    )
    base = scoring.score(ev, usm)

    def show(name, prediction):
        print(study_rows.versus_usm_row(ev, base, name, prediction), flush=True)

    print("| row | CC | SIM | KLD | IG |")
    for w in (0.1, 0.25, 0.5):
        for f in (0.3, 0.8, 1.0):
            show(f"emb w={w} f={f}", inference.compose_psm(usm, d_emb, f, w))
            show(f"shuf w={w} f={f}", inference.compose_psm(usm, d_shuf, f, w))
            show(f"meandisc w={w} f={f}", inference.compose_psm(usm, d_mean, f, w))


if __name__ == "__main__":
    xla_defaults.apply()  # before JAX starts a backend (as the launchers do)
    tfds_builders.register()
    app.run(main, flags_parser=cli.parse_flags)  # --help exits 0
