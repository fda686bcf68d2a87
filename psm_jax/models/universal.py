"""Universal saliency models: the image alone -> a USM.

The papers take USMs from external predictors (Xu et al.: LDS, BMS, ML-Net, SalNet; Strohm et al.:
DeepGaze IIE, fine-tuned). DeepGaze's weights cannot be had here; these stand in for them, trained
on the datasets' ground-truth USMs, and their predictions are what a new person's image gets (the
"predicted USM" rows, enrolment, `launch/predict.py`). USMs precomputed by any external model are
read instead from a folder of map files (`psm_jax.data.external_usm`). Two architectures, chosen
by `UniversalConfig.backbone`:

- `backbone=""`: `UniversalSaliencyNetwork`, a small network trained from scratch (our choice; no
  paper specifies it): four 3x3 convolutions with ReLU, the first three with stride 2 (120x160 ->
  15x20), widths (16, 32, 64, 64), then a 1x1 convolution to a logit map at 15x20. On OSIE it
  stays near the centre bias (CC 0.355 against the observers' PSMs; the centre bias 0.252).
- `backbone="efficientnet_lite0"`: `ReadoutSaliencyNetwork`, as DeepGaze II/IIE are built: the
  frozen features of an ImageNet-trained backbone (`psm_jax.models.pretrained`) at several depths
  (`feature_strides`), read at `input_size`, upsampled to the finest one's grid and concatenated,
  then a small readout of 1x1 convolutions (`readout_widths`, channel dropout on the features), a
  Gaussian blur of learned width and a learned coarse centre-bias map added to the logits. Only
  the readout is trained; the backbone's features of each image are computed once
  (`source_features`) and the training reads them (`psm_jax.train.tasks`). Checkpoints hold the
  readout alone: the backbone is the package's, loaded by name (`pretrained.backbone`).

Both output logits, a distribution over pixels (softmax), trained with the cross-entropy to the
USM read as a distribution (`usm_loss`), as DeepGaze-style models are; a per-pixel sigmoid with MSE
collapsed to all-zero maps on the mostly dark USMs. `usm` turns the logits into a map at the input
resolution: softmax, bilinear upsampling, min-max normalisation to [0, 1] (the convention of every
saliency map in this project).
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from psm_jax.data import pipeline
from psm_jax.models import layers, pretrained

BACKBONE_CHANNELS = {
    "efficientnet_lite0": {8: 40, 16: 112, 32: 320, "head": 1280},
    "efficientnet_lite1": {8: 40, 16: 112, 32: 320, "head": 1280},  # lite0's widths, deeper
    "efficientnet_lite2": {8: 48, 16: 120, 32: 352, "head": 1280},
}
"""Channels of each backbone's features at each stride, and of its head (1x1 convolution to
1,280 channels at stride 32), by `pretrained.BACKBONES` name (EfficientNet-Lite's block groups;
a test checks them against the built networks)."""


@dataclasses.dataclass(frozen=True)
class UniversalConfig:
    """Architecture of a universal saliency model (module docstring).

    Attributes:
      backbone: "" (the small network trained from scratch) or a frozen pretrained backbone of
        `pretrained.BACKBONES` (the readout network).
      widths, strides: the small network's convolutions.
      input_size: (H, W) the backbone reads each image at (the readout network).
      feature_strides: the backbone's features the readout reads, by stride.
      head: the readout also reads the backbone's head (EfficientNet's 1,280 channels at
        stride 32, before the ImageNet classifier).
      readout_widths: the readout's 1x1 convolutions before its output layer (empty: a linear
        readout).
      feature_dropout: dropout of whole feature channels per image while training.
      blur_sigma: the initial width of the learned Gaussian blur, in cells of the finest grid.
      centre_bias_grid: (h, w) of the learned centre-bias map, upsampled to the grid.
    """

    backbone: str = ""
    widths: tuple[int, ...] = (16, 32, 64, 64)
    strides: tuple[int, ...] = (2, 2, 2, 1)
    input_size: tuple[int, int] = (384, 512)
    feature_strides: tuple[int, ...] = (8, 16, 32)
    head: bool = False
    readout_widths: tuple[int, ...] = (24, 16)
    feature_dropout: float = 0.3
    blur_sigma: float = 1.5
    centre_bias_grid: tuple[int, int] = (6, 8)

    def __post_init__(self):
        if self.backbone and self.backbone not in BACKBONE_CHANNELS:
            raise ValueError(
                f"backbone must be '' or one of {tuple(BACKBONE_CHANNELS)}, got {self.backbone!r}"
            )
        if self.backbone:
            strides = {s for s in BACKBONE_CHANNELS[self.backbone] if isinstance(s, int)}
            unknown = set(self.feature_strides) - strides
            if unknown or not self.feature_strides:
                raise ValueError(
                    f"feature_strides must be among {tuple(sorted(strides))}, "
                    f"got {self.feature_strides}"
                )
            if not 0.0 <= self.feature_dropout < 1.0:
                raise ValueError(f"feature_dropout must be in [0, 1), got {self.feature_dropout}")

    @property
    def feature_names(self) -> tuple[str, ...]:
        """The backbone features the readout reads ("stride8", ..., "head"), finest first."""
        strides = tuple(f"stride{s}" for s in sorted(self.feature_strides))
        return strides + (("head",) if self.head else ())

    @property
    def feature_channels(self) -> dict[str, int]:
        """Channels of each feature the readout reads (`feature_names`)."""
        channels = BACKBONE_CHANNELS[self.backbone]
        return {
            name: channels["head" if name == "head" else int(name.removeprefix("stride"))]
            for name in self.feature_names
        }


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
    if usm.shape[1] % height == 0 and usm.shape[2] % width == 0:  # block means
        target = usm.reshape(batch, height, usm.shape[1] // height, width, usm.shape[2] // width)
        target = jnp.mean(target, axis=(2, 4)).reshape(batch, -1)
    else:  # another ratio (e.g. 120x160 onto 48x64): an antialiased resize
        target = resize_maps(usm, (height, width), antialias=True)
        target = jnp.maximum(target.reshape(batch, -1), 0.0)
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


@functools.cache
def resize_matrix(size_out: int, size_in: int, antialias: bool = False) -> np.ndarray:
    """(size_out, size_in) the linear map `jax.image.resize` applies along one axis ("linear";
    with `antialias`, an area-like filter when shrinking), as a matrix: resizing a map is then
    two small matrix products, which XLA:CPU runs several times faster than the resize itself
    (and its gradient) on the readout's shapes."""
    identity = np.eye(size_in, dtype=np.float32)
    with jax.ensure_compile_time_eval():  # a constant, also when first asked for under jit
        matrix = jax.image.resize(identity, (size_out, size_in), "linear", antialias=antialias)
    return np.asarray(matrix)


