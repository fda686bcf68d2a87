"""Metric throughput: the five map metrics together, batched JAX versus a per-map NumPy loop.

    .venv/bin/python benchmarks/bench_metrics.py [--maps=1000] [--max_fixations=40] [--repeats=5]

Workload: 1,000 random maps at 120x160 (the working grid) with their ground-truth maps and 1 to 40
fixations each (padded with a mask). Times, on this machine:
  1. `psm_jax.metrics.saliency_metrics` (CC, SIM, AUC-Judd, NSS, KLD in one jitted call), after
     compilation: the median of `--repeats` runs, and the compile time;
  2. the same five metrics by `psm_jax.metrics_reference`, one map at a time (one run).
Checks the two agree (largest absolute difference per metric) and prints a JSON line.
"""

import json
import os
import platform
import time

import jax
import numpy as np
from absl import app, flags

from psm_jax import cli, metrics, xla_defaults
from psm_jax import metrics_reference as reference

_MAPS = flags.DEFINE_integer("maps", 1000, "Number of (map, fixations) examples.")
_MAX_FIXATIONS = flags.DEFINE_integer("max_fixations", 40, "Fixations per map, at most.")
_REPEATS = flags.DEFINE_integer("repeats", 5, "Timed runs of the jitted metrics.")

GRID = (120, 160)


def _workload(num_maps: int, max_fixations: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    prediction = rng.random((num_maps,) + GRID, dtype=np.float32)
    ground_truth = rng.random((num_maps,) + GRID, dtype=np.float32) ** 4
    x = rng.uniform(-0.5, GRID[1] - 0.5, (num_maps, max_fixations)).astype(np.float32)
    y = rng.uniform(-0.5, GRID[0] - 0.5, (num_maps, max_fixations)).astype(np.float32)
    counts = rng.integers(1, max_fixations + 1, num_maps)
    mask = np.arange(max_fixations)[None, :] < counts[:, None]
    return prediction, ground_truth, x, y, mask


def main(argv):
    del argv
    prediction, ground_truth, x, y, mask = _workload(_MAPS.value, _MAX_FIXATIONS.value)
    image_size = np.array(GRID)
    args = [jax.device_put(a) for a in (prediction, ground_truth, x, y, mask, image_size)]

    start = time.perf_counter()
    jax.block_until_ready(metrics.saliency_metrics(*args, grid=GRID))
    compile_s = time.perf_counter() - start
    times = []
    for _ in range(_REPEATS.value):
        start = time.perf_counter()
        scores = jax.block_until_ready(metrics.saliency_metrics(*args, grid=GRID))
        times.append(time.perf_counter() - start)
    jax_s = float(np.median(times))
    print(
        f"JAX, five metrics on {_MAPS.value} maps: {jax_s:.3f} s (median of {len(times)}; "
        f"runs {', '.join(f'{t:.3f}' for t in times)}; first call with compilation "
        f"{compile_s:.2f} s)",
        flush=True,
    )

    rows, cols = (np.asarray(a) for a in metrics.fixations_to_grid(x, y, image_size, GRID))
    start = time.perf_counter()
    expected = {name: [] for name in metrics.MAP_METRICS}
    for b in range(_MAPS.value):
        r, c = rows[b][mask[b]], cols[b][mask[b]]
        expected["cc"].append(reference.cc(prediction[b], ground_truth[b]))
        expected["sim"].append(reference.sim(prediction[b], ground_truth[b]))
        expected["auc_judd"].append(reference.auc_judd(prediction[b], r, c))
        expected["nss"].append(reference.nss(prediction[b], r, c))
        expected["kld"].append(reference.kld(prediction[b], ground_truth[b]))
    numpy_s = time.perf_counter() - start
    print(f"NumPy per-map loop: {numpy_s:.2f} s", flush=True)

    difference = {
        name: float(np.max(np.abs(np.asarray(scores[name]) - np.asarray(expected[name]))))
        for name in metrics.MAP_METRICS
    }
    results = {
        "machine": f"{platform.node()} {os.cpu_count()} cores, {jax.devices()[0].platform}",
        "date": time.strftime("%F"),
        "maps": _MAPS.value,
        "max_fixations": _MAX_FIXATIONS.value,
        "jax_s": round(jax_s, 4),
        "jax_compile_s": round(compile_s, 2),
        "numpy_loop_s": round(numpy_s, 2),
        "speedup": round(numpy_s / jax_s, 1),
        "max_abs_difference": difference,
    }
    print(json.dumps(results))


if __name__ == "__main__":
    xla_defaults.apply()  # before JAX starts a backend (as the launchers do)
    app.run(main, flags_parser=cli.parse_flags)  # --help exits 0
