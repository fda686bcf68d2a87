"""Our stride-2 convolutions against PyTorch's (oneDNN), layer by layer, same process, interleaved.

    pip install -e '.[bench]'        # torch; RESULTS.md used torch 2.13.0+cpu
    .venv/bin/python benchmarks/bench_conv_layers.py [--rounds=5]

The 3x3 stride-2 'SAME' convolutions of the PSM network's trunk and of the user-embedding encoder,
alone (no bias, no activation), at the batch sizes the twin bench (`bench_vs_pytorch.py`) runs them:

  forward    the PSM trunk's three layers at batch 64 (`infer_64`), the encoder's four at 128;
  gradients  forward and backward at batch 32 (`train_32`) and 128 (the encoder's train step of
             16 sets x m = 8): the kernel gradient, and the input gradient for every layer but
             the first (whose input is data, so neither side computes it).

Ours is `psm_jax.models.layers.conv(x, k, stride=2)`, what the models call (on the CPU:
`layers.stride2_conv`), jitted; for the forward pass also its two forms alone, XLA's strided
convolution (`layers._strided_conv`) and the space-to-depth one (`layers._space_to_depth_conv`, a
stride-1 convolution on 2x2 blocks), between which `layers.SPACE_TO_DEPTH_MAX_CHANNELS` chooses.
PyTorch:
`F.conv2d(..., stride=2, padding=1)` on channels_last tensors, 2 threads; its symmetric padding
gives the same output size and FLOPs and spares the pad copy that 'SAME' needs (torch at its best).
Every timed call runs for about `--seconds`, each side alternately, for `--rounds` rounds; medians.
The speed-up column is PyTorch's time over ours (> 1: ours is faster).
"""

# ruff: noqa: E402 - torch is checked for before it is imported
from __future__ import annotations

import importlib.util
import json
import platform
import statistics
import sys
import time

if importlib.util.find_spec("torch") is None:  # before the imports that need it
    sys.exit(
        "bench_conv_layers.py compares with PyTorch, which this Python lacks: "
        "`make bench-twin` installs it "
        "(or .venv/bin/python -m pip install -e '.[bench]')."
    )

import jax
import jax.numpy as jnp
import numpy as np
import torch
import torch.nn.functional as F
from absl import app, flags

from psm_jax import cli, xla_defaults
from psm_jax.models import layers

_ROUNDS = flags.DEFINE_integer("rounds", 5, "Interleaved rounds; each side's median is reported.")
_SECONDS = flags.DEFINE_float("seconds", 0.3, "About how long one side of one round runs.")
_OUTPUT = flags.DEFINE_string("output", None, "Also write the results as JSON here.")

# (network, (height, width, in channels, out channels)) of every 3x3 stride-2 layer.
LAYERS = (
    ("psm trunk", (120, 160, 4, 16)),
    ("psm trunk", (60, 80, 16, 32)),
    ("psm trunk", (30, 40, 32, 64)),
    ("encoder", (120, 160, 4, 16)),
    ("encoder", (60, 80, 16, 32)),
    ("encoder", (30, 40, 32, 64)),
    ("encoder", (15, 20, 64, 128)),
)
BATCH = {("psm trunk", "forward"): 64, ("psm trunk", "gradients"): 32}
ENCODER_BATCH = 128


def _timed(function, seconds: float) -> float:
    function()
    start = time.perf_counter()
    function()
    once = time.perf_counter() - start
    calls = max(1, int(seconds / max(once, 1e-6)))
    start = time.perf_counter()
    for _ in range(calls):
        function()
    return (time.perf_counter() - start) / calls


