"""Ours against the PyTorch twin (`benchmarks/pytorch_twin.py`), same process, interleaved rounds.

    pip install -e '.[bench]'        # torch; the figures in RESULTS.md used torch 2.13.0+cpu
    .venv/bin/python benchmarks/bench_vs_pytorch.py [--rounds=5] [--cases=infer_1,infer_64,...]

First the twin is loaded with our randomly initialised weights and checked: the PSM network's
three outputs, one SGD step's parameters, and the encoder's embeddings must agree (largest absolute
differences printed; the run stops if they do not). Then every case runs once per round, ours and
the twin's alternately, for `--rounds` rounds; the figure is each side's median round, the ratio
ours / twin of throughputs from the same run (a ratio > 1: ours is faster).

Cases:
  infer_1, infer_64   PSM network forward (all three outputs), batch 1 and 64, images/s;
  train_32            PSM network train step, batch 32, the paper's optimiser (SGD 0.02, momentum
                      0.9, weight decay 5e-4) and deep-supervised MSE; ours is the library's own
                      data-parallel step (`psm_jax.train.step`), examples/s;
  encode_256          encoder forward, 256 sets of m = 8 pairs, eval mode, sets/s;
  encoder_train_16    encoder train step as the main job runs it: 16 sets of m = 8, Adam 1e-3,
                      triplet loss (margin 0.05, semi-hard), BatchNorm and dropout in train mode.

Ours runs with psm_jax's default XLA flags (`psm_jax/xla_defaults.py`, printed);
`PSM_JAX_XLA_DEFAULTS=0` runs it without them.
`--compute_dtype=bfloat16` times our models computing in bf16 (the same float32 parameters; the
agreement check and the twin stay float32).

"% of peak" divides the FLOPs of one call (XLA's cost analysis of our compiled program; the twin
does the same work) by its time and by this CPU's FP32 peak, `--peak_gflops` (default: cores x
clock x 64 FLOP/cycle with AVX-512 (two 16-wide FMA units), x 32 with AVX2 only; an assumption
about the hardware, printed).
"""

# ruff: noqa: E402 - torch is checked for before it is imported
from __future__ import annotations

import dataclasses
import importlib.util
import json
import os
import platform
import statistics
import sys
import time

if importlib.util.find_spec("torch") is None:  # before the imports that need it
    sys.exit(
        "bench_vs_pytorch.py compares with PyTorch, which this Python lacks: "
        "`make bench-twin` installs it "
        "(or .venv/bin/python -m pip install -e '.[bench]')."
    )

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytorch_twin as twin_lib
import torch
from absl import app, flags
from flax import nnx

from psm_jax import cli, losses, xla_defaults
from psm_jax.models import embedding as embedding_lib
from psm_jax.models import layers, personalised

CASES = ("infer_1", "infer_64", "train_32", "encode_256", "encoder_train_16")
_CASES = flags.DEFINE_list("cases", list(CASES), "Which cases to time.")
_ROUNDS = flags.DEFINE_integer("rounds", 5, "Interleaved rounds; each side's median is reported.")
_SECONDS = flags.DEFINE_float("seconds", 1.0, "About how long one side of one round runs.")
_PAUSE = flags.DEFINE_float("pause", 0.5, "Seconds of rest before each side of each round.")
_PEAK = flags.DEFINE_float(
    "peak_gflops", 0.0, "FP32 peak of this CPU; 0: cores x GHz x 64 (32: AVX2)."
)
_OUTPUT = flags.DEFINE_string("output", None, "Also write the results as JSON here.")
_FORMULATION = flags.DEFINE_enum(
    "formulation", "auto", layers.FORMULATIONS, "Our dynamic layer's per-example convolution."
)
_COMPUTE_DTYPE = flags.DEFINE_enum(
    "compute_dtype",
    "float32",
    layers.COMPUTE_DTYPES,
    "The dtype our timed models compute in (parameters float32; the agreement check and the "
    "twin stay float32).",
)

H, W = 120, 160


