"""A universal saliency network: the image alone -> a USM.

The papers take USMs from external predictors (Xu et al.: LDS, BMS, ML-Net, SalNet; Strohm et al.:
DeepGaze IIE, fine-tuned). None can be downloaded here, so this small network stands in for them: it
is trained on the datasets' ground-truth USMs, and its predictions feed the personalised networks'
"predicted USM" rows. USMs precomputed by any external model are read instead from a folder of map
files (`psm_jax.data.external_usm`).

Architecture (our choice; no paper specifies it): four 3x3 convolutions with ReLU, the first three
with stride 2 (120x160 -> 15x20), widths (16, 32, 64, 64), then a 1x1 convolution to a logit map at
15x20. The logits are a distribution over pixels (softmax), trained with the cross-entropy to the
USM read as a distribution (`usm_loss`), as DeepGaze-style models are; a per-pixel sigmoid with MSE
collapsed to all-zero maps on the mostly dark USMs. `usm` turns the logits into a map at the input
resolution: softmax, bilinear upsampling, min-max normalisation to [0, 1] (the convention of every
saliency map in this project).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
from flax import nnx

from psm_jax.models import layers


@dataclasses.dataclass(frozen=True)
class UniversalConfig:
    """Architecture of the universal saliency network."""

    widths: tuple[int, ...] = (16, 32, 64, 64)
    strides: tuple[int, ...] = (2, 2, 2, 1)


class UniversalSaliencyNetwork(nnx.Module):
    """Image (B, 120, 160, 3) from `layers.model_input(image, None)` -> (B, 15, 20) logits."""

    def __init__(self, config: UniversalConfig = UniversalConfig(), *, rngs: nnx.Rngs):
        self.config = config
        self.convs = nnx.List()
        in_features = 3
        for width, stride in zip(config.widths, config.strides, strict=True):
            self.convs.append(layers.Conv(in_features, width, 3, stride=stride, rngs=rngs))
            in_features = width
        self.output = layers.Conv(in_features, 1, 1, kernel_init=layers.xavier_uniform, rngs=rngs)

    def __call__(self, inputs: jax.Array) -> jax.Array:
        features = inputs
        for conv in self.convs:
            features = jax.nn.relu(conv(features))
        return self.output(features)[..., 0]

    def usm(self, inputs: jax.Array) -> jax.Array:
        """Predicted USM at the input resolution, min-max normalised to [0, 1] per image."""
        return logits_to_usm(self(inputs), inputs.shape[1:3])


def usm_loss(logits: jax.Array, usm: jax.Array) -> jax.Array:
    """Per example: cross-entropy of the softmax over pixels to the USM (area-resized to the logits'
    grid) normalised to sum 1; equals KL(USM || prediction) up to the USM's entropy."""
    height, width = logits.shape[1:]
    batch = usm.shape[0]
    target = usm.reshape(batch, height, usm.shape[1] // height, width, usm.shape[2] // width)
    target = jnp.mean(target, axis=(2, 4)).reshape(batch, -1)
    target = target / jnp.maximum(jnp.sum(target, axis=-1, keepdims=True), 1e-12)
    log_probability = jax.nn.log_softmax(logits.reshape(batch, -1), axis=-1)
    return -jnp.sum(target * log_probability, axis=-1)


def logits_to_usm(logits: jax.Array, size: tuple[int, int]) -> jax.Array:
    """(B, h, w) logits -> (B, H, W) maps: softmax, bilinear resize, per-map min-max to [0, 1]."""
    flat = jax.nn.softmax(logits.reshape(logits.shape[0], -1), axis=-1)
    maps = flat.reshape(logits.shape)
    maps = jax.image.resize(maps, (maps.shape[0],) + tuple(size), "bilinear")
    low = jnp.min(maps, axis=(1, 2), keepdims=True)
    high = jnp.max(maps, axis=(1, 2), keepdims=True)
    return jnp.where(high > low, (maps - low) / jnp.maximum(high - low, 1e-12), 0.0)
