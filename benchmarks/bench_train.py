"""Train-step throughput of every model at the papers' batch sizes, on this machine's devices.

    .venv/bin/python benchmarks/bench_train.py [--steps=5] [--m=8] [--observers=20] [--batch=0]

For each model, the real data-parallel train step (`psm_jax.train.step`, the loss and optimiser of
`psm_jax.train.tasks` with the paper-default config of psm_jax/configs/ps.py) runs on random
batches of the paper's size (embedding: 256 sets of m pairs; PSM network 32; multi-task and
per-observer networks 40 with 20 observers, as PS; universal 32; `--batch` sets another). Prints
the median step time over `--steps` steps after compilation and the examples/s (sets/s for the
encoder), and a JSON line.
"""

import json
import os
import platform
import statistics
import time

import jax
import numpy as np
from absl import app, flags

from psm_jax import cli, xla_defaults
from psm_jax.configs import ps
from psm_jax.data import pipeline
from psm_jax.train import loop, tasks
from psm_jax.train import step as train_step

_STEPS = flags.DEFINE_integer("steps", 5, "Timed steps per model.")
_M = flags.DEFINE_integer("m", 8, "Pairs per embedding set (the paper uses 4 to 32).")
_OBSERVERS = flags.DEFINE_integer("observers", 20, "Training observers (PS: 20).")
_BATCH = flags.DEFINE_integer("batch", 0, "Batch size of every model (0: the paper's).")
_MODELS = flags.DEFINE_list(
    "models", ["embedding", "psm_network", "multi_task", "per_observer", "universal"], "Models."
)


def _metadata(num_observers: int) -> pipeline.DatasetMetadata:
    ids = [f"o{k}" for k in range(num_observers)]
    return pipeline.DatasetMetadata.from_info(
        "benchmark",
        {
            "observer_ids": ids,
            "observer_split": {"train": ids, "validation": [], "test": []},
            "psm": {"working_size": [120, 160]},
        },
    )


def _batch(config, rng: np.random.Generator, num_observers: int) -> dict:
    size = config.batch_size
    if config.model == "embedding":
        return {
            "images": rng.integers(0, 256, (size, config.m, 120, 160, 3), dtype=np.uint8),
            "psms": rng.random((size, config.m, 120, 160), dtype=np.float32),
            "observer": rng.integers(0, num_observers, size).astype(np.int32),
        }
    return {
        "image": rng.integers(0, 256, (size, 120, 160, 3), dtype=np.uint8),
        "usm": rng.random((size, 120, 160), dtype=np.float32),
        "discrepancy": (rng.random((size, 15, 20), dtype=np.float32) - 0.5),
        "observer": rng.integers(0, num_observers, size).astype(np.int32),
        "embedding": rng.normal(size=(size, 32)).astype(np.float32),
    }


def measure(model: str) -> dict:
    config = ps.get_config(model)
    config.m = _M.value
    if _BATCH.value:
        config.batch_size = _BATCH.value
    num_observers = _OBSERVERS.value
    metadata = _metadata(num_observers)
    pool = np.zeros((num_observers, 1, 32), np.float32) if model == "psm_network" else None
    task = tasks.make_task(config, metadata, pool)
    network = task.build_model(loop._rngs(config))
    tx = tasks.optimizer(config, steps_per_epoch=1000)
    graphdef, state = train_step.init_state(network, tx)
    mesh = train_step.data_mesh()
    state = train_step.replicate(state, mesh)
    step = train_step.compile_step(
        train_step.make_step(graphdef, tx, task.loss_fn, task.num_observers), mesh
    )
    rng = np.random.default_rng(0)
    batch = train_step.global_batch(
        {k: v for k, v in _batch(config, rng, num_observers).items() if k in task.keys}, mesh
    )
    start = time.perf_counter()
    state, measurements = step(state, batch)
    jax.block_until_ready(measurements)
    compile_s = time.perf_counter() - start
    times = []
    for _ in range(_STEPS.value):
        start = time.perf_counter()
        state, measurements = step(state, batch)
        jax.block_until_ready(measurements)
        times.append(time.perf_counter() - start)
    seconds = statistics.median(times)
    return {
        "batch": config.batch_size,
        "step_s": round(seconds, 4),
        "examples_per_s": round(config.batch_size / seconds, 1),
        "first_step_with_compile_s": round(compile_s, 1),
    }


def main(argv):
    del argv
    figures = {
        "machine": f"{platform.node()} {os.cpu_count()} cores, {jax.devices()[0].device_kind}",
        "devices": jax.device_count(),
        "date": time.strftime("%Y-%m-%d"),
        "m": _M.value,
        "models": {},
    }
    for model in _MODELS.value:
        result = measure(model)
        figures["models"][model] = result
        unit = f"sets (m={_M.value})" if model == "embedding" else "examples"
        print(
            f"{model:13s} batch {result['batch']:4d}: {1e3 * result['step_s']:9.1f} ms/step, "
            f"{result['examples_per_s']:8.1f} {unit}/s (first step with compilation "
            f"{result['first_step_with_compile_s']} s)",
            flush=True,
        )
    print(json.dumps(figures))


if __name__ == "__main__":
    xla_defaults.apply()  # before JAX starts a backend (as the launchers do)
    app.run(main, flags_parser=cli.parse_flags)  # --help exits 0
