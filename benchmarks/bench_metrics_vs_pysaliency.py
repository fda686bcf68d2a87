r"""Our metrics against pysaliency's per-map functions, on the same 1,000 maps, interleaved rounds.

    python -m venv /tmp/pysaliency_venv
    /tmp/pysaliency_venv/bin/pip install pysaliency==0.2.22 torch==2.13.0 'setuptools<81'
    .venv/bin/python benchmarks/bench_metrics_vs_pysaliency.py \
        --pysaliency_python=/tmp/pysaliency_venv/bin/python

pysaliency (the community's reference implementation) lives in its own virtual environment; this
script writes the workload to a temporary .npz and runs pysaliency's side in that interpreter
(`--pysaliency_python`), which times itself after its imports. Each round times ours, then
pysaliency's, on the same maps: 1,000 random maps at 120x160 with ground-truth maps (uniform to the
fourth power, peaked like saliency maps) and 1 to 40 fixations each.

Ours: each single metric function (`psm_jax.metrics.cc`, `sim`, `kld`, `nss`, `auc_judd`), called
on the whole batch, and `saliency_metrics` (all five in one call); compilation happens before the
first round (a second call with new values of the same shapes must not compile again, and the
script checks that it does not). pysaliency: `metrics.CC`, `metrics.SIM`, `metrics.MIT_KLDiv`,
the mean of `metrics.NSS`, and AUC-Judd as `AUC_per_image` computes it (`roc.general_roc` with
`judd=1` on the fixated values against the unfixated pixels; no jitter), one map at a time.

Prints per metric: both medians, the speed-up (pysaliency / ours, same run), and the largest
absolute difference between the two implementations' scores; `--output` writes JSON.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import jax
import numpy as np
from absl import app, flags

from psm_jax import cli, metrics, xla_defaults

_PYSALIENCY = flags.DEFINE_string(
    "pysaliency_python", None, "The Python interpreter of a venv with pysaliency 0.2.22."
)
_MAPS = flags.DEFINE_integer("maps", 1000, "Number of (map, fixations) examples.")
_ROUNDS = flags.DEFINE_integer("rounds", 5, "Interleaved rounds; medians are reported.")
_OUTPUT = flags.DEFINE_string("output", None, "Also write the results as JSON here.")

GRID = (120, 160)
MAX_FIXATIONS = 40
METRICS = ("cc", "sim", "kld", "nss", "auc_judd")

PYSALIENCY_SIDE = r"""
import json, sys, time, warnings
import numpy as np
np.trapz = getattr(np, "trapz", None) or np.trapezoid  # pysaliency 0.2.22 on NumPy 2
warnings.filterwarnings("ignore")
import pysaliency.metrics as pm
from pysaliency.roc import general_roc
from pysaliency.saliency_map_models import _get_unfixated_values

data = np.load(sys.argv[1])
pred, truth, rows, cols, counts = (data[k] for k in ("pred", "truth", "rows", "cols", "counts"))
n = len(pred)

def auc_judd(i):
    r, c = rows[i, :counts[i]], cols[i, :counts[i]]
    positives = pred[i][r, c].astype(float)
    negatives = _get_unfixated_values(pred[i], r, c).astype(float)
    return general_roc(positives, negatives, judd=1)[0]

functions = {
    "cc": lambda i: pm.CC(pred[i], truth[i]),
    "sim": lambda i: pm.SIM(pred[i], truth[i]),
    "kld": lambda i: pm.MIT_KLDiv(pred[i], truth[i]),
    "nss": lambda i: pm.NSS(pred[i], cols[i, :counts[i]], rows[i, :counts[i]]).mean(),
    "auc_judd": auc_judd,
}
result = {}
for name, function in functions.items():
    start = time.perf_counter()
    scores = [function(i) for i in range(n)]
    result[name] = {"seconds": time.perf_counter() - start, "scores": [float(s) for s in scores]}
