"""A model's training task on one dataset: its data stream, host-side batch preparation, optimiser.

A `Task` gathers, for one `config.model`, everything the generic loop (`psm_jax.train.loop`) needs;
what differs between the models (architecture, loss, stream kind, batch fields) comes from the
model registry (`psm_jax.registry`):
  - `stream(source, ...)`: the grain stream of training or validation batches (host numpy);
  - `prepare(batch, step)`: host-side, deterministic in (seed, step): left-right flips, embedding
    draws from the pool, a frozen backbone's precomputed features of each example's image, and
    dropping what the model does not read;
  - `build_model(rngs)` and `loss_fn`: the model and `(model, batch, observer) -> (loss,
    measurements)`;
  - `num_observers`: the size of the observer axis for observer-sparse updates (or None).
The optimiser of a config is the module function `optimizer(config, steps_per_epoch)`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import jax
import ml_collections
import numpy as np
import optax
from flax import nnx

from psm_jax import registry
from psm_jax.data import pipeline


def optimizer(config: ml_collections.ConfigDict, steps_per_epoch: int):
    """The config's optimiser: Adam, or SGD with momentum, weight decay and lr halving."""
    learning_rate = config.learning_rate
    if config.lr_halving_epochs:
        learning_rate = optax.exponential_decay(
            config.learning_rate,
            transition_steps=max(1, config.lr_halving_epochs * steps_per_epoch),
            decay_rate=0.5,
            staircase=True,
        )
    if config.optimizer == "adam":
        core = optax.adam(learning_rate)
    elif config.optimizer == "sgd":
        core = optax.sgd(learning_rate, momentum=config.momentum or None)
    else:
        raise ValueError(f"config.optimizer must be 'sgd' or 'adam', got {config.optimizer!r}")
    if config.weight_decay:
        return optax.chain(optax.add_decayed_weights(config.weight_decay), core)
    return core


def _host_rng(config, step: int, purpose: int) -> np.random.Generator:
    return np.random.default_rng([config.seed, step, purpose])


@dataclasses.dataclass
class Task:
    """One trainable model's pieces (see the module docstring)."""

    config: ml_collections.ConfigDict
    metadata: pipeline.DatasetMetadata
    build_model: Callable[[nnx.Rngs], nnx.Module]
    loss_fn: Callable
    keys: tuple[str, ...]
    num_observers: int | None = None
    embedding_pool: np.ndarray | None = None  # (observers, pool, d), psm_network only
    # A frozen backbone's features of every record ("train" and "validation" split -> name ->
    # (records, ...)), for a model that reads them instead of images (`registry.ModelSpec`).
    features: dict[str, dict[str, np.ndarray]] | None = None

    @property
    def stream_kind(self) -> str:
        return registry.get(self.config.model).stream

    def stream(
        self, source, *, seed: int, shuffle: bool, num_epochs: int | None, split: str = "train"
    ):
        config = self.config
        external_usm_dir = config.external_usm_dir if config.usm == "external" else None
        batching = {
            "batch_size": self.local_batch_size,
            "seed": seed,
            "num_epochs": num_epochs,
            "num_workers": config.num_workers,
        }
        if self.stream_kind == "regression":
            return pipeline.psm_regression_dataset(
                source,
                self.metadata,
                shuffle=shuffle,
                external_usm_dir=external_usm_dir,
                usm_mode=usm_mode(config),
                **batching,
            )
        sets = {
            "m": config.m,
            "sets_per_observer": config.sets_per_observer,
            "disjoint": not config.get("overlapping_sets", False),
        }
        if not config.combine_with:
            return pipeline.embedding_dataset(
                source, self.metadata, external_usm_dir=external_usm_dir, **batching, **sets
            )
        if external_usm_dir:
            raise ValueError(
                "config.combine_with reads each dataset's ground-truth USMs; it cannot be "
                f"combined with config.usm='external' ({external_usm_dir})."
            )
        parts = [(source, self.metadata)] + [
            pipeline.open_split(name, split, config.data_dir)
            for name in config.combine_with.split(",")
        ]
        return pipeline.combined_embedding_dataset(parts, **batching, **sets)

    @property
    def local_batch_size(self) -> int:
        if self.config.batch_size % jax.process_count():
            raise ValueError(
                f"config.batch_size={self.config.batch_size} is not divisible by the "
                f"{jax.process_count()} processes."
            )
        return self.config.batch_size // jax.process_count()

    def prepare(self, batch: dict, step: int, train: bool = True) -> dict:
        """Host-side preparation of a batch for the model (deterministic in seed and step).

        Training batches get the flips; validation batches (`train=False`) none, and their
        embedding draws come from a stream of their own."""
        batch = dict(batch)
        if train and self.config.flip and self.stream_kind == "regression":
            flip = _host_rng(self.config, step, 1).random(len(batch["image"])) < 0.5
            for key in ("image", "usm", "psm", "discrepancy"):
                batch[key] = np.where(
                    flip.reshape((-1,) + (1,) * (batch[key].ndim - 1)),
                    batch[key][:, :, ::-1],
                    batch[key],
                )
        if self.features is not None:
            if train and self.config.flip:
                raise ValueError(
                    f"--config.flip: {self.config.model} reads precomputed backbone features, "
                    "which are not flipped; train it without flips."
                )
            for name, array in self.features["train" if train else "validation"].items():
                batch[name] = array[np.asarray(batch["image_index"])]
        if self.embedding_pool is not None:
            pool_size = self.embedding_pool.shape[1]
            rng = _host_rng(self.config, step, 2 if train else 3)
            draw = rng.integers(0, pool_size, len(batch["observer"]))
            batch["embedding"] = self.embedding_pool[batch["observer"], draw]
        return {key: np.ascontiguousarray(batch[key]) for key in self.keys}


