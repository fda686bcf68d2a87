r"""What the PSM network gets from an encoder: how well its training pool tells people apart.

    .venv/bin/python studies/embedding_pool_study.py --data_dir=/tmp/tfds_sweep2 \
        --runs=/tmp/sweep2 [--datasets=synthetic_personal_saliency,...] [--pool_size=30]

For each draw, embeds `--pool_size` random m-pair sets of every training observer with the
trained encoder of a finished main job (`--runs/<draw>/embedding`), exactly as the PSM network's
training pool is drawn (`psm_jax.train.loop.embedding_pool`, the main job's m), and prints: the
share of the pool's variance that lies between observers, the mean cosine of two sets of one
observer and of two observers, and how often a leave-one-out nearest-centroid rule (cosine) names
a set's observer. A high between-observer share with a low nearest-centroid accuracy means the
people differ along few directions and many share one point.
"""

from pathlib import Path

import numpy as np
from absl import app, flags

import tfds_builders
from psm_jax import cli, xla_defaults
from psm_jax.configs import main as main_configs
from psm_jax.configs import synthetic
from psm_jax.data import pipeline
from psm_jax.train import checkpoint, loop

_DATA_DIR = flags.DEFINE_string("data_dir", "data/tfds", "Where the datasets are built.")
_RUNS = flags.DEFINE_string("runs", None, "Main-job workdirs, one per draw (the encoders).")
_DATASETS = flags.DEFINE_list("datasets", list(synthetic.DRAWS), "The draws.")
_POOL_SIZE = flags.DEFINE_integer("pool_size", 30, "Sets per training observer.")


def pool_statistics(pool: np.ndarray) -> dict[str, float]:
    """(observers, sets, d) embeddings -> between-observer variance share, mean cosines, and the
    leave-one-out nearest-centroid accuracy."""
    observers, sets, _ = pool.shape
    centroids = pool.mean(axis=1)
    between = np.sum((centroids - pool.reshape(observers * sets, -1).mean(0)) ** 2, -1).mean()
    within = np.sum((pool - centroids[:, None]) ** 2, -1).mean()
    unit = pool / np.linalg.norm(pool, axis=-1, keepdims=True)
    flat = unit.reshape(observers * sets, -1)
    labels = np.repeat(np.arange(observers), sets)
    cosine = flat @ flat.T
    same = labels[:, None] == labels[None, :]
    off_diagonal = ~np.eye(len(labels), dtype=bool)
    sums = pool.sum(axis=1)  # (observers, d)
    correct = 0
    for index, vector in enumerate(pool.reshape(observers * sets, -1)):
        means = sums / sets
        own = labels[index]
        means[own] = (sums[own] - vector) / (sets - 1)
        scores = means @ vector / np.linalg.norm(means, axis=1)
        correct += int(np.argmax(scores) == own)
    return {
        "between_share": float(between / (between + within)),
        "cosine_same": float(cosine[same & off_diagonal].mean()),
        "cosine_different": float(cosine[~same].mean()),
        "nearest_centroid": correct / (observers * sets),
    }


def main(argv):
    del argv
    print(
        "| draw | observers | between-observer share | cosine same / different | "
        "nearest centroid (LOO) |"
    )
    print("|---|---|---|---|---|")
    for dataset in _DATASETS.value:
        run = Path(_RUNS.value) / dataset.replace("/", "_")
        config = main_configs.training_config(dataset, "psm_network")
        config.data_dir = _DATA_DIR.value
        config.embedding_pool_size = _POOL_SIZE.value
        encoder, _, _ = checkpoint.restore_model(str(run / "embedding"))
        source, metadata = pipeline.open_split(dataset, "train", _DATA_DIR.value)
        pool = loop.embedding_pool(config, source, metadata, encoder)
        s = pool_statistics(pool)
        print(
            f"| {dataset} | {pool.shape[0]} | {s['between_share']:.3f} | "
            f"{s['cosine_same']:.3f} / {s['cosine_different']:.3f} | "
            f"{s['nearest_centroid']:.3f} |",
            flush=True,
        )


if __name__ == "__main__":
    xla_defaults.apply()  # before JAX starts a backend (as the launchers do)
    tfds_builders.register()
    app.run(main, flags_parser=cli.parse_flags)  # --help exits 0
