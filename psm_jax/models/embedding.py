"""The user-embedding encoder of Strohm et al. 2024 (Fig. 2, Sec. 3.1).

A Siamese convolutional encoder E maps each of a user's m (image, PSM) pairs to a feature vector;
the m vectors are averaged and normalised to unit length: that is the user embedding e_U. It is
trained with the cosine triplet margin loss (`psm_jax.losses.triplet_loss`).

Faithful to the paper: input RGB + PSM as a fourth channel at 120x160; four blocks of
[2-D convolution with stride 2, BatchNorm, ReLU]; global average pooling; dropout (rate 0.5 in
training); a linear layer; mean over the m pairs; L2 normalisation; 32-d embeddings by default.

Where the paper is silent (choices, configurable): 3x3 kernels; block widths (16, 32, 64, 128),
narrower than a GPU model would use so that the CPU benchmarks and the quick start stay fast;
BatchNorm momentum 0.9 (PyTorch's 0.1 update rate, which the authors' code base would default to).
Because the pairs are averaged, the embedding does not depend on their order.

Ours, as options (`EncoderConfig`, measured in docs/results_log.md): the departure from the
USM as the input map (`input_map="discrepancy"`), and pooling under the person's gaze instead of
the global average (`pooling="map"`).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from psm_jax.data import pipeline
from psm_jax.models import layers

INPUT_MAPS = ("psm", "discrepancy")
POOLINGS = ("mean", "map")


@dataclasses.dataclass(frozen=True)
class EncoderConfig:
    """Architecture of the user-embedding encoder."""

    widths: tuple[int, ...] = (16, 32, 64, 128)
    kernel_size: int = 3
    embedding_size: int = 32
    dropout_rate: float = 0.5
    batch_norm_momentum: float = 0.9
    # The map beside each image: "psm" (Strohm et al.: the person's PSM) or "discrepancy" (ours;
    # the quick schedules' choice, see psm_jax.configs.experiments.quick_schedule:
    # clip(0.5 + discrepancy_scale (PSM - USM), 0, 1), the person's departure from the
    # population's map, which then needs every pair's USM; measured in docs/results_log.md).
    # Unscaled, the discrepancy is too faint beside the image and the embeddings collapse.
    input_map: str = "psm"
    discrepancy_scale: float = 4.0
    # How a pair's last feature map becomes a vector: "mean" (Strohm et al.: global average
    # pooling) or "map" (ours; the quick schedules' choice, with input_map="discrepancy", see
    # psm_jax.configs.experiments.quick_schedule): the features weighted by where the person looked,
    # the PSM downsampled to the feature map and normalised to sum 1 (with input_map="psm"), or
    # the person's minus the population's such density (with input_map="discrepancy": the
    # features they look at more than people in general). Measured in docs/results_log.md.
    pooling: str = "mean"
    # The resolution the encoder reads its pairs at: the image and its map averaged over blocks of
    # input_downsample x input_downsample pixels before the first convolution (ours; 1: the
    # working size, as Strohm et al.). 2 makes an encoder step about 4-5x cheaper on a CPU;
    # its effect on precision@1 is measured in docs/results_log.md.
    input_downsample: int = 1
    # The dtype the layers compute in (`layers.COMPUTE_DTYPES`): "float32" (default) or
    # "bfloat16" (ours, for accelerators with bf16 units; BatchNorm statistics stay float32):
    # parameters stay float32, the pair features are float32; a checkpoint serves either.
    compute_dtype: str = "float32"

    def __post_init__(self):
        layers.check_compute_dtype(self.compute_dtype)
        if self.input_map not in INPUT_MAPS:
            raise ValueError(f"input_map must be one of {INPUT_MAPS}, got {self.input_map!r}")
        if self.pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}, got {self.pooling!r}")
        factor = self.input_downsample
        if isinstance(factor, bool) or not isinstance(factor, int) or factor < 1:
            raise ValueError(
                f"input_downsample must be a whole number >= 1, got {self.input_downsample!r}"
            )


class UserEmbeddingEncoder(nnx.Module):
    """E({I_1..I_m}, {PSM_1..PSM_m}) -> unit-norm user embedding.

    Call with images (B, m, H, W, 3) (uint8 or float in [0, 1]) and PSMs (B, m, H, W) in [0, 1]
    (and the USMs of the images, (B, m, H, W), for `input_map="discrepancy"`); returns
    (B, embedding_size) unit vectors. `pair_features` gives the per-pair features before the
    average. Train/eval mode (dropout, BatchNorm statistics) is switched with `model.train()` /
    `model.eval()` as everywhere in NNX.
    """

    def __init__(self, config: EncoderConfig = EncoderConfig(), *, rngs: nnx.Rngs):
        self.config = config
        dtype = jnp.dtype(config.compute_dtype)
        self.convs = nnx.List()
        self.norms = nnx.List()
        in_features = 4
        for width in config.widths:
            self.convs.append(
                layers.Conv(in_features, width, config.kernel_size, stride=2, rngs=rngs)
            )
            self.norms.append(
                layers.BatchNorm(width, momentum=config.batch_norm_momentum, dtype=dtype, rngs=rngs)
            )
            in_features = width
        self.dropout = nnx.Dropout(config.dropout_rate, rngs=rngs)
        self.linear = nnx.Linear(in_features, config.embedding_size, dtype=dtype, rngs=rngs)

    @property
    def needs_usms(self) -> bool:
        """Whether the encoder reads each pair's USM (`input_map="discrepancy"`)."""
        return self.config.input_map == "discrepancy"

    def input_map(self, psms: jax.Array, usms: jax.Array | None) -> jax.Array:
        """The map the encoder sees beside each image, in [0, 1] (see `EncoderConfig`)."""
        if not self.needs_usms:
            return psms
        _require_usms(usms)
        scaled = 0.5 + self.config.discrepancy_scale * (psms - usms)
        return jnp.clip(scaled, 0.0, 1.0)

    def pair_features(
        self, images: jax.Array, psms: jax.Array, usms: jax.Array | None = None
    ) -> jax.Array:
        """(N, H, W, 3) images, (N, H, W) PSMs (and USMs, for `input_map="discrepancy"`) ->
        (N, embedding_size) features, unnormalised."""
        dtype = jnp.dtype(self.config.compute_dtype)
        features = layers.model_input(images, self.input_map(psms, usms))
        features = layers.block_mean(features, self.config.input_downsample).astype(dtype)
        for conv, norm in zip(self.convs, self.norms, strict=True):
            features = jax.nn.relu(norm(conv(features)))
        if self.config.pooling == "map":
            weights = self.pooling_weights(psms, usms, features.shape[1:3])
            pooled = jnp.einsum("nhw,nhwc->nc", weights, features.astype(jnp.float32))
        else:
            pooled = jnp.mean(features.astype(jnp.float32), axis=(1, 2))
        return self.linear(self.dropout(pooled.astype(dtype))).astype(jnp.float32)

    def pooling_weights(
        self, psms: jax.Array, usms: jax.Array | None, size: tuple[int, int]
    ) -> jax.Array:
        """`pooling="map"`'s weights over the (h, w) feature map: (N, h, w), see `EncoderConfig`."""

        def density(maps: jax.Array) -> jax.Array:
            maps = jnp.asarray(maps, jnp.float32)
            small = jax.image.resize(maps, (maps.shape[0], *size), "linear", antialias=True)
            small = jnp.maximum(small, 0.0)
            return small / jnp.maximum(jnp.sum(small, axis=(1, 2), keepdims=True), 1e-12)

        if not self.needs_usms:
            return density(psms)
        _require_usms(usms)
        return density(psms) - density(usms)

    def __call__(
        self, images: jax.Array, psms: jax.Array, usms: jax.Array | None = None
    ) -> jax.Array:
        batch, m = images.shape[:2]
        features = self.pair_features(
            images.reshape((batch * m,) + images.shape[2:]),
            psms.reshape((batch * m,) + psms.shape[2:]),
            None if usms is None else usms.reshape((batch * m,) + usms.shape[2:]),
        )
        mean = jnp.mean(features.reshape(batch, m, -1), axis=1)
        return normalise(mean)