def resize_maps(maps: jax.Array, size: tuple[int, int], antialias: bool = False) -> jax.Array:
    """(B, h, w[, C]) maps resized to `size` = (H, W) bilinearly (`resize_matrix`)."""
    rows = resize_matrix(size[0], maps.shape[1], antialias)
    cols = resize_matrix(size[1], maps.shape[2], antialias)
    if maps.ndim == 3:
        return jnp.einsum("Hh,bhw,Ww->bHW", rows, maps, cols)
    return jnp.einsum("Hh,bhwc,Ww->bHWc", rows, maps, cols)


def _blur_matrix(size: int, sigma: jax.Array, radius: int) -> jax.Array:
    """(size, size) a truncated Gaussian of width `sigma` along one axis, edges extended: output
    i is the taps' sum over clip(i + offset, 0, size - 1)."""
    offsets = np.arange(-radius, radius + 1)
    taps = jnp.exp(-0.5 * (offsets.astype(np.float32) / sigma) ** 2)
    taps = taps / jnp.sum(taps)
    sources = np.clip(np.arange(size)[:, None] + offsets[None, :], 0, size - 1)  # (size, taps)
    one_hot = np.eye(size, dtype=np.float32)[sources]  # (size, taps, size)
    return jnp.einsum("k,ikj->ij", taps, one_hot)


def gaussian_blur(maps: jax.Array, sigma: jax.Array, radius: int) -> jax.Array:
    """(B, H, W) maps blurred by a separable Gaussian of width `sigma` (cells; a traced scalar,
    so it can be learned), truncated at `radius` cells, edges extended (no mass fades at the
    border); as two matrix products (`_blur_matrix`), which XLA:CPU differentiates far faster
    than a sum of shifted slices."""
    rows = _blur_matrix(maps.shape[1], sigma, radius)
    cols = _blur_matrix(maps.shape[2], sigma, radius)
    return jnp.einsum("Hh,bhw,Ww->bHW", rows, maps, cols)


def _pointwise(conv: layers.Conv, features: jax.Array) -> jax.Array:
    """A 1x1 `layers.Conv` as a matrix product over the channels (what it computes; XLA:CPU runs
    the product and its gradient faster than the convolution on these shapes)."""
    return jnp.einsum("bhwc,co->bhwo", features, conv.kernel[...][0, 0]) + conv.bias[...]


