"""Data benchmarks: building osie_personal, and the throughput of both grain streams.

    python benchmarks/bench_data.py [--osie_dir=../shared/datasets/osie] [--data_dir=/tmp/psm_bench]

Measures (wall clock, this machine):
  1. building osie_personal from the OSIE release (array_record, from scratch);
  2. the PSM-regression stream: (image, observer) examples per second at 120x160, batch 64,
     after a warm-up batch, with 0 and 2 grain worker processes;
  3. the embedding stream: sets of m = 8 (image, PSM) pairs per second, batch 16.
Prints a JSON line with every figure; docs/results_log.md records them.
"""

import json
import os
import platform
import shutil
import time

from absl import app, flags

import tfds_builders
from psm_jax import xla_defaults
from psm_jax.data import datasets, pipeline

_OSIE_DIR = flags.DEFINE_string("osie_dir", "../shared/datasets/osie", "OSIE release.")
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

    start = time.perf_counter()
    datasets.build_dataset("osie_personal", data_dir=_DATA_DIR.value, manual_dir=_OSIE_DIR.value)
    results["osie_build_s"] = round(time.perf_counter() - start, 1)
    print(f"osie_personal built in {results['osie_build_s']} s", flush=True)

    source, metadata = pipeline.open_split("osie_personal", "train", _DATA_DIR.value)
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
    app.run(main)