def _peak_gflops() -> float:
    if _PEAK.value:
        return _PEAK.value
    ghz, flops_per_cycle = 0.0, 64
    try:
        with open("/proc/cpuinfo") as f:
            lines = f.read().splitlines()
        ghz = max(float(line.split(":")[1]) for line in lines if line.startswith("cpu MHz")) / 1e3
        flags_line = next((line for line in lines if line.startswith("flags")), "")
        flops_per_cycle = 64 if "avx512f" in flags_line.split() else 32
    except (OSError, ValueError):
        pass
    return (os.cpu_count() or 1) * (ghz or 2.0) * flops_per_cycle


def _flops(lower) -> float:
    """FLOPs of the program that `lower()` lowers (a fresh trace), by XLA's cost analysis, with
    every stride-2 convolution in XLA's strided form: the space-to-depth form that the first
    layers run (`layers.SPACE_TO_DEPTH_MAX_CHANNELS`) multiplies zero taps, which is not useful
    arithmetic."""
    saved = layers.SPACE_TO_DEPTH_MAX_CHANNELS
    layers.SPACE_TO_DEPTH_MAX_CHANNELS = 0
    try:
        compiled = lower().compile()
    finally:
        layers.SPACE_TO_DEPTH_MAX_CHANNELS = saved
    analysis = compiled.cost_analysis()
    if isinstance(analysis, list):
        analysis = analysis[0]
    return float(analysis.get("flops", 0.0)) if analysis else 0.0


def _shifted_matmul(model):
    """The same network with its dynamic layer as batched matmuls: no loop in the program."""
    config = dataclasses.replace(model.config, dynamic_formulation="shifted_matmul")
    return personalised.PersonalisedSaliencyNetwork(config, rngs=nnx.Rngs(0))


def _forward_flops(model, inputs, embedding) -> float:
    """FLOPs of the forward pass, read from the loop-free twin of `model`: XLA's cost analysis
    counts a while loop's body once, and the arithmetic is the same."""
    graphdef, state = nnx.split(_shifted_matmul(model))
    forward = jax.jit(lambda state, x, e: nnx.merge(graphdef, state)(x, e))
    return _flops(lambda: forward.lower(state, inputs, embedding))


class Case:
    """One workload: ours() and twin() each run one call and block until it is done."""

    def __init__(self, name, unit, per_call, ours, twin, flops):
        self.name, self.unit, self.per_call = name, unit, per_call
        self.ours, self.twin, self.flops = ours, twin, flops


def _timed(function, calls: int) -> float:
    start = time.perf_counter()
    for _ in range(calls):
        function()
    return (time.perf_counter() - start) / calls


# --------------------------------------------------------------------------- the PSM network


def _psm_inputs(rng, batch):
    inputs = rng.random((batch, H, W, 4), dtype=np.float32) - 0.5
    embedding = rng.normal(size=(batch, 32)).astype(np.float32)
    return inputs, embedding


def _psm_forward_case(model, twin, batch: int, rng) -> Case:
    graphdef, state = nnx.split(model)

    @jax.jit
    def forward(state, inputs, embedding):
        return nnx.merge(graphdef, state)(inputs, embedding)

    inputs, embedding = _psm_inputs(rng, batch)
    inputs_j, embedding_j = jax.device_put(inputs), jax.device_put(embedding)
    compiled = forward.lower(state, inputs_j, embedding_j).compile()
    inputs_t, embedding_t = twin_lib.to_torch(inputs), torch.from_numpy(embedding)
    flops = _forward_flops(model, inputs_j, embedding_j)

    def ours():
        jax.block_until_ready(compiled(state, inputs_j, embedding_j))

    def theirs():
        with torch.inference_mode():
            twin(inputs_t, embedding_t)

    return Case(f"infer_{batch}", "images/s", batch, ours, theirs, flops)