class ReadoutSaliencyNetwork(nnx.Module):
    """A frozen backbone's features -> (B, h, w) logits on the finest feature grid (module
    docstring). `__call__` takes the features (`backbone_features`); the backbone itself is not
    part of the module (its weights are the package's, `pretrained.backbone`)."""

    def __init__(self, config: UniversalConfig, *, rngs: nnx.Rngs):
        if not config.backbone:
            raise ValueError("The readout network reads a backbone's features: set backbone.")
        self.config = config
        widths = tuple(config.readout_widths) or (1,)
        # Whole feature channels dropped per image (as Dropout2d), applied to the projection's
        # kernel rows rather than to the features: the same product, without touching the 8.6 M
        # feature values of a batch of 32 at 384x512. On the 2-core VM a mask per feature value
        # cost 170 ms per step and a broadcast channel mask on the features 50 ms, against
        # 20 ms for the rest of the forward pass.
        self.dropout = nnx.Dropout(config.feature_dropout, rngs=rngs)
        # The first 1x1 convolution (its kernel and bias read directly), one per stride, applied
        # before upsampling: a 1x1 convolution
        # and a bilinear resize are both linear, so projecting first and summing the upsampled
        # projections equals convolving the upsampled concatenation, at a fraction of the cost
        # (EfficientNet-Lite0 at 384x512: 6.5 M instead of 35 M multiply-adds per image and width).
        self.project = nnx.List(
            [
                layers.Conv(channels, widths[0], 1, rngs=rngs)
                for channels in config.feature_channels.values()
            ]
        )
        self.readout = nnx.List()
        in_features = widths[0]
        for width in widths[1:]:
            self.readout.append(layers.Conv(in_features, width, 1, rngs=rngs))
            in_features = width
        self.output = (
            layers.Conv(in_features, 1, 1, kernel_init=layers.xavier_uniform, rngs=rngs)
            if config.readout_widths
            else None
        )
        self.log_blur_sigma = nnx.Param(jnp.log(jnp.asarray(config.blur_sigma, jnp.float32)))
        self.centre_bias = nnx.Param(jnp.zeros(config.centre_bias_grid, jnp.float32))

    def __call__(self, features: dict[str, jax.Array]) -> jax.Array:
        """(B, h, w) logits from the backbone's features (name -> (B, h_s, w_s, C_s), any float
        dtype), h x w the finest feature's grid."""
        names = self.config.feature_names
        batch, height, width = features[names[0]].shape[:3]
        hidden = 0.0
        for name, project in zip(names, self.project, strict=True):
            kernel = project.kernel[...][0, 0]  # (C, width) of the 1x1 convolution
            keep = self.dropout(jnp.ones((batch, kernel.shape[0]), jnp.float32))  # 0 or 1 / p
            projected = (
                jnp.einsum(
                    "bhwc,bco->bhwo", features[name].astype(jnp.float32), keep[..., None] * kernel
                )
                + project.bias[...]
            )
            hidden = hidden + resize_maps(projected, (height, width))
        if self.output is None:  # readout_widths=(): a linear readout
            logits = hidden[..., 0]
        else:
            hidden = jax.nn.relu(hidden)
            for conv in self.readout:
                hidden = jax.nn.relu(_pointwise(conv, hidden))
            logits = _pointwise(self.output, hidden)[..., 0]
        radius = max(1, min(height, width) // 4)
        sigma = jnp.clip(jnp.exp(self.log_blur_sigma[...]), 0.3, radius / 2)
        logits = gaussian_blur(logits, sigma, radius)
        centre = resize_maps(self.centre_bias[...][None], (height, width))
        return logits + centre

    def usm(self, features: dict[str, jax.Array], size: tuple[int, int]) -> jax.Array:
        """Predicted USMs at `size`, min-max normalised to [0, 1] per image."""
        return logits_to_usm(self(features), size)


def build(config: UniversalConfig, *, rngs: nnx.Rngs) -> nnx.Module:
    """The universal model `config` describes: the readout network with a backbone, the small
    network without."""
    if config.backbone:
        return ReadoutSaliencyNetwork(config, rngs=rngs)
    return UniversalSaliencyNetwork(config, rngs=rngs)


@nnx.jit(static_argnames="names")
def _backbone_features(backbone, images, names):
    return backbone(images, names)


def backbone_features(config: UniversalConfig, images: np.ndarray) -> dict[str, jax.Array]:
    """The frozen backbone's features the readout reads, of (B, H, W, 3) uint8 images at
    `config.input_size`."""
    if tuple(images.shape[1:3]) != tuple(config.input_size):
        raise ValueError(
            f"The backbone reads images at {tuple(config.input_size)}, got {images.shape[1:3]}."
        )
    return _backbone_features(pretrained.backbone(config.backbone), images, config.feature_names)


def source_features(
    config: UniversalConfig, source, *, batch_size: int = 8, progress=None
) -> dict[str, np.ndarray]:
    """The backbone's features of every record of a data source, in record order, as float16
    (name -> (N, h_s, w_s, C_s)): computed once per training run, so that training the readout
    never runs the backbone. Each image is decoded at `config.input_size`
    (`psm_jax.data.pipeline.decode_image`), as `psm_jax.inference.predicted_usms` decodes.

    Args:
      config: the readout network's architecture.
      source: a split's data source (`psm_jax.data.pipeline.open_split`).
      batch_size: images per backbone call (one compiled shape; the last batch padded).
      progress: optional tqdm-like object, updated once per image.
    """
    outputs: dict[str, list[np.ndarray]] = {name: [] for name in config.feature_names}
    for start in range(0, len(source), batch_size):
        indices = range(start, min(start + batch_size, len(source)))
        images = np.stack(
            [pipeline.decode_image(source[i]["image"], config.input_size) for i in indices]
        )
        features = backbone_features(config, layers.pad_batch(images, batch_size))
        for name in config.feature_names:
            outputs[name].append(np.asarray(features[name][: len(indices)], np.float16))
        if progress is not None:
            progress.update(len(indices))
    return {name: np.concatenate(arrays) for name, arrays in outputs.items()}
