r"""Does the user-embedding encoder learn on every synthetic draw? Variants side by side.

    .venv/bin/python studies/encoder_study.py --data_dir=/tmp/tfds_base \
        --workdir=/tmp/encoder_study \
        --variants='overlapping:overlapping_sets=True' --variants='disjoint:'

Trains the main job's encoder (`psm_jax.configs.main.training_config`: the quick schedule) on
each draw (`--datasets`; `osie_personal` too, with `--manual_dir` if it is not built yet) once per
variant (`name:field=value,field=value` config overrides; a finished workdir is reused), then
scores it on the VALIDATION observers, people the encoder never saw, with sets drawn from the
training images (settings are chosen on these; the test observers are left for the main job's
tables): precision@1 at each m of `--ms` (10 sets per observer; chance 9/49 = 0.18
with the synthetic draws' 5 validation observers), and the mean cosine similarity between
different observers' embeddings (near 1: the embeddings collapsed). Prints one markdown table for
RESULTS.md.
"""

import json
import time
from pathlib import Path

import numpy as np
import variants
from absl import app, flags

import tfds_builders
from psm_jax import cli, inference, xla_defaults
from psm_jax.configs import main as main_configs
from psm_jax.configs import synthetic
from psm_jax.data import datasets, pipeline
from psm_jax.evaluation import embeddings
from psm_jax.train import loop

_DATA_DIR = flags.DEFINE_string("data_dir", "data/tfds", "Where the datasets are built.")
_MANUAL_DIR = flags.DEFINE_string(
    "manual_dir", None, "The release folder of a real dataset (OSIE), if not yet built."
)
_WORKDIR = flags.DEFINE_string("workdir", "runs/encoder_study", "One workdir per run below it.")
_DATASETS = flags.DEFINE_list(
    "datasets",
    list(synthetic.DRAWS),
    "The draws.",
)
_VARIANTS = flags.DEFINE_multi_string(
    "variants", ["disjoint:"], "name:field=value,... config overrides of the encoder."
)
_MS = flags.DEFINE_list("ms", ["8", "32"], "Set sizes m of the precision@1.")
_OUTPUT = flags.DEFINE_string("output", None, "Also write the results as JSON here.")


def _mean_cross_cosine(vectors: np.ndarray, labels: np.ndarray) -> float:
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    similarity = unit @ unit.T
    return float(similarity[labels[:, None] != labels[None, :]].mean())


def main(argv):
    del argv
    ms = tuple(int(m) for m in _MS.value)
    rows = []
    for dataset in _DATASETS.value:
        datasets.build_dataset(dataset, data_dir=_DATA_DIR.value, manual_dir=_MANUAL_DIR.value)
        source, metadata = pipeline.open_split(dataset, "train", _DATA_DIR.value)
        for text in _VARIANTS.value:
            name, fields = variants.parse(text)
            config = main_configs.training_config(dataset, "embedding")
            config.data_dir = _DATA_DIR.value
            variants.apply(config, fields)
            workdir = Path(_WORKDIR.value) / dataset.replace("/", "_") / name
            start = time.perf_counter()
            loop.train_and_evaluate(config, workdir)
            seconds = time.perf_counter() - start
            encoder = inference.restore(workdir, kind="embedding")
            precision = embeddings.precision_at_1_versus_m(
                encoder, source, metadata, group="validation", ms=ms, seed=1
            )
            vectors, labels = embeddings.set_embeddings(
                encoder, source, metadata, group="validation", m=max(ms), seed=2
            )
            rows.append(
                {
                    "dataset": dataset,
                    "variant": name,
                    "overrides": fields,
                    "precision_at_1": precision,
                    "cross_cosine": _mean_cross_cosine(vectors, labels),
                    "train_seconds": seconds,
                }
            )
            print(json.dumps(rows[-1]), flush=True)
    header = "| draw | variant | " + " | ".join(f"p@1 m={m}" for m in ms)
    print(header + " | cosine between observers | train s |")
    print("|---|---|" + "---|" * len(ms) + "---|---|")
    for row in rows:
        cells = " | ".join(f"{row['precision_at_1'][m]:.2f}" for m in ms)
        print(
            f"| {row['dataset'].split('/')[-1]} | {row['variant']} | {cells} | "
            f"{row['cross_cosine']:.3f} | {row['train_seconds']:.0f} |"
        )
    if _OUTPUT.value:
        Path(_OUTPUT.value).write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    xla_defaults.apply()  # before JAX starts a backend (as the launchers do)
    tfds_builders.register()
    app.run(main, flags_parser=cli.parse_flags)  # --help exits 0
