"""What differs between the five trainable models: data stream, model, optimiser, loss, host prep.

A `Task` gathers, for one `config.model`, everything the generic loop (`psm_jax.train.loop`) needs:
  - `stream(split, ...)`: the grain stream of training or validation batches (host numpy);
  - `prepare(batch, step)`: host-side, deterministic in (seed, step): left-right flips, embedding
    draws from the pool, and dropping what the model does not read;
  - `build_model(rngs)`, `optimizer(steps_per_epoch)`, `loss_fn`: the model, its optimiser, and
    `(model, batch, observer) -> (loss, measurements)`;
  - `num_observers`: the size of the observer axis for observer-sparse updates (or None).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from flax import nnx

from psm_jax import losses
from psm_jax.data import pipeline
from psm_jax.models import (
    embedding,
    layers,
    multi_task,
    per_observer_networks,
    personalised,
    universal,
)


def _network_fields(config) -> dict:
    return {key: tuple(v) if isinstance(v, list) else v for key, v in config.network.items()}


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

    @property
    def stream_kind(self) -> str:
        return "embedding" if self.config.model == "embedding" else "regression"

    def stream(
        self, source, *, seed: int, shuffle: bool, num_epochs: int | None, split: str = "train"
    ):
        config = self.config
        if self.stream_kind == "embedding" and config.combine_with:
            parts = [(source, self.metadata)] + [
                pipeline.open_split(name, split, config.data_dir)
                for name in config.combine_with.split(",")
            ]
            return pipeline.combined_embedding_dataset(
                parts,
                batch_size=self.local_batch_size,
                m=config.m,
                seed=seed,
                sets_per_observer=config.sets_per_observer,
                num_epochs=num_epochs,
                num_workers=config.num_workers,
            )
        if self.stream_kind == "embedding":
            return pipeline.embedding_dataset(
                source,
                self.metadata,
                batch_size=self.local_batch_size,
                m=config.m,
                seed=seed,
                sets_per_observer=config.sets_per_observer,
                num_epochs=num_epochs,
                num_workers=config.num_workers,
            )
        return pipeline.psm_regression_dataset(
            source,
            self.metadata,
            batch_size=self.local_batch_size,
            seed=seed,
            shuffle=shuffle,
            num_epochs=num_epochs,
            num_workers=config.num_workers,
            external_usm_dir=config.external_usm_dir if config.usm == "external" else None,
        )

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
        if self.embedding_pool is not None:
            pool_size = self.embedding_pool.shape[1]
            rng = _host_rng(self.config, step, 2 if train else 3)
            draw = rng.integers(0, pool_size, len(batch["observer"]))
            batch["embedding"] = self.embedding_pool[batch["observer"], draw]
        return {key: np.ascontiguousarray(batch[key]) for key in self.keys}


def _regression_inputs(batch) -> jax.Array:
    return layers.model_input(batch["image"], batch["usm"])


def make_task(config, metadata: pipeline.DatasetMetadata, embedding_pool=None) -> Task:
    """The Task of `config.model` on a dataset with `metadata`."""
    fields = _network_fields(config)
    num_train = len(metadata.observers("train"))
    model = config.model
    if model == "embedding":
        encoder_config = embedding.EncoderConfig(**fields)

        def loss_fn(model, batch, observer):
            user_embedding = model(batch["images"], batch["psms"])
            loss = losses.triplet_loss(user_embedding, observer, config.margin, config.mining)
            return loss, {}

        return Task(
            config,
            metadata,
            lambda rngs: embedding.UserEmbeddingEncoder(encoder_config, rngs=rngs),
            loss_fn,
            keys=("images", "psms", "observer"),
        )

    def discrepancy_loss(outputs, batch):
        return losses.deep_supervised_mse(
            outputs, batch["discrepancy"], reduction=config.loss_reduction
        )

    if model == "psm_network":
        if embedding_pool is None:
            raise ValueError("The psm_network task needs the embedding pool (encoder_workdir).")
        network_config = personalised.SaliencyNetworkConfig(
            **{"embedding_size": embedding_pool.shape[-1], **fields}
        )

        def loss_fn(model, batch, observer):
            outputs = model(_regression_inputs(batch), batch["embedding"])
            loss = discrepancy_loss(outputs, batch)
            if not config.composed_kld_weight:
                return loss, {}
            kld = losses.composed_kld(outputs[-1], batch["usm"], batch["psm"])
            return loss + config.composed_kld_weight * kld, {"composed_kld": kld}

        return Task(
            config,
            metadata,
            lambda rngs: personalised.PersonalisedSaliencyNetwork(network_config, rngs=rngs),
            loss_fn,
            keys=("image", "usm", "discrepancy", "observer", "embedding")
            + (("psm",) if config.composed_kld_weight else ()),
            embedding_pool=embedding_pool,
        )
    if model in ("multi_task", "per_observer"):
        if model == "multi_task":

            def build(rngs):
                network_config = multi_task.MultiTaskConfig(**fields)
                return multi_task.MultiTaskCNN(num_train, network_config, rngs=rngs)

        else:

            def build(rngs):
                return per_observer_networks(config.architecture, num_train, rngs=rngs, **fields)

        def loss_fn(model, batch, observer):
            inputs = _regression_inputs(batch)
            if model_in_channels(model) == 3:
                inputs = inputs[..., :3]
            return discrepancy_loss(model(inputs, observer), batch), {}

        return Task(
            config,
            metadata,
            build,
            loss_fn,
            keys=("image", "usm", "discrepancy", "observer"),
            num_observers=num_train,
        )
    if model == "universal":
        universal_config = universal.UniversalConfig(**fields)

        def loss_fn(model, batch, observer):
            logits = model(layers.model_input(batch["image"], None))
            return jnp.mean(universal.usm_loss(logits, batch["usm"])), {}

        return Task(
            config,
            metadata,
            lambda rngs: universal.UniversalSaliencyNetwork(universal_config, rngs=rngs),
            loss_fn,
            keys=("image", "usm"),
        )
    raise ValueError(f"Unknown config.model {model!r}")


def model_in_channels(model: Any) -> int:
    """Input channels of a multi-task / per-observer model (3: RGB only, 4: with the USM)."""
    return model.config.in_channels
