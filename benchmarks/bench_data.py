r"""Data benchmarks: building a dataset, and the throughput of both grain streams.

    .venv/bin/python benchmarks/bench_data.py       # the synthetic dataset (`make bench`)
    .venv/bin/python benchmarks/bench_data.py --dataset=osie_personal \
        --manual_dir=/path/to/osie [--data_dir=/tmp/psm_bench]

Measures (wall clock, this machine):
  1. building the dataset (default: the synthetic one, which needs no download; osie_personal
     from the OSIE release in --manual_dir), array_record, from scratch;
  2. the PSM-regression stream: (image, observer) examples per second, batch 64, after a
     warm-up batch, with 0 and 2 grain worker processes;
  3. the embedding stream: sets of m = 8 (image, PSM) pairs per second, batch 16.
Prints a JSON line with every figure; docs/results_log.md records them (OSIE's: 120x160).
"""

import json
import os
import platform
import shutil
import sys
import time

from absl import app, flags

import tfds_builders
from psm_jax import cli, xla_defaults
from psm_jax.data import datasets, pipeline

_DATASET = flags.DEFINE_string(
    "dataset",
    "synthetic_personal_saliency",
    "The dataset built and streamed, e.g. osie_personal (with --manual_dir).",
)
_MANUAL_DIR = flags.DEFINE_string(
    "manual_dir", None, "The downloaded release, for the datasets that need one (OSIE)."
)
_DATA_DIR = flags.DEFINE_string("data_dir", "/tmp/psm_bench", "Scratch data_dir (rebuilt).")
_BATCHES = flags.DEFINE_integer("batches", 60, "Batches timed per stream.")


def _rate(dataset, batches: int, per_batch: int) -> float:
    iterator = iter(dataset)
    next(iterator)  # warm-up: worker start, first window
    start = time.perf_counter()
    for _ in range(batches):
        next(iterator)
    return batches * per_batch / (time.perf_counter() - start)


def main(argv):
    del argv
    shutil.rmtree(_DATA_DIR.value, ignore_errors=True)
    results = {"machine": f"{platform.node()} {os.cpu_count()} cores", "date": time.strftime("%F")}

    name = _DATASET.value
    results["dataset"] = name
    start = time.perf_counter()
    try:
        datasets.build_dataset(name, data_dir=_DATA_DIR.value, manual_dir=_MANUAL_DIR.value)
    except (OSError, ValueError) as error:  # e.g. no release in --manual_dir: what to download
        sys.exit(f"bench_data.py: {error}")
    results["build_s"] = round(time.perf_counter() - start, 1)
    print(f"{name} built in {results['build_s']} s", flush=True)

    source, metadata = pipeline.open_split(name, "train", _DATA_DIR.value)
    for workers in (0, 2):
        dataset = pipeline.psm_regression_dataset(
            source, metadata, batch_size=64, seed=0, num_workers=workers
        )
        rate = _rate(dataset, _BATCHES.value, 64)
        results[f"regression_examples_per_s_workers{workers}"] = round(rate)
        print(f"PSM-regression stream, {workers} workers: {rate:.0f} examples/s", flush=True)
    dataset = pipeline.embedding_dataset(source, metadata, batch_size=16, m=8, seed=0)
    rate = _rate(dataset, max(_BATCHES.value // 3, 5), 16)
    results["embedding_sets_per_s_m8"] = round(rate, 1)
    print(f"embedding stream (m=8): {rate:.1f} sets/s", flush=True)
    print(json.dumps(results))


if __name__ == "__main__":
    xla_defaults.apply()  # before JAX starts a backend (as the launchers do)
    tfds_builders.register()
    app.run(main, flags_parser=cli.parse_flags)  # --help exits 0