def _require_usms(usms) -> None:
    if usms is None:
        raise ValueError(
            "This encoder reads each pair's departure from the USM (input_map="
            "'discrepancy'): give the USMs of the pairs' images too."
        )


def normalise(vectors: jax.Array, epsilon: float = 1e-12) -> jax.Array:
    """L2-normalises along the last axis (a zero vector stays zero instead of NaN)."""
    norm = jnp.sqrt(jnp.sum(jnp.square(vectors), axis=-1, keepdims=True))
    return vectors / jnp.maximum(norm, epsilon)


@nnx.jit
def _pair_features(encoder: UserEmbeddingEncoder, images, psms, usms) -> jax.Array:
    return encoder.pair_features(images, psms, usms)


PAIR_CHUNK = 64
"""Pairs per encoder call when embedding through a pair cache (one compiled shape)."""


def cached_set_embeddings(encoder: UserEmbeddingEncoder, batch, cache: dict) -> np.ndarray:
    """A batch of sets' embeddings, each (observer, image) pair run through the encoder once.

    In eval mode a pair's features do not depend on the rest of its batch (no dropout, BatchNorm
    with its running statistics), and a set's embedding is the normalised mean of its pairs'
    features (`UserEmbeddingEncoder.__call__`): so features cached by (observer, image index)
    give the same embeddings as embedding every set afresh.
    """
    observers = np.asarray(batch["observer"])
    index = np.asarray(batch["image_index"])
    sets, m = index.shape
    keys = [(int(observers[b]), int(index[b, j])) for b in range(sets) for j in range(m)]
    new: dict[tuple[int, int], int] = {}
    for row, key in enumerate(keys):
        if key not in cache:
            new.setdefault(key, row)
    if new:
        names = ["images", "psms"] + (["usms"] if encoder.needs_usms else [])
        flat = {
            name: np.asarray(batch[name]).reshape((sets * m,) + np.shape(batch[name])[2:])
            for name in names
        }
        rows = np.fromiter(new.values(), int)
        for start in range(0, len(rows), PAIR_CHUNK):
            chosen = rows[start : start + PAIR_CHUNK]
            inputs = [layers.pad_batch(flat[name][chosen], PAIR_CHUNK) for name in names]
            inputs += [None] * (3 - len(inputs))
            features = np.asarray(_pair_features(encoder, *inputs))[: len(chosen)]
            for row, feature in zip(chosen, features, strict=True):
                cache[keys[row]] = feature
    mean = np.stack([cache[key] for key in keys]).reshape(sets, m, -1).mean(axis=1)
    return mean / np.maximum(np.linalg.norm(mean, axis=-1, keepdims=True), 1e-12)


