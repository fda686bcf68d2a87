"""Run in a subprocess with 4 CPU devices (see test_distributed.py): one train step of several
models on a 4-device mesh and on a 1-device mesh must give the same parameters.

Prints one line per model: "<model> <max abs difference>".
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from psm_jax import losses
from psm_jax.models import embedding, multi_task, personalised
from psm_jax.train import step as train_step

assert jax.device_count() == 4, jax.devices()
BATCH = 8


def _regression_batch(key):
    keys = jax.random.split(key, 4)
    return {
        "inputs": np.asarray(jax.random.normal(keys[0], (BATCH, 32, 48, 4))),
        "discrepancy": np.asarray(0.1 * jax.random.normal(keys[1], (BATCH, 4, 6))),
        "observer": np.asarray(jax.random.randint(keys[2], (BATCH,), 0, 5)),
        "embedding": np.asarray(jax.random.normal(keys[3], (BATCH, 6))),
    }


def _cases():
    rngs = nnx.Rngs(jax.random.key(0, impl="threefry2x32"))
    encoder = embedding.UserEmbeddingEncoder(
        embedding.EncoderConfig(widths=(4, 4, 4, 4), embedding_size=6), rngs=rngs
    )
    keys = jax.random.split(jax.random.key(1))
    sets = {
        "images": np.asarray(jax.random.uniform(keys[0], (BATCH, 3, 32, 48, 3))),
        "psms": np.asarray(jax.random.uniform(keys[1], (BATCH, 3, 32, 48))),
        "observer": np.array([0, 0, 1, 1, 2, 2, 3, 3]),
    }

    def triplet(model, batch, observer):
        return losses.triplet_loss(model(batch["images"], batch["psms"]), observer, 0.3), {}

    # SGD, not the encoder's Adam: Adam divides by the gradient's running RMS, so components whose
    # gradient is ~1e-9 (rounding noise either way) move by +-lr, which is not a sharding effect.
    sgd = optax.sgd(0.1, momentum=0.9)
    yield "embedding (BatchNorm, dropout)", encoder, triplet, sets, None, sgd

    def discrepancy(model, batch, observer):
        return losses.deep_supervised_mse(
            model(batch["inputs"], observer), batch["discrepancy"]
        ), {}

    config = multi_task.MultiTaskConfig(trunk_widths=(4, 4, 4, 4), head_widths=(4, 4, 4))
    model = multi_task.MultiTaskCNN(5, config, rngs=rngs)
    sgd = optax.chain(optax.add_decayed_weights(5e-4), optax.sgd(0.1, momentum=0.9))
    yield "multi_task (observer-sparse)", model, discrepancy, _regression_batch(keys[0]), 5, sgd

    network_config = personalised.SaliencyNetworkConfig(
        trunk_widths=(4, 4, 4),
        dynamic_width=4,
        head_width=4,
        embedding_size=6,
        hypernetwork_hidden=8,
    )
    network = personalised.PersonalisedSaliencyNetwork(network_config, rngs=rngs)

    def personalised_loss(model, batch, observer):
        outputs = model(batch["inputs"], batch["embedding"])
        return losses.deep_supervised_mse(outputs, batch["discrepancy"]), {}

    yield (
        "psm_network (hypernetwork)",
        network,
        personalised_loss,
        _regression_batch(keys[1]),
        None,
        sgd,
    )


for name, model, loss_fn, batch, num_observers, tx in _cases():
    model.train()
    results = []
    for devices in (jax.devices(), jax.devices()[:1]):
        graphdef, state = train_step.init_state(nnx.clone(model), tx)
        mesh = train_step.data_mesh(devices)
        # A copy: the step donates its state, which must not delete the model's own arrays.
        state = train_step.replicate(jax.tree.map(jnp.array, state), mesh)
        step = train_step.compile_step(
            train_step.make_step(graphdef, tx, loss_fn, num_observers), mesh
        )
        state, _ = step(state, train_step.global_batch(batch, mesh))
        state, _ = step(state, train_step.global_batch(batch, mesh))
        results.append(
            jax.tree.leaves(jax.device_get(nnx.state(train_step.merge(graphdef, state), nnx.Param)))
        )
    difference = max(float(jnp.max(jnp.abs(a - b))) for a, b in zip(*results, strict=True))
    print(f"{name}: {difference:.3g}", flush=True)
