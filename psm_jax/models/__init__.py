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


def per_observer_networks(architecture: str, num_observers: int, *, rngs: nnx.Rngs, **config):
    """One independent network per observer, stacked and vectorised, of either paper's architecture.

    Args:
      architecture: "xu" (MultiConvNets: the multi-task CNN with nothing shared) or "strohm"
        (MultiCNN: the personalised saliency network's layers, one set per observer).
      num_observers: how many networks.
      rngs: initialisation keys.
      **config: fields of the architecture's config (`MultiTaskConfig` / `SaliencyNetworkConfig`).
    """
    if architecture == "xu":
        model_config = dataclasses.replace(multi_task.MultiTaskConfig(**config), share_trunk=False)
        return multi_task.MultiTaskCNN(num_observers, model_config, rngs=rngs)
    if architecture == "strohm":
        model_config = personalised.SaliencyNetworkConfig(**config)
        return personalised.PerObserverSaliencyNetworks(num_observers, model_config, rngs=rngs)
    raise ValueError(f"architecture must be 'xu' or 'strohm', got {architecture!r}")