def _psm_train_case(model, twin, rng) -> Case:
    from psm_jax.train import step as train_step

    batch = 32
    tx = optax.chain(optax.add_decayed_weights(5e-4), optax.sgd(0.02, momentum=0.9))

    def loss_fn(model, batch, observer):
        del observer
        outputs = model(layers.model_input(batch["image"], batch["usm"]), batch["embedding"])
        return losses.deep_supervised_mse(outputs, batch["discrepancy"]), {}

    graphdef, state = train_step.init_state(model, tx)
    mesh = train_step.data_mesh()
    # The step donates its state: copies, so the other cases' arrays stay alive.
    state = train_step.replicate(jax.tree.map(jnp.copy, state), mesh)
    step = train_step.compile_step(train_step.make_step(graphdef, tx, loss_fn, None), mesh)
    images = rng.integers(0, 256, (batch, H, W, 3), dtype=np.uint8)
    usm = rng.random((batch, H, W), dtype=np.float32)
    target = rng.random((batch, 15, 20), dtype=np.float32) - 0.5
    embedding = rng.normal(size=(batch, 32)).astype(np.float32)
    local = {
        "image": images,
        "usm": usm,
        "discrepancy": target,
        "embedding": embedding,
        "observer": np.zeros(batch, np.int32),
    }
    global_batch = train_step.global_batch(local, mesh)
    compiled = step.lower(state, global_batch).compile()
    holder = {"state": state}
    loop_free = _shifted_matmul(model)
    loop_free_graphdef, loop_free_state = train_step.init_state(loop_free, tx)
    flops = _flops(
        lambda: train_step.compile_step(
            train_step.make_step(loop_free_graphdef, tx, loss_fn, None), mesh
        ).lower(loop_free_state, global_batch)
    )

    def ours():
        holder["state"], measurements = compiled(holder["state"], global_batch)
        jax.block_until_ready(measurements)

    optimizer = torch.optim.SGD(twin.parameters(), lr=0.02, momentum=0.9, weight_decay=5e-4)
    inputs_t = twin_lib.to_torch(np.asarray(layers.model_input(images, usm)))
    target_t, embedding_t = torch.from_numpy(target), torch.from_numpy(embedding)

    def theirs():
        optimizer.zero_grad(set_to_none=True)
        loss = twin_lib.deep_supervised_mse(twin(inputs_t, embedding_t), target_t)
        loss.backward()
        optimizer.step()

    return Case("train_32", "examples/s", batch, ours, theirs, flops)


# --------------------------------------------------------------------------- the encoder


def _encoder_inputs(rng, sets, m):
    images = rng.integers(0, 256, (sets, m, H, W, 3), dtype=np.uint8)
    psms = rng.random((sets, m, H, W), dtype=np.float32)
    return images, psms


def _encode_case(encoder, twin, rng) -> Case:
    sets, m = 256, 8
    encoder.eval()
    graphdef, state = nnx.split(encoder)

    def embed(state, images, psms):
        return nnx.merge(graphdef, state)(images, psms)

    forward = jax.jit(embed)

    images, psms = _encoder_inputs(rng, sets, m)
    images_j, psms_j = jax.device_put(images), jax.device_put(psms)
    compiled = forward.lower(state, images_j, psms_j).compile()
    flat = np.asarray(layers.model_input(images, psms)).reshape(sets * m, H, W, 4)
    inputs_t = twin_lib.to_torch(flat)
    twin.eval()

    def ours():
        jax.block_until_ready(compiled(state, images_j, psms_j))

    def theirs():
        with torch.inference_mode():
            twin(inputs_t, m)

    flops = _flops(lambda: jax.jit(lambda *a: embed(*a)).lower(state, images_j, psms_j))
    return Case("encode_256", "sets/s", sets, ours, theirs, flops)