def _cases(rng):
    """(name, {side: function}) for every layer and mode."""
    cases = []
    for network, (height, width, channels, outputs) in LAYERS:
        for mode in ("forward", "gradients"):
            batch = BATCH.get((network, mode), ENCODER_BATCH)
            x = rng.random((batch, height, width, channels), dtype=np.float32)
            k = (rng.standard_normal((3, 3, channels, outputs)) * 0.1).astype(np.float32)
            g = rng.standard_normal(
                (batch, -(-height // 2), -(-width // 2), outputs), dtype=np.float32
            )
            x_j, k_j, g_j = (jax.device_put(a) for a in (x, k, g))
            x_t = (
                torch.from_numpy(x)
                .permute(0, 3, 1, 2)
                .contiguous(memory_format=torch.channels_last)
            )
            k_t = (
                torch.from_numpy(k)
                .permute(3, 2, 0, 1)
                .contiguous(memory_format=torch.channels_last)
            )
            g_t = (
                torch.from_numpy(g)
                .permute(0, 3, 1, 2)
                .contiguous(memory_format=torch.channels_last)
            )
            wants_input_gradient = channels > 4
            sides = {}
            if mode == "forward":
                for label, conv in (
                    ("ours", lambda x, k: layers.conv(x, k, stride=2)),
                    ("XLA strided", layers._strided_conv),
                    ("space-to-depth", layers._space_to_depth_conv),
                ):
                    compiled = jax.jit(conv).lower(x_j, k_j).compile()
                    sides[label] = lambda c=compiled, x=x_j, k=k_j: jax.block_until_ready(c(x, k))

                def torch_forward(x_t=x_t, k_t=k_t):
                    with torch.inference_mode():
                        F.conv2d(x_t, k_t, stride=2, padding=1)

                sides["pytorch"] = torch_forward
            else:
                argnums = (0, 1) if wants_input_gradient else (1,)

                def loss(x, k, g):
                    return jnp.sum(layers.conv(x, k, stride=2) * g)

                compiled = jax.jit(jax.grad(loss, argnums)).lower(x_j, k_j, g_j).compile()
                sides["ours"] = lambda c=compiled, a=(x_j, k_j, g_j): jax.block_until_ready(c(*a))
                x_tg = x_t.detach().requires_grad_(wants_input_gradient)
                k_tg = k_t.detach().requires_grad_(True)

                def torch_gradients(x_tg=x_tg, k_tg=k_tg, g_t=g_t):
                    k_tg.grad = None
                    x_tg.grad = None
                    F.conv2d(x_tg, k_tg, stride=2, padding=1).backward(g_t)

                sides["pytorch"] = torch_gradients
            name = f"{network} {height}x{width} {channels}->{outputs}, {mode}, batch {batch}"
            cases.append((name, sides))
    return cases


def main(argv):
    del argv
    torch.set_num_threads(2)
    rng = np.random.default_rng(0)
    cases = _cases(rng)
    times = {name: {side: [] for side in sides} for name, sides in cases}
    for round_index in range(_ROUNDS.value):
        for name, sides in cases:
            for side, function in sides.items():
                times[name][side].append(_timed(function, _SECONDS.value))
        print(f"round {round_index + 1}/{_ROUNDS.value} done", flush=True)
    print(f"\njax {jax.__version__}, torch {torch.__version__}, medians of {_ROUNDS.value} rounds")
    print("| layer, mode, batch | ours | XLA strided | space-to-depth | PyTorch | PyTorch / ours |")
    print("|---|---|---|---|---|---|")
    results = {}
    for name, sides in times.items():
        medians = {side: statistics.median(values) * 1e3 for side, values in sides.items()}
        forms = [medians.get(side) for side in ("XLA strided", "space-to-depth")]
        print(
            f"| {name} | {medians['ours']:.2f} ms | "
            + " | ".join("-" if value is None else f"{value:.2f} ms" for value in forms)
            + f" | {medians['pytorch']:.2f} ms | {medians['pytorch'] / medians['ours']:.2f} |"
        )
        results[name] = {
            side: [round(v * 1e3, 3) for v in values] for side, values in sides.items()
        }
    if _OUTPUT.value:
        with open(_OUTPUT.value, "w") as f:
            json.dump(
                {
                    "date": time.strftime("%Y-%m-%d %H:%M"),
                    "machine": platform.processor() or platform.machine(),
                    "jax": jax.__version__,
                    "torch": torch.__version__,
                    "rounds_ms": results,
                },
                f,
                indent=1,
            )


if __name__ == "__main__":
    xla_defaults.apply()  # before JAX starts a backend (as the launchers do)
    app.run(main, flags_parser=cli.parse_flags)  # --help exits 0
