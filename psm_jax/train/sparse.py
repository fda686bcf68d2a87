"""A train step that updates only the per-observer parameters of the observers in the batch.

Models with parameters stacked over observers (`layers.ObserverParam`: Xu et al.'s per-observer
heads, the per-observer baselines) would, with an ordinary train step, pay for every observer on
every step: the gradient of a gather is a dense (N, ...) array, and the optimizer then reads and
writes all N rows of parameters and of its state. With 1,000 observers that is most of the step.

This step instead gathers the rows of the batch's distinct observers (at most B of them, a fixed
size so it jits once), differentiates and updates those rows with the optimizer, and scatters them
back: the cost per step is independent of N.

The semantics are those of "lazy" sparse optimizers (TensorFlow's LazyAdam, sparse embeddings): an
observer's rows and their optimizer state (momentum, weight decay) change only on steps where the
observer is in the batch. For plain SGD this equals the dense update exactly; with momentum or
weight decay the dense update would also keep moving (and shrinking) absent observers' heads, which
Caffe, the framework of Xu et al., did. The shared parameters get the ordinary dense update.
Optimizer states of `optax` transforms that keep param-shaped state (SGD, momentum, Adam, weight
decay, ...) are supported; scalar state such as Adam's step count stays shared across observers.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import optax
from flax import nnx

from psm_jax.models import layers


@flax.struct.dataclass
class SparseTrainState:
    """The pieces of a model and its optimizer, split so that observer rows can be updated alone."""

    step: jax.Array
    observer_params: Any  # nnx.State of ObserverParam, leaves (N, ...)
    params: Any  # nnx.State of the other nnx.Param
    rest: Any  # everything else (BatchNorm statistics, RNG state, ...)
    observer_opt_state: Any
    opt_state: Any


def init_state(model: nnx.Module, tx: optax.GradientTransformation):
    """Splits `model` and initialises the optimizer: (graphdef, SparseTrainState)."""
    graphdef, observer_params, params, rest = nnx.split(model, layers.ObserverParam, nnx.Param, ...)
    state = SparseTrainState(
        step=jnp.zeros((), jnp.int32),
        observer_params=observer_params,
        params=params,
        rest=rest,
        observer_opt_state=tx.init(observer_params),
        opt_state=tx.init(params),
    )
    return graphdef, state


def merge(graphdef, state: SparseTrainState) -> nnx.Module:
    """The model back from a SparseTrainState."""
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


def make_step(
    graphdef,
    tx: optax.GradientTransformation,
    loss_fn: Callable[[nnx.Module, Any, jax.Array], tuple[jax.Array, dict]],
    num_observers: int,
):
    """Builds the pure step `(state, batch) -> (state, measurements)` (jit it, donate the state).

    Args:
      graphdef: from `init_state`.
      tx: the optimizer.
      loss_fn: `(model, batch, slot_of_example) -> (loss, measurements)`; the model it receives
        holds only the batch's observers' rows, so it must index per-observer layers with
        `slot_of_example`, not with `batch["observer"]`.
      num_observers: N, the size of the observer axis.
    """

    def step(state: SparseTrainState, batch):
        slots, slot_of_example = observer_slots(batch["observer"], num_observers)
        local_params = gather_rows(state.observer_params, slots)

        def objective(local_params, params):
            model = nnx.merge(graphdef, local_params, params, state.rest)
            loss, measurements = loss_fn(model, batch, slot_of_example)
            rest = nnx.state(model, nnx.Not(nnx.Param))
            return loss, (measurements, rest)

        (loss, (measurements, rest)), (local_grads, grads) = jax.value_and_grad(
            objective, argnums=(0, 1), has_aux=True
        )(local_params, state.params)

        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)

        local_opt_state = _map_param_leaves(
            tx, lambda rows: gather_rows(rows, slots), state.observer_opt_state
        )
        local_updates, local_opt_state = tx.update(local_grads, local_opt_state, local_params)
        local_params = optax.apply_updates(local_params, local_updates)
        observer_opt_state = _map_param_leaves(
            tx,
            lambda full, local: scatter_rows(full, local, slots),
            state.observer_opt_state,
            local_opt_state,
        )
        new_state = state.replace(
            step=state.step + 1,
            observer_params=scatter_rows(state.observer_params, local_params, slots),
            params=params,
            rest=rest,
            observer_opt_state=observer_opt_state,
            opt_state=opt_state,
        )
        return new_state, {"loss": loss, **measurements}

    return step
