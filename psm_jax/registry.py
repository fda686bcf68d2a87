"""The model registry: every trainable model by name, with everything that differs between them.

One entry (`ModelSpec`) per `config.model`, in the order the main job trains them:

    embedding     Strohm et al.'s user-embedding encoder (triplet loss on sets of m pairs)
    psm_network   Strohm et al.'s hypernetwork PSM network (conditioned on a user embedding)
    multi_task    Xu et al.'s multi-task CNN (one head per training observer)
    per_observer  one independent network per training observer (MultiConvNets / MultiCNN)
    universal     the universal saliency model (image -> USM): a small network, or a readout of a
                  frozen ImageNet backbone's features (`network.backbone`)

A spec says how to read the model's architecture from a config (`config.network`, plus
`config.architecture` for the per-observer networks), how to build it, its training loss, which
data stream feeds it and which batch fields it reads. The training loop (`psm_jax.train`) and the
restoring of trained models (`psm_jax.train.checkpoint.restore_model`, `psm_jax.inference`) both
build models through `build_model`, so a workdir always rebuilds the network it was trained with.

`discrepancy_outputs` is the one place that assembles a discrepancy model's input (image + USM, or
RGB only for `in_channels=3`) and calls it with its condition (an observer index or an embedding):
the training losses and the inference layer both use it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
from flax import nnx

from psm_jax import losses, models
from psm_jax.models import (
    embedding,
    layers,
    multi_task,
    personalised,
    universal,
)

LossFn = Callable[[nnx.Module, dict, jax.Array], tuple[jax.Array, dict]]


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """What one trainable model needs (see the module docstring).

    Attributes:
      name: the `config.model` value.
      summary: one line for help texts and reports.
      stream: "embedding" (batches of m-pair sets of one observer each) or "regression" (batches
        of (image, USM, PSM, discrepancy, observer) examples), see `psm_jax.data.pipeline`.
      per_observer: parameters stacked over the training observers (built with their count,
        updated observer-sparsely, `psm_jax.train.step`).
      conditioned_on: what a discrepancy model is called with beside its input: "observer" (a
        training observer's index), "embedding" (a user embedding), or None (not a discrepancy
        model).
      architecture: config -> the model's architecture config (a frozen dataclass).
      build: (architecture, number of training observers or None, rngs) -> the model.
      loss: config -> `(model, batch, observer) -> (loss, measurements)`.
      batch_keys: config -> the batch fields the loss reads.
      frozen_features: config -> None, or, for a model that reads a frozen pretrained
        backbone's features instead of images, `(source, progress) -> {name: (records, ...)}`
        computing them for every record of a split once; the training task then adds each
        example's features to its batch by record index (`psm_jax.train.tasks.Task.prepare`).
    """

    name: str
    summary: str
    stream: str
    per_observer: bool
    conditioned_on: str | None
    architecture: Callable[[ml_collections.ConfigDict], Any]
    build: Callable[[Any, int | None, nnx.Rngs], nnx.Module]
    loss: Callable[[ml_collections.ConfigDict], LossFn]
    batch_keys: Callable[[ml_collections.ConfigDict], tuple[str, ...]]
    frozen_features: Callable[[ml_collections.ConfigDict], Callable | None] = lambda config: None


def network_fields(config: ml_collections.ConfigDict) -> dict:
    """`config.network` as keyword arguments of an architecture config (lists become tuples)."""
    return {key: tuple(v) if isinstance(v, list) else v for key, v in config.network.items()}


def _per_observer_architecture(config: ml_collections.ConfigDict):
    """The per-observer networks' architecture config of `config.architecture`. A network field
    of the other architecture left at that architecture's default is dropped, so that
    `--config.architecture` can switch a config whose network was completed for the other one
    (`complete_network`); a field set to anything else is an error, as for any model."""
    fields = network_fields(config)
    other = {"xu": "strohm", "strohm": "xu"}.get(config.architecture)
    if other is not None:
        chosen = models.per_observer_architecture(config.architecture)
        known = {field.name for field in dataclasses.fields(chosen)}
        defaults = dataclasses.asdict(models.per_observer_architecture(other))
        fields = {
            key: value
            for key, value in fields.items()
            if key in known or key not in defaults or defaults[key] != value
        }
    return models.per_observer_architecture(config.architecture, **fields)


def complete_network(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """Fills `config.network` with every field of the model's architecture, at its default where
    the config does not set it, so that `--config.network.<field>=<value>` can set any of them
    (ml_collections' flags set only fields a config has). Returns `config`."""
    architecture = get(config.model).architecture(config)
    with config.unlocked():
        for name, value in dataclasses.asdict(architecture).items():
            if name not in config.network:
                config.network[name] = value
    return config


def discrepancy_outputs(model: nnx.Module, image, usm, condition) -> tuple[jax.Array, ...]:
    """A discrepancy model's outputs (coarse to final, each (B, 15, 20)) for a batch.

    Args:
      model: a PSM network, multi-task CNN or per-observer networks.
      image: (B, H, W, 3) uint8 or float in [0, 1]; usm: (B, H, W) in [0, 1].
      condition: (B,) observer indices (multi-task, per-observer) or (B, d) user embeddings (the
        PSM network).
    """
    inputs = layers.model_input(image, usm)
    if model.config.in_channels == 3:  # the "RGB based" variants read no USM
        inputs = inputs[..., :3]
    return model(inputs, condition)


def relu_activity(model: nnx.Module, batch: dict) -> dict[str, jax.Array]:
    """How alive each ReLU layer of a PSM network (or of Strohm's per-observer networks) is on a
    batch: "live_units/<layer>", the fraction of its activations above 0, and
    "live_channels/<layer>", the fraction of its channels above 0 somewhere in the batch. A layer
    whose units never fire passes no gradient (dying ReLU). Other models: {}.

    Args:
      model: the model; batch: a regression batch (image, usm and embedding or observer).
    """
    if not isinstance(
        model, personalised.PersonalisedSaliencyNetwork | personalised.PerObserverSaliencyNetworks
    ):
        return {}
    condition = batch["embedding"] if "embedding" in batch else batch["observer"]
    activations: dict[str, jax.Array] = {}
    model(layers.model_input(batch["image"], batch["usm"]), condition, activations=activations)
    result = {}
    for name, values in activations.items():
        live = values > 0
        result[f"live_units/{name}"] = jnp.mean(live)
        result[f"live_channels/{name}"] = jnp.mean(jnp.any(live, axis=(0, 1, 2)))
    return result


def _deep_supervised(config):
    def discrepancy_loss(outputs, batch):
        return losses.deep_supervised_mse(
            outputs, batch["discrepancy"], reduction=config.loss_reduction
        )

    return discrepancy_loss


EMBEDDING_LOSSES = ("triplet", "supervised_contrastive")


def _embedding_loss(config) -> LossFn:
    if config.get("embedding_loss", "triplet") not in EMBEDDING_LOSSES:
        raise ValueError(
            f"--config.embedding_loss must be one of {EMBEDDING_LOSSES}, got "
            f"{config.embedding_loss!r}"
        )

    def loss_fn(model, batch, observer):
        user_embedding = model(batch["images"], batch["psms"], batch.get("usms"))
        triplet, measurements = losses.triplet_diagnostics(
            user_embedding, observer, config.margin, config.mining
        )
        if config.get("embedding_loss", "triplet") == "triplet":
            return triplet, {**measurements, "triplet_loss": triplet}
        # "supervised_contrastive" (ours): the triplet loss and its mining are still measured,
        # for comparison, under "measured_triplet/" (TensorBoard's tags: the loss trained is
        # "supervised_contrastive_loss", beside "loss").
        loss = losses.supervised_contrastive_loss(user_embedding, observer, config.temperature)
        triplet_only = ("positive_pairs", "active_triplets")
        return loss, {
            "supervised_contrastive_loss": loss,
            **{k: v for k, v in measurements.items() if k not in triplet_only},
            "measured_triplet/loss": triplet,
            **{f"measured_triplet/{k}": measurements[k] for k in triplet_only},
        }

    return loss_fn


COMPOSITIONS = ("additive", "log_ratio")


def composition(config) -> str:
    """The config's composition: "additive" (the papers') or "log_ratio" (ours, a discrepancy
    model's: the PSM network's default in the quick schedules; the multi-task CNN and the
    per-observer networks take it to be trained alike, `psm_jax.configs.experiments.trained_alike`;
    with `log_ratio_scale` > 0)."""
    value = config.get("composition", "additive")
    if value not in COMPOSITIONS:
        raise ValueError(f"--config.composition must be one of {COMPOSITIONS}, got {value!r}")
    if value == "log_ratio" and get(config.model).conditioned_on is None:
        raise ValueError(
            f"--config.composition=log_ratio is a discrepancy model's; {config.model} predicts no "
            "discrepancy (leave it at 'additive')."
        )
    if value == "log_ratio" and not config.get("log_ratio_scale", 2.0) > 0:
        raise ValueError(f"--config.log_ratio_scale must be > 0, got {config.log_ratio_scale}")
    return value


def _log_ratio_loss(config, condition: Callable[[dict, jax.Array], jax.Array]) -> LossFn:
    """The "log_ratio" composition's loss (ours): the KLD of USM x exp(s D) to the PSM
    (`losses.log_ratio_kld`), for a discrepancy model called with `condition(batch, observer)`."""
    if config.composed_kld_weight:
        raise ValueError(
            "--config.composed_kld_weight adds the KLD of the additive composition; a "
            "log_ratio network is trained on its own map's KLD already (set one of them)."
        )
    scale = config.get("log_ratio_scale", 2.0)

    def loss_fn(model, batch, observer):
        outputs = discrepancy_outputs(
            model, batch["image"], batch["usm"], condition(batch, observer)
        )
        return losses.log_ratio_kld(outputs, batch["usm"], batch["psm"], scale), {}

    return loss_fn


def _psm_network_loss(config) -> LossFn:
    discrepancy_loss = _deep_supervised(config)
    if composition(config) == "log_ratio":
        return _log_ratio_loss(config, lambda batch, observer: batch["embedding"])

    def loss_fn(model, batch, observer):
        outputs = discrepancy_outputs(model, batch["image"], batch["usm"], batch["embedding"])
        loss = discrepancy_loss(outputs, batch)
        if not config.composed_kld_weight:
            return loss, {}
        kld = losses.composed_kld(outputs[-1], batch["usm"], batch["psm"])
        return loss + config.composed_kld_weight * kld, {"composed_kld": kld}

    return loss_fn


def _per_observer_loss(config) -> LossFn:
    discrepancy_loss = _deep_supervised(config)
    if composition(config) == "log_ratio":  # trained alike the PSM network (ours)
        return _log_ratio_loss(config, lambda batch, observer: observer)

    def loss_fn(model, batch, observer):
        outputs = discrepancy_outputs(model, batch["image"], batch["usm"], observer)
        return discrepancy_loss(outputs, batch), {}

    return loss_fn


def _per_observer_batch_keys(config) -> tuple[str, ...]:
    return _REGRESSION_KEYS + (("psm",) if composition(config) == "log_ratio" else ())


def _universal_loss(config) -> LossFn:
    composition(config)  # refuse a log_ratio setting, do not ignore it
    architecture = universal.UniversalConfig(**network_fields(config))

    def loss_fn(model, batch, observer):
        if architecture.backbone:  # the readout network reads the backbone's features
            logits = model({name: batch[name] for name in architecture.feature_names})
        else:
            logits = model(layers.model_input(batch["image"], None))
        return jnp.mean(universal.usm_loss(logits, batch["usm"])), {}

    return loss_fn


def _universal_batch_keys(config) -> tuple[str, ...]:
    architecture = universal.UniversalConfig(**network_fields(config))
    if architecture.backbone:
        return ("usm",) + architecture.feature_names
    return ("image", "usm")


def _universal_features(config) -> Callable | None:
    architecture = universal.UniversalConfig(**network_fields(config))
    if not architecture.backbone:
        return None
    return lambda source, progress=None: universal.source_features(
        architecture, source, progress=progress
    )


_REGRESSION_KEYS = ("image", "usm", "discrepancy", "observer")

_SPECS = (
    ModelSpec(
        name="embedding",
        summary="user-embedding encoder (Strohm et al.), triplet loss",
        stream="embedding",
        per_observer=False,
        conditioned_on=None,
        architecture=lambda config: embedding.EncoderConfig(**network_fields(config)),
        build=lambda arch, n, rngs: embedding.UserEmbeddingEncoder(arch, rngs=rngs),
        loss=_embedding_loss,
        batch_keys=lambda config: (
            ("images", "psms", "observer")
            + (
                ("usms",)
                if embedding.EncoderConfig(**network_fields(config)).input_map == "discrepancy"
                else ()
            )
        ),
    ),
    ModelSpec(
        name="psm_network",
        summary="personalised saliency network (Strohm et al.), embedding-conditioned",
        stream="regression",
        per_observer=False,
        conditioned_on="embedding",
        architecture=lambda config: personalised.SaliencyNetworkConfig(**network_fields(config)),
        build=lambda arch, n, rngs: personalised.PersonalisedSaliencyNetwork(arch, rngs=rngs),
        loss=_psm_network_loss,
        batch_keys=lambda config: (
            _REGRESSION_KEYS
            + ("embedding",)
            + (("psm",) if config.composed_kld_weight or composition(config) == "log_ratio" else ())
        ),
    ),
    ModelSpec(
        name="multi_task",
        summary="multi-task CNN (Xu et al.), one head per training observer",
        stream="regression",
        per_observer=True,
        conditioned_on="observer",
        architecture=lambda config: multi_task.MultiTaskConfig(**network_fields(config)),
        build=lambda arch, n, rngs: multi_task.MultiTaskCNN(n, arch, rngs=rngs),
        loss=_per_observer_loss,
        batch_keys=_per_observer_batch_keys,
    ),
    ModelSpec(
        name="per_observer",
        summary="one network per training observer (MultiConvNets / MultiCNN)",
        stream="regression",
        per_observer=True,
        conditioned_on="observer",
        architecture=_per_observer_architecture,
        build=lambda arch, n, rngs: models.build_per_observer_networks(arch, n, rngs=rngs),
        loss=_per_observer_loss,
        batch_keys=_per_observer_batch_keys,
    ),
    ModelSpec(
        name="universal",
        summary="universal saliency network (image -> USM)",
        stream="regression",
        per_observer=False,
        conditioned_on=None,
        architecture=lambda config: universal.UniversalConfig(**network_fields(config)),
        build=lambda arch, n, rngs: universal.build(arch, rngs=rngs),
        loss=_universal_loss,
        batch_keys=_universal_batch_keys,
        frozen_features=_universal_features,
    ),
)

MODELS: dict[str, ModelSpec] = {spec.name: spec for spec in _SPECS}
"""Every trainable model by name, in the order the main job trains them."""


def get(name: str) -> ModelSpec:
    """The spec of `name`; a ValueError naming the known models otherwise."""
    if name not in MODELS:
        raise ValueError(f"Unknown model {name!r}; known: {', '.join(MODELS)}.")
    return MODELS[name]


def with_compute_dtype(
    config: ml_collections.ConfigDict, compute_dtype: str
) -> ml_collections.ConfigDict:
    """A copy of `config` whose network computes in `compute_dtype` (`layers.COMPUTE_DTYPES`),
    where its architecture has the option (the encoder, the PSM network, Strohm's per-observer
    networks); other models' configs come back unchanged (they compute in float32). The
    parameters are the same either way, so a workdir trained in one dtype restores in the other."""
    layers.check_compute_dtype(compute_dtype)
    fields = {field.name for field in dataclasses.fields(get(config.model).architecture(config))}
    if "compute_dtype" not in fields:
        return config
    config = ml_collections.ConfigDict(config.to_dict())
    config.network.compute_dtype = compute_dtype
    return config


def build_model(
    config: ml_collections.ConfigDict, num_observers: int | None, rngs: nnx.Rngs
) -> nnx.Module:
    """The model `config` describes, freshly initialised.

    Args:
      config: a training config (its `model`, `network` and, for the per-observer networks,
        `architecture`).
      num_observers: the number of training observers (models with per-observer parameters);
        ignored by the others.
      rngs: initialisation keys.
    """
    spec = get(config.model)
    if spec.per_observer and not num_observers:
        raise ValueError(f"Building {spec.name!r} needs the number of training observers.")
    return spec.build(spec.architecture(config), num_observers, rngs)