print(json.dumps(result))
"""


def _workload(num_maps: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    pred = rng.random((num_maps,) + GRID, dtype=np.float32)
    truth = rng.random((num_maps,) + GRID, dtype=np.float32) ** 4
    rows = rng.integers(0, GRID[0], (num_maps, MAX_FIXATIONS)).astype(np.int32)
    cols = rng.integers(0, GRID[1], (num_maps, MAX_FIXATIONS)).astype(np.int32)
    counts = rng.integers(1, MAX_FIXATIONS + 1, num_maps)
    mask = np.arange(MAX_FIXATIONS)[None, :] < counts[:, None]
    return pred, truth, rows, cols, counts, mask


def _ours(pred, truth, rows, cols, mask):
    return {
        "cc": lambda: metrics.cc(pred, truth),
        "sim": lambda: metrics.sim(pred, truth),
        "kld": lambda: metrics.kld(pred, truth),
        "nss": lambda: metrics.nss(pred, rows, cols, mask),
        "auc_judd": lambda: metrics.auc_judd(pred, rows, cols, mask),
        "saliency_metrics": lambda: metrics.saliency_metrics(
            pred, truth, cols.astype(np.float32), rows.astype(np.float32), mask, np.array(GRID)
        ),
    }


def _cache_sizes() -> dict:
    return {
        name: getattr(metrics, name)._cache_size()
        for name in ("cc", "sim", "kld", "nss", "auc_judd", "saliency_metrics")
    }


def main(argv):
    del argv
    if not _PYSALIENCY.value or not Path(_PYSALIENCY.value).exists():
        raise SystemExit("--pysaliency_python must name the interpreter of a pysaliency venv.")
    pred, truth, rows, cols, counts, mask = _workload(_MAPS.value)
    arrays = [jax.device_put(a) for a in (pred, truth, rows, cols, mask)]
    ours = _ours(*arrays)
    ours_scores = {name: np.asarray(jax.block_until_ready(f())) for name, f in ours.items()}
    # New values of the same shapes: must reuse the compiled functions.
    compiled = _cache_sizes()
    other = [jax.device_put(a) for a in _workload(_MAPS.value, seed=1)[:2]] + arrays[2:]
    for function in _ours(*other).values():
        jax.block_until_ready(function())
    if _cache_sizes() != compiled:
        raise SystemExit(f"A metric compiled again on new values: {compiled} -> {_cache_sizes()}")

    times = {name: {"ours": [], "pysaliency": []} for name in list(ours)}
    reference = None
    with tempfile.TemporaryDirectory() as folder:
        data = Path(folder) / "workload.npz"
        np.savez(data, pred=pred, truth=truth, rows=rows, cols=cols, counts=counts)
        script = Path(folder) / "pysaliency_side.py"
        script.write_text(PYSALIENCY_SIDE)
        for round_index in range(_ROUNDS.value):
            for name, function in ours.items():
                start = time.perf_counter()
                jax.block_until_ready(function())
                times[name]["ours"].append(time.perf_counter() - start)
            output = subprocess.run(
                [_PYSALIENCY.value, str(script), str(data)],
                capture_output=True,
                text=True,
                check=True,
            ).stdout
            reference = json.loads(output.strip().splitlines()[-1])
            for name in METRICS:
                times[name]["pysaliency"].append(reference[name]["seconds"])
            print(f"round {round_index + 1}/{_ROUNDS.value} done", file=sys.stderr, flush=True)

    results = {
        "machine": f"{platform.node()}, {os.cpu_count()} cores",
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "maps": _MAPS.value,
        "rounds": _ROUNDS.value,
        "metrics": {},
    }
    pysaliency_total = sum(statistics.median(times[m]["pysaliency"]) for m in METRICS)
    print(f"{_MAPS.value} maps at {GRID[0]}x{GRID[1]}; medians of {_ROUNDS.value} rounds")
    print("| metric | ours | pysaliency, per map | speed-up | largest difference |")
    print("|---|---|---|---|---|")
    for name in ours:
        ours_s = statistics.median(times[name]["ours"])
        if name == "saliency_metrics":
            theirs_s = pysaliency_total
            difference = None
        else:
            theirs_s = statistics.median(times[name]["pysaliency"])
            difference = float(
                np.nanmax(np.abs(ours_scores[name] - np.asarray(reference[name]["scores"])))
            )
        row = {
            "ours_s": round(ours_s, 5),
            "pysaliency_s": round(theirs_s, 5),
            "speedup": round(theirs_s / ours_s, 2),
            "largest_difference": difference,
            "ours_rounds_s": [round(t, 5) for t in times[name]["ours"]],
        }
        results["metrics"][name] = row
        label = "all five (sum of pysaliency's)" if name == "saliency_metrics" else name
        diff_text = "" if difference is None else f"{difference:.1e}"
        print(
            f"| {label} | {1e3 * ours_s:.1f} ms | {1e3 * theirs_s:.1f} ms | "
            f"{row['speedup']:.1f}x | {diff_text} |"
        )
    print(json.dumps(results))
    if _OUTPUT.value:
        Path(_OUTPUT.value).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    xla_defaults.apply()  # before JAX starts a backend (as the launchers do)
    app.run(main, flags_parser=cli.parse_flags)  # --help exits 0
