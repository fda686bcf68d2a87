"""The train step: observer-sparse updates against a dense update, the non-finite guard."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from psm_jax import losses
from psm_jax.models import layers, multi_task
from psm_jax.train import step as train_step

NUM_OBSERVERS = 6
CONFIG = multi_task.MultiTaskConfig(trunk_widths=(4, 4, 4, 4), head_widths=(4, 4, 4))


def _batch():
    keys = jax.random.split(jax.random.key(1))
    return {
        "inputs": jax.random.normal(keys[0], (5, 32, 48, 4)),
        "target": 0.1 * jax.random.normal(keys[1], (5, 4, 6)),
        "observer": jnp.array([3, 1, 3, 5, 1]),
    }


def _loss(model, batch, slot_of_example):
    outputs = model(batch["inputs"], slot_of_example)
    return losses.deep_supervised_mse(outputs, batch["target"]), {}


def _dense_sgd_step(model, batch, learning_rate, momentum_trace=None, momentum=0.0):
    params = nnx.state(model, nnx.Param)

    def objective(params):
        merged = nnx.merge(nnx.graphdef(model), params)
        outputs = merged(batch["inputs"], batch["observer"])
        return losses.deep_supervised_mse(outputs, batch["target"])

    grads = jax.grad(objective)(params)
    return jax.tree.map(lambda p, g: p - learning_rate * g, params, grads)


def _leaves(state):
    return jax.tree.leaves(jax.tree.map(np.asarray, state))


def test_observer_slots_pad_with_an_out_of_range_id():
    slots, slot_of_example = train_step.observer_slots(jnp.array([4, 2, 4, 0]), 5)
    np.testing.assert_array_equal(slots, [0, 2, 4, 5])
    np.testing.assert_array_equal(slot_of_example, [2, 1, 2, 0])


@pytest.mark.slow
def test_sparse_step_equals_the_dense_step_for_plain_sgd():
    model = multi_task.MultiTaskCNN(NUM_OBSERVERS, CONFIG, rngs=nnx.Rngs(0))
    batch = _batch()
    expected = _dense_sgd_step(model, batch, 0.5)
    tx = optax.sgd(0.5)
    graphdef, state = train_step.init_state(model, tx)
    step = jax.jit(train_step.make_step(graphdef, tx, _loss, NUM_OBSERVERS))
    state, measurements = step(state, batch)
    assert np.isfinite(float(measurements["loss"])) and int(state.step) == 1
    updated = nnx.state(train_step.merge(graphdef, state), nnx.Param)
    for got, want in zip(_leaves(updated), _leaves(expected), strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_sparse_momentum_leaves_absent_observers_untouched():
    model = multi_task.MultiTaskCNN(NUM_OBSERVERS, CONFIG, rngs=nnx.Rngs(0))
    before = nnx.state(model, layers.ObserverParam)
    tx = optax.chain(optax.add_decayed_weights(5e-4), optax.sgd(0.5, momentum=0.9))
    graphdef, state = train_step.init_state(model, tx)
    step = jax.jit(train_step.make_step(graphdef, tx, _loss, NUM_OBSERVERS))
    batch = _batch()
    state, _ = step(state, batch)
    second = dict(batch, observer=jnp.array([1, 1, 1, 1, 1]))
    state, _ = step(state, second)
    after = state.observer_params
    present, absent = [1, 3, 5], [0, 2, 4]
    for old, new in zip(_leaves(before), _leaves(after), strict=True):
        np.testing.assert_array_equal(old[absent], new[absent])
        kernels_changed = [not np.array_equal(old[o], new[o]) for o in present]
        assert all(kernels_changed)
    # Observer 3's momentum was written on step 1 and kept (not decayed) on step 2.
    trace = [leaf for leaf in jax.tree.leaves(state.observer_opt_state) if np.ndim(leaf) > 1]
    assert trace and all(np.any(np.asarray(leaf)[3] != 0) for leaf in trace if leaf.shape[-1] > 1)


@pytest.mark.slow
def test_a_non_finite_step_changes_nothing_and_is_recorded():
    model = multi_task.MultiTaskCNN(NUM_OBSERVERS, CONFIG, rngs=nnx.Rngs(0))
    tx = optax.sgd(0.5, momentum=0.9)
    graphdef, state = train_step.init_state(model, tx)

    def loss(model, batch, observer):
        value, measurements = _loss(model, batch, observer)
        return value * batch["scale"][0], measurements

    step = jax.jit(train_step.make_step(graphdef, tx, loss, NUM_OBSERVERS))
    good = dict(_batch(), scale=jnp.ones(5))
    bad = dict(_batch(), scale=jnp.full(5, jnp.nan))
    state, _ = step(state, good)
    before = _leaves(state)
    state, measurements = step(state, bad)
    assert float(measurements["nonfinite"]) == 1.0
    assert int(state.nonfinite_step) == 1 and int(state.step) == 1
    for old, new in zip(before[:-1], _leaves(state)[:-1], strict=True):
        np.testing.assert_array_equal(old, new)
    state, measurements = step(state, good)  # later good steps go on; the first bad one is kept
    assert float(measurements["nonfinite"]) == 0.0 and int(state.nonfinite_step) == 1
