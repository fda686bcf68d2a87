"""The baselines' parameter choice: one observer's g, w and blend weight, as the evaluation does.

    .venv/bin/python benchmarks/bench_priors.py [--pairs=400] [--repeats=3]

Workload: one observer with `--pairs` (PSM, USM) pairs of random maps at 120x160 (the closed set's
400 training images of the synthetic default); `psm_jax.evaluation.priors` picks the blend weight
a (11 candidates), the exponent g (11) and the cross-fitted ratio weight w (6 candidates, two
folds), each by the mean KLD over the pairs, as `observer_priors` does for every observer of a
group. Prints the best of `--repeats` runs after a first (compiling) one, per form and in all, with
the chosen values, and a JSON line.
"""

import json
import platform
import time

import numpy as np
from absl import app, flags

from psm_jax import cli, xla_defaults
from psm_jax.evaluation import priors

_PAIRS = flags.DEFINE_integer("pairs", 400, "(PSM, USM) pairs of the observer.")
_REPEATS = flags.DEFINE_integer("repeats", 3, "Timed runs after the first.")


def _best_of(function, repeats: int) -> tuple[float, object]:
    result = function()  # compiles
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        result = function()
        times.append(time.perf_counter() - start)
    return min(times), result


def main(_):
    rng = np.random.default_rng(0)
    usms = rng.random((_PAIRS.value, 120, 160), dtype=np.float32) ** 4
    psms = rng.random((_PAIRS.value, 120, 160), dtype=np.float32) ** 4
    mean_psm = psms.mean(axis=0)
    cases = {
        "blend a": lambda: priors._best_blend(psms, usms, mean_psm),
        "gamma g": lambda: priors._best("gamma", priors.GAMMAS, psms, usms),
        "ratio w (cross-fitted, g = 1.1)": lambda: priors._cross_fitted_ratio_weight(
            psms, usms, 1.1
        ),
    }
    results = {}
    print("| choice | best of runs | chosen |\n|---|---|---|")
    for name, function in cases.items():
        seconds, chosen = _best_of(function, _REPEATS.value)
        results[name] = {"seconds": round(seconds, 4), "chosen": chosen}
        print(f"| {name} | {seconds:.3f} s | {chosen} |")
    total = sum(r["seconds"] for r in results.values())
    print(f"| all three | {total:.3f} s | |")
    print(
        json.dumps(
            {
                "machine": platform.processor() or platform.machine(),
                "date": time.strftime("%Y-%m-%d %H:%M"),
                "pairs": _PAIRS.value,
                "cases": results,
                "total_seconds": round(total, 4),
            }
        )
    )


if __name__ == "__main__":
    xla_defaults.apply()  # before JAX starts a backend (as the launchers do)
    app.run(main, flags_parser=cli.parse_flags)  # --help exits 0
