"""Flax NNX models of the two papers and their baselines; one file per model family.

- `embedding.UserEmbeddingEncoder`: Strohm et al.'s Siamese user-embedding encoder.
- `personalised.PersonalisedSaliencyNetwork`: Strohm et al.'s hypernetwork PSM network;
  `personalised.PerObserverSaliencyNetworks`: their MultiCNN baseline.
- `multi_task.MultiTaskCNN`: Xu et al.'s multi-task CNN (`share_trunk=False`: MultiConvNets).
- `universal.UniversalSaliencyNetwork`: image -> USM, standing in for external USM predictors.
- `layers`: input assembly, per-example and per-observer convolutions.
"""

from __future__ import annotations

import dataclasses

from flax import nnx

from psm_jax.models import multi_task, personalised


def per_observer_architecture(architecture: str, **config):
    """The architecture config of the per-observer networks of either paper.

    Args:
      architecture: "xu" (MultiConvNets: the multi-task CNN with nothing shared) or "strohm"
        (MultiCNN: the personalised saliency network's layers, one set per observer).
      **config: fields of the architecture's config (`MultiTaskConfig` / `SaliencyNetworkConfig`).
    """
    if architecture == "xu":
        return dataclasses.replace(multi_task.MultiTaskConfig(**config), share_trunk=False)
    if architecture == "strohm":
        return personalised.SaliencyNetworkConfig(**config)
    raise ValueError(f"architecture must be 'xu' or 'strohm', got {architecture!r}")


def build_per_observer_networks(architecture_config, num_observers: int, *, rngs: nnx.Rngs):
    """One independent network per observer, stacked and vectorised, from the architecture config
    `per_observer_architecture` made."""
    if isinstance(architecture_config, multi_task.MultiTaskConfig):
        return multi_task.MultiTaskCNN(num_observers, architecture_config, rngs=rngs)
    return personalised.PerObserverSaliencyNetworks(num_observers, architecture_config, rngs=rngs)


def per_observer_networks(architecture: str, num_observers: int, *, rngs: nnx.Rngs, **config):
    """One independent network per observer of either paper's architecture ("xu" or "strohm",
    `per_observer_architecture`), with `num_observers` networks."""
    return build_per_observer_networks(
        per_observer_architecture(architecture, **config), num_observers, rngs=rngs
    )