def _encoder_train_case(encoder, twin, rng) -> Case:
    from psm_jax.train import step as train_step

    sets, m = 16, 8
    encoder.train()
    tx = optax.adam(1e-3)

    def loss_fn(model, batch, observer):
        user_embedding = model(batch["images"], batch["psms"])
        return losses.triplet_loss(user_embedding, observer, 0.05, "semi_hard"), {}

    graphdef, state = train_step.init_state(encoder, tx)
    mesh = train_step.data_mesh()
    state = train_step.replicate(jax.tree.map(jnp.copy, state), mesh)
    step = train_step.compile_step(train_step.make_step(graphdef, tx, loss_fn, None), mesh)
    images, psms = _encoder_inputs(rng, sets, m)
    labels = np.repeat(np.arange(sets // 2), 2).astype(np.int32)
    local = {"images": images, "psms": psms, "observer": labels}
    global_batch = train_step.global_batch(local, mesh)
    compiled = step.lower(state, global_batch).compile()
    holder = {"state": state}

    def ours():
        holder["state"], measurements = compiled(holder["state"], global_batch)
        jax.block_until_ready(measurements)

    twin.train()
    optimizer = torch.optim.Adam(twin.parameters(), lr=1e-3)
    flat = np.asarray(layers.model_input(images, psms)).reshape(sets * m, H, W, 4)
    inputs_t, labels_t = twin_lib.to_torch(flat), torch.from_numpy(labels).long()

    def theirs():
        optimizer.zero_grad(set_to_none=True)
        loss = twin_lib.triplet_loss(twin(inputs_t, m), labels_t)
        loss.backward()
        optimizer.step()

    flops = _flops(
        lambda: train_step.compile_step(
            train_step.make_step(graphdef, tx, loss_fn, None), mesh
        ).lower(holder["state"], global_batch)
    )
    return Case("encoder_train_16", "sets/s", sets, ours, theirs, flops)


# --------------------------------------------------------------------------- agreement


def check_agreement(model, encoder, rng) -> dict:
    """Largest absolute differences between ours and the twin on the same weights and inputs."""
    twin = twin_lib.psm_network_from(model)
    inputs, embedding = _psm_inputs(rng, 8)
    ours = [np.asarray(o) for o in model(jnp.asarray(inputs), jnp.asarray(embedding))]
    with torch.no_grad():
        theirs = [o.numpy() for o in twin(twin_lib.to_torch(inputs), torch.from_numpy(embedding))]
    result = {
        "psm_outputs": max(float(np.abs(a - b).max()) for a, b in zip(ours, theirs, strict=True))
    }

    # One SGD step (no momentum yet on the first step; weight decay included) on both sides.
    target = rng.random((8, 15, 20), dtype=np.float32) - 0.5
    step_model = nnx.clone(model)

    def loss(model):
        outputs = model(jnp.asarray(inputs), jnp.asarray(embedding))
        return losses.deep_supervised_mse(outputs, jnp.asarray(target))

    tx = optax.chain(optax.add_decayed_weights(5e-4), optax.sgd(0.02, momentum=0.9))
    optimizer = nnx.Optimizer(step_model, tx, wrt=nnx.Param)
    optimizer.update(step_model, nnx.grad(loss)(step_model))
    torch_optimizer = torch.optim.SGD(twin.parameters(), lr=0.02, momentum=0.9, weight_decay=5e-4)
    twin_loss = twin_lib.deep_supervised_mse(
        twin(twin_lib.to_torch(inputs), torch.from_numpy(embedding)), torch.from_numpy(target)
    )
    twin_loss.backward()
    torch_optimizer.step()
    stepped = twin_lib.psm_network_from(step_model)
    result["sgd_step_parameters"] = max(
        float((a - b).abs().max())
        for a, b in zip(stepped.parameters(), twin.parameters(), strict=True)
    )

    encoder.eval()
    images, psms = _encoder_inputs(rng, 4, 8)
    ours_e = np.asarray(encoder(jnp.asarray(images), jnp.asarray(psms)))
    twin_e = twin_lib.encoder_from(encoder).eval()
    flat = np.asarray(layers.model_input(images, psms)).reshape(32, H, W, 4)
    with torch.no_grad():
        theirs_e = twin_e(twin_lib.to_torch(flat), 8).numpy()
    result["encoder_embeddings"] = float(np.abs(ours_e - theirs_e).max())
    return result


def _in_compute_dtype(module: nnx.Module, dtype: str) -> nnx.Module:
    """The same model (same float32 parameters) computing in `dtype`."""
    if dtype == module.config.compute_dtype:
        return module
    config = dataclasses.replace(module.config, compute_dtype=dtype)
    copy = type(module)(config, rngs=nnx.Rngs(0))
    nnx.update(copy, nnx.state(module))
    return copy


def main(argv):
    del argv
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    config = personalised.SaliencyNetworkConfig(dynamic_formulation=_FORMULATION.value)
    model = personalised.PersonalisedSaliencyNetwork(config, rngs=nnx.Rngs(0))
    encoder = embedding_lib.UserEmbeddingEncoder(rngs=nnx.Rngs(1))
    agreement = check_agreement(model, encoder, rng)
    print("agreement (largest absolute difference):", json.dumps(agreement), flush=True)
    if max(agreement.values()) > 1e-4:
        raise SystemExit("The twin does not compute what ours computes; no timing.")
    model = _in_compute_dtype(model, _COMPUTE_DTYPE.value)
    encoder = _in_compute_dtype(encoder, _COMPUTE_DTYPE.value)

    builders = {
        "infer_1": lambda: _psm_forward_case(
            model, twin_lib.psm_network_from(model).eval(), 1, rng
        ),
        "infer_64": lambda: _psm_forward_case(
            model, twin_lib.psm_network_from(model).eval(), 64, rng
        ),
        "train_32": lambda: _psm_train_case(
            nnx.clone(model), twin_lib.psm_network_from(model), rng
        ),
        "encode_256": lambda: _encode_case(nnx.clone(encoder), twin_lib.encoder_from(encoder), rng),
        "encoder_train_16": lambda: _encoder_train_case(
            nnx.clone(encoder), twin_lib.encoder_from(encoder), rng
        ),
    }
    cases = [builders[name]() for name in _CASES.value]
    calls = {}
    for case in cases:  # warm up both sides; size each side's round to about --seconds
        for side in (case.ours, case.twin):
            side()
        one = min(_timed(case.ours, 1), _timed(case.twin, 1))
        calls[case.name] = max(1, int(_SECONDS.value / max(one, 1e-6)))
    times = {case.name: {"ours": [], "twin": []} for case in cases}
    for round_index in range(_ROUNDS.value):
        for case in cases:
            # A pause before each side: PyTorch's OpenMP threads spin for a while after a
            # parallel region and would slow whatever runs next on these 2 cores.
            time.sleep(_PAUSE.value)
            times[case.name]["ours"].append(_timed(case.ours, calls[case.name]))
            time.sleep(_PAUSE.value)
            times[case.name]["twin"].append(_timed(case.twin, calls[case.name]))
        print(f"round {round_index + 1}/{_ROUNDS.value} done", flush=True)

    peak = _peak_gflops()
    results = {
        "machine": f"{platform.node()}, {os.cpu_count()} cores, {platform.processor()}",
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "jax": jax.__version__,
        "xla_flags": os.environ.get("XLA_FLAGS", ""),  # psm_jax's defaults included
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "peak_gflops_assumed": round(peak, 1),
        "rounds": _ROUNDS.value,
        "formulation": _FORMULATION.value,
        "compute_dtype": _COMPUTE_DTYPE.value,
        "agreement": agreement,
        "cases": {},
    }
    print(f"\nXLA_FLAGS: {results['xla_flags'] or '(none)'}")
    print(f"FP32 peak assumed: {peak:.0f} GFLOP/s; medians of {_ROUNDS.value} rounds")
    print("| case | ours | PyTorch twin | ours / twin | ours, % of peak | twin, % of peak |")
    print("|---|---|---|---|---|---|")
    for case in cases:
        ours_s = statistics.median(times[case.name]["ours"])
        twin_s = statistics.median(times[case.name]["twin"])
        ours_rate, twin_rate = case.per_call / ours_s, case.per_call / twin_s
        row = {
            "unit": case.unit,
            "ours": round(ours_rate, 1),
            "twin": round(twin_rate, 1),
            "ratio": round(ours_rate / twin_rate, 3),
            "ours_peak_percent": round(100 * case.flops / ours_s / 1e9 / peak, 1),
            "twin_peak_percent": round(100 * case.flops / twin_s / 1e9 / peak, 1),
            "gflop_per_call": round(case.flops / 1e9, 3),
            "ours_rounds_s": [round(t, 5) for t in times[case.name]["ours"]],
            "twin_rounds_s": [round(t, 5) for t in times[case.name]["twin"]],
        }
        results["cases"][case.name] = row
        print(
            f"| {case.name} | {row['ours']:,.1f} {case.unit} | {row['twin']:,.1f} | "
            f"{row['ratio']:.2f} | {row['ours_peak_percent']}% | {row['twin_peak_percent']}% |"
        )
    print(json.dumps(results))
    if _OUTPUT.value:
        with open(_OUTPUT.value, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    xla_defaults.apply()  # before JAX starts a backend (as the launchers do)
    app.run(main, flags_parser=cli.parse_flags)  # --help exits 0
