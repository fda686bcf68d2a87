"""bf16 against float32 compute on this backend: the PSM network's layers and the whole network.

    .venv/bin/python benchmarks/bench_compute_dtype.py [--repeats=5]

The `compute_dtype` option (`psm_jax.models.layers.COMPUTE_DTYPES`) keeps float32 parameters
and computes in bf16. This times, in both dtypes (best of `--repeats` jitted calls after
compilation):
- each of the PSM network's shared convolutions alone (the trunk's three 3x3 stride-2 layers at
  batch 64, and the head's 3x3 layer), forward and kernel gradient;
- a (19200 x 576) @ (576 x 32) matrix product (an im2col of the trunk's second layer) and a
  2048^3 one, for the matrix units;
- the whole PSM network (the default config, the same float32 parameters): forward at batch 64,
  and the gradient of a squared-output loss at batch 32 (a train step's work, without the
  optimiser), with the largest difference of the bf16 outputs from the float32 ones.
"""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
from absl import app
from bench_per_example_conv import _REPEATS, _best_ms, _conv  # the same timing and layer
from flax import nnx

from psm_jax import cli, xla_defaults
from psm_jax.models import layers, personalised

# (batch, height, width, in channels, out channels, stride): the PSM network's shared layers.
CONVS = [
    (64, 120, 160, 4, 16, 2),
    (64, 60, 80, 16, 32, 2),
    (64, 30, 40, 32, 64, 2),
    (64, 15, 20, 32, 32, 1),
]


def _row(name: str, times: dict[str, float]) -> str:
    f32, bf16 = times["float32"], times["bfloat16"]
    return f"| {name} | {f32:.1f} | {bf16:.1f} | {bf16 / f32:.2f} |"


def _layers() -> list[str]:
    rows = []
    for batch, height, width, channels, outputs, stride in CONVS:
        keys = jax.random.split(jax.random.key(0))
        features = jax.random.normal(keys[0], (batch, height, width, channels))
        kernel = jax.random.normal(keys[1], (3, 3, channels, outputs))
        shape = f"conv {height}x{width} {channels}->{outputs} s{stride}, batch {batch}"
        forward, gradient = {}, {}
        for dtype in layers.COMPUTE_DTYPES:
            f, k = features.astype(dtype), kernel.astype(dtype)
            forward[dtype] = _best_ms(jax.jit(lambda f, k, s=stride: _conv(f, k, s)), f, k)
            grad = jax.jit(
                jax.grad(lambda f, k, s=stride: jnp.sum(_conv(f, k, s).astype(jnp.float32) ** 2), 1)
            )
            gradient[dtype] = _best_ms(grad, f, k)
        rows += [_row(shape + ", forward", forward), _row(shape + ", kernel gradient", gradient)]
    for m, k, n in [(19200, 576, 32), (2048, 2048, 2048)]:
        times = {}
        for dtype in layers.COMPUTE_DTYPES:
            a = jnp.ones((m, k), dtype)
            b = jnp.ones((k, n), dtype)
            times[dtype] = _best_ms(jax.jit(jnp.matmul), a, b)
        rows.append(_row(f"matmul ({m}x{k}) @ ({k}x{n})", times))
    return rows


def _network() -> list[str]:
    model = personalised.PersonalisedSaliencyNetwork(rngs=nnx.Rngs(0))
    models = {"float32": model}
    copy = personalised.PersonalisedSaliencyNetwork(
        dataclasses.replace(model.config, compute_dtype="bfloat16"), rngs=nnx.Rngs(1)
    )
    nnx.update(copy, nnx.state(model))
    models["bfloat16"] = copy
    rng = np.random.default_rng(0)
    inputs = jnp.asarray(rng.uniform(size=(64, 120, 160, 4)), jnp.float32)
    embedding = rng.normal(size=(64, model.config.embedding_size)).astype(np.float32)
    embedding = jnp.asarray(embedding / np.linalg.norm(embedding, axis=1, keepdims=True))

    @nnx.jit
    def forward(model, inputs, embedding):
        return model(inputs, embedding)

    @nnx.jit
    def gradient(model, inputs, embedding):
        def loss(model):
            return sum(jnp.sum(output**2) for output in model(inputs, embedding))

        return nnx.grad(loss)(model)

    forwards, gradients, outputs = {}, {}, {}
    for dtype, network in models.items():
        outputs[dtype] = forward(network, inputs, embedding)
        forwards[dtype] = _best_ms(forward, network, inputs, embedding)
        gradients[dtype] = _best_ms(gradient, network, inputs[:32], embedding[:32])
    pairs = zip(outputs["float32"], outputs["bfloat16"], strict=True)
    difference = max(float(jnp.abs(a - b).max()) for a, b in pairs)
    scale = max(float(jnp.abs(a).max()) for a in outputs["float32"])
    return [
        _row("PSM network forward, batch 64", forwards),
        _row("PSM network parameter gradient, batch 32", gradients),
        f"\nbf16 outputs against float32 (batch 64, untrained network): largest difference "
        f"{difference:.2e} (largest float32 output {scale:.2e})",
    ]


def main(argv):
    del argv
    print(f"jax {jax.__version__}, {jax.devices()[0].device_kind}, best of {_REPEATS.value}")
    print("| what | float32 ms | bfloat16 ms | bf16 / f32 |\n|---|---|---|---|")
    for row in _layers() + _network():
        print(row, flush=True)


if __name__ == "__main__":
    xla_defaults.apply()  # before JAX starts a backend (as the launchers do)
    app.run(main, flags_parser=cli.parse_flags)  # --help exits 0
