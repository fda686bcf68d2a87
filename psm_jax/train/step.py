"""The train state and the one pure train step every model uses.

**State.** A model is split into per-observer parameters (`layers.ObserverParam`, stacked over
observers), the other parameters, and the rest (BatchNorm statistics, dropout RNG state); the
optimizer state of each parameter group is kept beside it (`TrainState`).

**Observer-sparse update.** Models with parameters stacked over observers (Xu et al.'s per-observer
heads, the per-observer baselines) would, with an ordinary step, pay for every observer on every
step: the gradient of a gather is a dense (N, ...) array, and the optimizer reads and writes all N
rows of parameters and state. The step instead gathers the rows of the batch's distinct observers
(at most B of them, a fixed size so it compiles once), differentiates and updates those rows, and
scatters them back: the cost per step is independent of N. The semantics are those of "lazy" sparse
optimizers (TensorFlow's LazyAdam, sparse embeddings): an observer's rows and their optimizer state
(momentum, weight decay) change only on steps where the observer is in the batch. For plain SGD
this equals the dense update exactly; with momentum or weight decay the dense update would also
keep moving (and shrinking) absent observers' heads, which Caffe, the framework of Xu et al., did.
Shared parameters get the ordinary dense update. Optax transforms whose state mirrors the params
(SGD, momentum, Adam, weight decay, ...) are supported; scalar state such as Adam's step count
stays shared across observers.

**Non-finite guard.** If the loss or any gradient is NaN or infinite, the step leaves the state as
it was and records the step number in `nonfinite_step` (-1 while all is well); the loop checks it
and stops, naming the step, and the last checkpoint (all finite) stays.

**Data parallelism.** `compile_step` jits the step with the batch sharded over the `data` axis of a
mesh of every device of every process and the state replicated: XLA computes the loss over the
global batch, so gradients are averaged across devices and BatchNorm statistics are global, which is
pmap's semantics, written with `jax.jit` + `NamedSharding`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from psm_jax.models import layers

DATA_AXIS = "data"

LossFn = Callable[[nnx.Module, Any, jax.Array], tuple[jax.Array, dict]]


@flax.struct.dataclass
class TrainState:
    """A model and its optimizer, split so that observer rows can be updated alone."""

    step: jax.Array
    observer_params: Any  # nnx.State of ObserverParam, leaves (N, ...)
    params: Any  # nnx.State of the other nnx.Param
    rest: Any  # everything else (BatchNorm statistics, RNG state, ...)
    observer_opt_state: Any
    opt_state: Any
    nonfinite_step: jax.Array  # -1, or the first step whose loss or gradient was not finite


def init_state(
    model: nnx.Module,
    tx: optax.GradientTransformation,
    shared_tx: optax.GradientTransformation | None = None,
):
    """Splits `model` and initialises the optimizer: (graphdef, TrainState).

    `shared_tx`, if given, is the optimiser of the parameters that are not per-observer (default:
    `tx`); `optax.set_to_zero()` freezes them (Xu et al.'s new head for a new observer)."""
    shared_tx = tx if shared_tx is None else shared_tx
    graphdef, observer_params, params, rest = nnx.split(model, layers.ObserverParam, nnx.Param, ...)
    state = TrainState(
        step=jnp.zeros((), jnp.int32),
        observer_params=observer_params,
        params=params,
        rest=rest,
        observer_opt_state=tx.init(observer_params),
        opt_state=shared_tx.init(params),
        nonfinite_step=jnp.full((), -1, jnp.int32),
    )
    return graphdef, state


def merge(graphdef, state: TrainState) -> nnx.Module:
    """The model back from a TrainState."""
    return nnx.merge(graphdef, state.observer_params, state.params, state.rest)


def observer_slots(observer: jax.Array, num_observers: int) -> tuple[jax.Array, jax.Array]:
    """The distinct observers of a batch, padded to the batch size.

    Returns:
      (slots, slot_of_example): slots (B,) the distinct observer ids in increasing order, padded
      with `num_observers` (out of range: gathers clip, scatters drop it); slot_of_example (B,) the
      position of each example's observer in `slots`.
    """
    slots, slot_of_example = jnp.unique(
        observer, size=observer.shape[0], fill_value=num_observers, return_inverse=True
    )
    return slots, slot_of_example.reshape(observer.shape)


def gather_rows(tree, slots: jax.Array):
    return jax.tree.map(lambda rows: jnp.take(rows, slots, axis=0, mode="clip"), tree)


def scatter_rows(full_tree, local_tree, slots: jax.Array):
    return jax.tree.map(
        lambda full, local: full.at[slots].set(local, mode="drop"), full_tree, local_tree
    )


def _map_param_leaves(tx, function, opt_state, *others):
    """Applies `function` to the param-shaped leaves of optimizer states; other leaves: the last."""
    is_param = optax.tree_utils.tree_map_params(
        tx, lambda _: True, opt_state, transform_non_params=lambda _: False
    )
    return jax.tree.map(
        lambda flag, leaf, *other: (
            function(leaf, *other) if flag else (other[0] if other else leaf)
        ),
        is_param,
        opt_state,
        *others,
    )


def _all_finite(*trees) -> jax.Array:
    leaves = [leaf for tree in trees for leaf in jax.tree.leaves(tree)]
    return jnp.all(jnp.stack([jnp.all(jnp.isfinite(leaf)) for leaf in leaves]))


def make_step(
    graphdef,
    tx: optax.GradientTransformation,
    loss_fn: LossFn,
    num_observers: int | None = None,
    shared_tx: optax.GradientTransformation | None = None,
):
    """Builds the pure step `(state, batch) -> (state, measurements)`.

    Args:
      graphdef: from `init_state`.
      tx: the optimizer.
      loss_fn: `(model, batch, observer) -> (loss, measurements)`. For a model with per-observer
        parameters, the model it receives holds only the batch's observers' rows and `observer` is
        each example's row in it (pass it to the model, not `batch["observer"]`); otherwise
        `observer` is `batch.get("observer")`.
      num_observers: N, the size of the observer axis; None for models without one.
      shared_tx: the optimizer of the parameters that are not per-observer, as given to
        `init_state` (default: `tx`).

    Returns:
      The step. Measurements: loss, the loss_fn's measurements, grad_norm and param_norm (over the
      rows updated), and nonfinite (1.0 on a step that was skipped).
    """

    shared_tx = tx if shared_tx is None else shared_tx

    def step(state: TrainState, batch):
        sparse = num_observers is not None and bool(jax.tree.leaves(state.observer_params))
        if sparse:
            slots, observer = observer_slots(batch["observer"], num_observers)
            local_params = gather_rows(state.observer_params, slots)
        else:
            observer = batch.get("observer")
            local_params = state.observer_params

        def objective(local_params, params, rest):
            # Fresh Variables at this trace level: the model mutates its BatchNorm statistics and
            # RNG state here, inside the gradient's trace.
            rest = jax.tree.map(lambda leaf: leaf, rest)
            model = nnx.merge(graphdef, local_params, params, rest)
            loss, measurements = loss_fn(model, batch, observer)
            return loss, (measurements, nnx.state(model, nnx.Not(nnx.Param)))

        (loss, (measurements, rest)), (local_grads, grads) = jax.value_and_grad(
            objective, argnums=(0, 1), has_aux=True
        )(local_params, state.params, state.rest)

        updates, opt_state = shared_tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        if sparse:
            local_opt_state = _map_param_leaves(
                tx, lambda rows: gather_rows(rows, slots), state.observer_opt_state
            )
        else:
            local_opt_state = state.observer_opt_state
        local_updates, local_opt_state = tx.update(local_grads, local_opt_state, local_params)
        local_params = optax.apply_updates(local_params, local_updates)
        if sparse:
            observer_params = scatter_rows(state.observer_params, local_params, slots)
            observer_opt_state = _map_param_leaves(
                tx,
                lambda full, local: scatter_rows(full, local, slots),
                state.observer_opt_state,
                local_opt_state,
            )
        else:
            observer_params, observer_opt_state = local_params, local_opt_state

        finite = _all_finite(loss, grads, local_grads)
        updated = state.replace(
            step=state.step + 1,
            observer_params=observer_params,
            params=params,
            rest=rest,
            observer_opt_state=observer_opt_state,
            opt_state=opt_state,
        )
        # A non-finite step changes nothing but the record of where it happened.
        new_state = jax.tree.map(lambda new, old: jnp.where(finite, new, old), updated, state)
        new_state = new_state.replace(
            nonfinite_step=jnp.where(
                finite | (state.nonfinite_step >= 0), state.nonfinite_step, state.step
            )
        )
        measurements = {
            "loss": loss,
            **measurements,
            "grad_norm": optax.global_norm((grads, local_grads)),
            "param_norm": optax.global_norm((params, local_params)),
            "nonfinite": 1.0 - finite.astype(jnp.float32),
        }
        return new_state, measurements

    return step


def data_mesh(devices=None) -> Mesh:
    """A 1-D mesh, axis `data`, over `devices` (default: every device of every process)."""
    return Mesh(np.asarray(jax.devices() if devices is None else devices), (DATA_AXIS,))


def compile_step(step, mesh: Mesh):
    """Jits `step` data-parallel on `mesh`: state replicated and donated, batch split on `data`."""
    replicated = NamedSharding(mesh, PartitionSpec())
    split = NamedSharding(mesh, PartitionSpec(DATA_AXIS))
    return jax.jit(
        step,
        in_shardings=(replicated, split),
        out_shardings=(replicated, replicated),
        donate_argnums=0,
    )


def replicate(tree, mesh: Mesh):
    """Places a host pytree on every device of `mesh`, replicated."""
    return jax.device_put(tree, NamedSharding(mesh, PartitionSpec()))


def global_batch(local_batch: dict, mesh: Mesh) -> dict:
    """This process's batch (numpy) -> global arrays split over the `data` axis of every process."""
    split = NamedSharding(mesh, PartitionSpec(DATA_AXIS))
    return {
        key: jax.make_array_from_process_local_data(split, np.asarray(value))
        for key, value in local_batch.items()
    }
