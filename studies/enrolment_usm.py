"""Does an encoder trained on ground-truth USMs identify people enrolled on predicted ones?

    .venv/bin/python studies/enrolment_usm.py --run=runs/synthetic_personal_saliency

The main job's encoder reads each pair's departure from the USM (`input_map="discrepancy"`) and
is trained with the ground-truth USMs (the mean map of the training observers). A new person's
images have no such map: `launch/enroll.py --universal` gives the encoder the universal
network's predicted USMs instead. The evaluation embeds observers with ground-truth USMs, so it
does not see this mismatch. This study scores the precision@1 of the embeddings of `--groups`'
observers (sets from the training images, `psm_jax.evaluation.embeddings`, the evaluation's seeds)
twice on the same sets: with the ground-truth USMs and with the run's universal network's USMs of
the same images, and the mean cosine between the two embeddings of each set. The encoder may have
trained on either (the `predicted` config option trains it on the universal network's).
"""

import json
from pathlib import Path

import numpy as np
from absl import app, flags

import tfds_builders
from psm_jax import cli, inference, metrics, xla_defaults
from psm_jax.data import pipeline
from psm_jax.evaluation import embeddings

_DATA_DIR = flags.DEFINE_string("data_dir", "data/tfds", "Where the datasets are built.")
_RUN = flags.DEFINE_string(
    "run", None, "A main job's workdir (its embedding/ and universal/ runs).", required=True
)
_DATASET = flags.DEFINE_string("dataset", "synthetic_personal_saliency", "The dataset.")
_GROUPS = flags.DEFINE_list("groups", ["test"], "Whose sets.")
_MS = flags.DEFINE_list("ms", ["8", "16", "32"], "Set sizes m.")
_SETS = flags.DEFINE_integer("sets_per_observer", 10, "Sets per observer.")
_OUTPUT = flags.DEFINE_string("output", None, "Also write the results as JSON here.")


def ground_truth_usms(source, metadata) -> np.ndarray:
    """The ground-truth USM of every record of `source` (zeros where no training observer has a
    map, as in the set stream)."""
    maps = []
    for i in range(len(source)):
        psm, _, usm = pipeline.ground_truth_maps(source[i], metadata)
        maps.append(np.zeros(psm.shape[1:], np.float32) if usm is None else usm)
    return np.stack(maps).astype(np.float32)


def main(argv):
    del argv
    run = Path(_RUN.value)
    encoder = inference.restore(run / "embedding", kind="embedding")
    if not encoder.model.needs_usms:
        raise SystemExit(f"{run / 'embedding'}'s encoder reads no USM: nothing to compare.")
    universal = inference.restore(run / "universal", kind="universal")
    source, metadata = pipeline.open_split(_DATASET.value, "train", _DATA_DIR.value)
    usms = inference.source_usms(universal, source)
    truth = ground_truth_usms(source, metadata)
    rows = []
    for group in _GROUPS.value:
        for m in (int(m) for m in _MS.value):
            scored = {}
            for name, maps in (("ground_truth", truth), ("predicted", usms)):
                vectors, labels = embeddings.set_embeddings(
                    encoder,
                    source,
                    metadata,
                    group=group,
                    m=m,
                    sets_per_observer=_SETS.value,
                    seed=m,  # precision_at_1_versus_m's draw (seed 0 + m)
                    usms=maps,
                )
                scored[name] = vectors
                precision = float(np.mean(metrics.precision_at_1(vectors, labels)))
                scored[f"p@1 {name}"] = precision
            cosine = float(np.mean(np.sum(scored["ground_truth"] * scored["predicted"], -1)))
            row = {
                "dataset": _DATASET.value,
                "group": group,
                "m": m,
                "p@1 ground-truth USMs": scored["p@1 ground_truth"],
                "p@1 predicted USMs": scored["p@1 predicted"],
                "cosine between the two": cosine,
            }
            rows.append(row)
            print(json.dumps(row), flush=True)
    print("| observers | m | p@1, ground-truth USMs | p@1, predicted USMs | cosine of the two |")
    print("|---|---|---|---|---|")
    for row in rows:
        print(
            f"| {row['group']} | {row['m']} | {row['p@1 ground-truth USMs']:.2f} | "
            f"{row['p@1 predicted USMs']:.2f} | {row['cosine between the two']:.3f} |"
        )
    if _OUTPUT.value:
        Path(_OUTPUT.value).write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    xla_defaults.apply()  # before JAX starts a backend (as the launchers do)
    tfds_builders.register()
    app.run(main, flags_parser=cli.parse_flags)  # --help exits 0
