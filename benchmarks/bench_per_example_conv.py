"""Per-example convolution: `layers.per_example_conv` versus vmapped `lax.conv_general_dilated`.

    .venv/bin/python benchmarks/bench_per_example_conv.py [--repeats=5]

Each example of a batch has its own kernel (hypernetwork kernels, per-observer heads). Times the
forward pass and the gradient with respect to the kernels (best of `--repeats` jitted calls after
compilation) for the layer shapes of the models, plus an ordinary shared-kernel convolution of the
same shape for scale, and checks that both per-example forms agree.
"""

import time

import jax
import jax.numpy as jnp
from absl import app, flags
from jax import lax

from psm_jax import cli, xla_defaults
from psm_jax.models import layers

_REPEATS = flags.DEFINE_integer("repeats", 5, "Timed calls; the best is reported.")

# (batch, height, width, in channels, out channels, kernel, stride)
SHAPES = [
    (40, 15, 20, 64, 64, 5, 1),  # multi-task head conv5 at batch 40
    (64, 15, 20, 64, 32, 3, 1),  # hypernetwork dynamic layer at batch 64
    (1, 15, 20, 64, 32, 3, 1),  # the same at batch 1
    (40, 120, 160, 4, 32, 7, 2),  # a per-observer first layer (MultiConvNets)
]


def _conv(features, kernel, stride):
    return lax.conv_general_dilated(
        features, kernel, (stride, stride), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")
    )


def _best_ms(function, *args) -> float:
    jax.block_until_ready(function(*args))
    best = float("inf")
    for _ in range(_REPEATS.value):
        start = time.perf_counter()
        jax.block_until_ready(function(*args))
        best = min(best, time.perf_counter() - start)
    return 1e3 * best


def main(argv):
    del argv
    for batch, height, width, channels, outputs, kernel, stride in SHAPES:
        keys = jax.random.split(jax.random.key(0))
        features = jax.random.normal(keys[0], (batch, height, width, channels))
        kernels = jax.random.normal(keys[1], (batch, kernel, kernel, channels, outputs))

        def ours(f, k, stride=stride):
            return layers.per_example_conv(f, k, None, stride)

        def vmapped(f, k, stride=stride):
            return jax.vmap(lambda x, w: _conv(x[None], w, stride)[0])(f, k)

        def shared(f, k, stride=stride):
            return _conv(f, k[0], stride)

        difference = float(
            jnp.abs(jax.jit(ours)(features, kernels) - vmapped(features, kernels)).max()
        )
        row = [f"B={batch} {height}x{width} {channels}->{outputs} k{kernel} s{stride}:"]
        for name, function in [("per_example_conv", ours), ("vmap", vmapped), ("shared", shared)]:
            forward = _best_ms(jax.jit(function), features, kernels)
            gradient = jax.jit(
                jax.grad(lambda f, k, fn=function: jnp.sum(fn(f, k) ** 2), argnums=1)
            )
            backward = _best_ms(gradient, features, kernels)
            row.append(f"{name} {forward:.2f} / {backward:.2f} ms")
        print("  ".join(row) + f"  (forward / kernel gradient; max difference {difference:.1e})")


if __name__ == "__main__":
    xla_defaults.apply()  # before JAX starts a backend (as the launchers do)
    app.run(main, flags_parser=cli.parse_flags)  # --help exits 0