def collect_embeddings(
    encoder: UserEmbeddingEncoder,
    batches,
    num_observers: int,
    per_observer: int,
    progress=None,
    with_image_index: bool = False,
    pair_cache: dict | None = None,
):
    """The encoder's embeddings of the first `per_observer` sets of each observer in `batches`.

    The one loop that embeds observers: the PSM network's training pool, the evaluated observers'
    embeddings, and the embedding studies all go through it. Each (observer, image) pair goes
    through the encoder once, in chunks of `PAIR_CHUNK` pairs (one compiled shape).

    Args:
      encoder: a trained encoder (in eval mode).
      batches: an iterable of batches of sets (`psm_jax.data.pipeline.embedding_dataset`): dicts
        with images (B, m, H, W, 3), psms (B, m, H, W), usms (B, m, H, W) (read only by an
        encoder with `input_map="discrepancy"`) and observer (B,) in [0, num_observers).
      num_observers: observers to collect for.
      per_observer: sets per observer.
      progress: optional tqdm-like object, updated once per collected embedding.
      with_image_index: also return which images each embedded set holds (the batches'
        `image_index`).
      pair_cache: a dict that keeps each (observer, image) pair's encoder features, so a pair
        that several sets share is encoded once (the same embeddings, `cached_set_embeddings`);
        give the same dict to calls on the same encoder, images and observer group only (the
        key is the batches' observer and image index). None: a new dict for this call.

    Returns:
      (num_observers, per_observer, d) float32; with `with_image_index`, also
      (num_observers, per_observer, m) int: the record indices of each set's images.
    """
    pair_cache = {} if pair_cache is None else pair_cache
    return pipeline.collect_sets(
        batches,
        num_observers,
        per_observer,
        lambda batch: cached_set_embeddings(encoder, batch, pair_cache),
        progress=progress,
        with_image_index=with_image_index,
    )
