"""Model benchmark: parameter counts, PSM-network forward speed and FLOPs, multi-task step time.

    .venv/bin/python benchmarks/bench_models.py [--repeats=20] [--observers=10,100,1000] [--dense]

Prints, for the default configurations:
  1. the parameter count of every model (the multi-task CNN and the per-observer networks at
     several observer counts);
  2. the personalised saliency network's (Strohm et al.) jitted forward pass, images/s at batch 1
     and batch 64 (median over `--repeats` timed calls after compilation), and the FLOPs per image
     from XLA's cost analysis of the compiled forward pass;
  3. the multi-task CNN's (Xu et al.) train step at the paper's batch 40 (SGD 3e-4, momentum 0.9,
     weight decay 5e-4, deep-supervised Euclidean loss) with 10, 100 and 1,000 observers, using the
     observer-sparse step (`psm_jax.train.step`); with `--dense`, also an ordinary dense step
     for comparison;
and a JSON line with all figures.
"""

import json
import os
import platform
import statistics
import time

import jax
import optax
from absl import app, flags
from flax import nnx

from psm_jax import cli, losses, xla_defaults
from psm_jax.models import (
    embedding,
    layers,
    multi_task,
    per_observer_networks,
    personalised,
    universal,
)
from psm_jax.train import step as train_step

_REPEATS = flags.DEFINE_integer("repeats", 20, "Timed calls per measurement.")
_OBSERVERS = flags.DEFINE_list("observers", ["10", "100", "1000"], "Multi-task observer counts.")
_DENSE = flags.DEFINE_bool("dense", False, "Also time a dense (all observers) multi-task step.")
_BATCHES = (1, 64)
MULTI_TASK_BATCH = 40


def _median_seconds(function, *args) -> float:
    jax.block_until_ready(function(*args))
    times = []
    for _ in range(_REPEATS.value):
        start = time.perf_counter()
        jax.block_until_ready(function(*args))
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def parameter_counts() -> dict[str, int]:
    rngs = nnx.Rngs(0)
    counts = {
        "user_embedding_encoder": embedding.UserEmbeddingEncoder(rngs=rngs),
        "personalised_saliency_network": personalised.PersonalisedSaliencyNetwork(rngs=rngs),
        "universal_saliency_network": universal.UniversalSaliencyNetwork(rngs=rngs),
        "multi_task_cnn_10_observers": multi_task.MultiTaskCNN(10, rngs=rngs),
        "multi_task_cnn_100_observers": multi_task.MultiTaskCNN(100, rngs=rngs),
        "multi_conv_nets_20_observers (xu, per observer)": per_observer_networks(
            "xu", 20, rngs=rngs
        ),
        "multi_cnn_20_observers (strohm, per observer)": per_observer_networks(
            "strohm", 20, rngs=rngs
        ),
    }
    return {name: layers.count_parameters(model) for name, model in counts.items()}


def psm_network_speed() -> dict:
    model = personalised.PersonalisedSaliencyNetwork(rngs=nnx.Rngs(0))
    graphdef, state = nnx.split(model)

    @jax.jit
    def forward(state, inputs, user_embedding):
        return nnx.merge(graphdef, state)(inputs, user_embedding)[-1]

    results = {}
    for batch in _BATCHES:
        keys = jax.random.split(jax.random.key(batch))
        inputs = jax.random.normal(keys[0], (batch, 120, 160, 4))
        user_embedding = embedding.normalise(jax.random.normal(keys[1], (batch, 32)))
        compiled = forward.lower(state, inputs, user_embedding).compile()
        cost = compiled.cost_analysis()
        cost = cost[0] if isinstance(cost, list) else cost
        seconds = _median_seconds(forward, state, inputs, user_embedding)
        results[f"batch_{batch}"] = {
            "images_per_s": round(batch / seconds, 1),
            "ms_per_call": round(1e3 * seconds, 3),
            "flops_per_image": int(cost["flops"] / batch),
        }
    return results


def _multi_task_step(num_observers: int, dense: bool) -> float:
    model = multi_task.MultiTaskCNN(num_observers, rngs=nnx.Rngs(0))
    tx = optax.chain(optax.add_decayed_weights(5e-4), optax.sgd(3e-4, momentum=0.9))
    keys = jax.random.split(jax.random.key(1), 3)
    batch = {
        "inputs": jax.random.normal(keys[0], (MULTI_TASK_BATCH, 120, 160, 4)),
        "target": 0.1 * jax.random.normal(keys[1], (MULTI_TASK_BATCH, 15, 20)),
        "observer": jax.random.randint(keys[2], (MULTI_TASK_BATCH,), 0, num_observers),
    }

    def loss_fn(model, batch, observer):
        outputs = model(batch["inputs"], observer)
        return losses.deep_supervised_mse(outputs, batch["target"], reduction="caffe_euclidean"), {}

    if dense:
        graphdef, params = nnx.split(model, nnx.Param)
        opt_state = tx.init(params)

        def step(carry, batch):
            params, opt_state = carry
            grads = jax.grad(
                lambda p: loss_fn(nnx.merge(graphdef, p), batch, batch["observer"])[0]
            )(params)
            updates, opt_state = tx.update(grads, opt_state, params)
            return optax.apply_updates(params, updates), opt_state

        carry = (params, opt_state)
    else:
        graphdef, carry = train_step.init_state(model, tx)
        sparse_step = train_step.make_step(graphdef, tx, loss_fn, num_observers)

        def step(state, batch):
            return sparse_step(state, batch)[0]

    del model
    jitted = jax.jit(step, donate_argnums=0)
    carry = jitted(carry, batch)
    jax.block_until_ready(carry)
    times = []
    for _ in range(max(3, _REPEATS.value // 4)):
        start = time.perf_counter()
        carry = jitted(carry, batch)
        jax.block_until_ready(carry)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main(argv):
    del argv
    figures = {
        "machine": f"{platform.node()} {os.cpu_count()} cores, {jax.devices()[0].platform}",
        "date": time.strftime("%Y-%m-%d"),
        "jax": jax.__version__,
    }
    figures["parameters"] = parameter_counts()
    for name, count in figures["parameters"].items():
        print(f"parameters  {name:50s} {count:>12,d}")
    figures["psm_network_forward"] = psm_network_speed()
    for batch, result in figures["psm_network_forward"].items():
        print(
            f"PSM network forward, {batch}: {result['images_per_s']:.1f} images/s "
            f"({result['ms_per_call']:.2f} ms per call), "
            f"{result['flops_per_image'] / 1e6:.1f} MFLOP per image"
        )
    figures["multi_task_step_s"] = {}
    for kind in ["sparse", "dense"] if _DENSE.value else ["sparse"]:
        for num_observers in map(int, _OBSERVERS.value):
            seconds = _multi_task_step(num_observers, dense=kind == "dense")
            figures["multi_task_step_s"][f"{kind}_{num_observers}"] = round(seconds, 4)
            print(
                f"multi-task CNN {kind} train step, batch {MULTI_TASK_BATCH}, "
                f"{num_observers} observers: {1e3 * seconds:.1f} ms"
            )
    print(json.dumps(figures))


if __name__ == "__main__":
    xla_defaults.apply()  # before JAX starts a backend (as the launchers do)
    app.run(main, flags_parser=cli.parse_flags)  # --help exits 0