USM_MODES = ("train", "leave_one_out")
"""`config.usm_mode`: the ground-truth USM a discrepancy model trains against (psm_jax/configs/
base.py)."""


def usm_mode(config) -> str:
    """The config's `usm_mode`; a ValueError naming the flag for an unknown one, or for
    "leave_one_out" with external (predicted) USMs, which have no observer to leave out."""
    value = config.get("usm_mode", "train")
    if value not in USM_MODES:
        raise ValueError(f"--config.usm_mode={value!r}: must be one of {', '.join(USM_MODES)}.")
    if value == "leave_one_out" and config.get("usm") == "external":
        raise ValueError(
            "--config.usm_mode=leave_one_out: this config trains on external (predicted) USMs, "
            "which hold no observer's map to leave out."
        )
    return value


def make_task(
    config, metadata: pipeline.DatasetMetadata, embedding_pool=None, features=None
) -> Task:
    """The Task of `config.model` (`psm_jax.registry`) on a dataset with `metadata`;
    `embedding_pool`: the PSM network's; `features`: a frozen backbone's features of the training
    and validation records (`Task.features`), for a model that reads them."""
    spec = registry.get(config.model)
    usm_mode(config)  # an unknown or impossible USM mode, before anything is built
    if spec.conditioned_on == "embedding" and embedding_pool is None:
        raise ValueError(f"The {spec.name} task needs the embedding pool (encoder_workdir).")
    if embedding_pool is not None:
        expected = spec.architecture(config).embedding_size
        if embedding_pool.shape[-1] != expected:
            raise ValueError(
                f"The encoder's embeddings are {embedding_pool.shape[-1]}-d; the network takes "
                f"{expected}-d (--config.network.embedding_size)."
            )
    num_observers = len(metadata.observers("train")) if spec.per_observer else None
    return Task(
        config,
        metadata,
        lambda rngs: registry.build_model(config, num_observers, rngs),
        spec.loss(config),
        keys=spec.batch_keys(config),
        num_observers=num_observers,
        embedding_pool=embedding_pool,
        features=features,
    )
