"""Building blocks shared by every model: input assembly, per-example convolution, stacked layers.

Two kinds of convolution appear in the papers' models:

- an ordinary convolution, one kernel for the whole batch (`Conv` with `num_observers=None`);
- a convolution whose kernel differs per example: kernels predicted from a user embedding by a
  hypernetwork (Strohm et al.), or the kernel of each example's own observer, taken from parameters
  stacked over observers (Xu et al.'s per-observer heads, the per-observer baselines).

The second kind is `per_example_conv`, in one of two formulations (`FORMULATIONS`), never as
`jax.vmap` over `lax.conv_general_dilated`: on XLA:CPU the vmapped form lowers to a grouped
convolution whose kernel gradient measured 40-110x slower (docs/results_log.md), and the cost of
one example must not depend on the batch or on how many observers a model knows.

- "shifted_matmul": shifted slices of the features times each example's kernel taps, as batched
  matrix products; any stride, and the gradient is XLA's own.
- "conv_map": one ordinary convolution per example in a `lax.map` loop (what oneDNN and cuDNN do
  for a grouped convolution, and what XLA:CPU runs fastest), with a hand-written gradient: the
  input gradient is the same loop over the flipped kernels, the kernel gradient one batched matrix
  product per tap (XLA's own gradient of the loop, and its kernel-gradient convolution, measured
  8-16x slower). Stride 1 and odd kernels only (the hypernetwork's dynamic layer).

"auto" (the default) takes "conv_map" with the CPU forms (`cpu_forms()`) where it applies and
"shifted_matmul" otherwise (accelerators keep the formulation they were validated with until one
is measured there).

Ordinary layers with CPU-specific formulations (same numbers to float32 rounding, each pinned to
the plain one by a test, measured in docs/results_log.md): stride-2 convolutions (`conv`,
`stride2_conv`: the space-to-depth form where XLA:CPU is slow), and sums over the batch and
positions as products with a vector of ones (`add_bias`'s gradient, `BatchNorm`'s statistics and
gradient) instead of the reduce-windows XLA:CPU makes of large reductions.

One switch picks every one of these forms (and EfficientNet-Lite's depthwise form): `cpu_forms()`,
true on the CPU backend and false on GPU and TPU, where the plain forms (XLA's strided
convolution, `features + bias`, `nnx.BatchNorm`, `lax`'s grouped convolution) are what cuDNN and
XLA:GPU were built for; none of the CPU forms has been measured on an accelerator
(benchmarks/bench_layer_forms.py times both there). `PSM_JAX_LAYER_FORMS=cpu|plain` overrides it
(read when a function is traced: set it before jitting).

Per-observer parameters are `ObserverParam` variables (a subtype of `nnx.Param`) with a leading
observer axis, so a train step can select them by type and update only the rows of the observers in
its batch (`psm_jax.train.step`).
"""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax import lax

COMPUTE_DTYPES = ("float32", "bfloat16")
"""The dtypes a network can compute in (its `compute_dtype` option); parameters stay float32.

"bfloat16" is for accelerators with bf16 units (GPU, TPU): on XLA:CPU (jaxlib 0.10.2) the PSM
network's forward measured 1.4x slower in bf16 than in float32 on an AVX2 CPU, and single
convolutions 3-10x slower on one with AVX512_BF16 (docs/results_log.md), so the default is
float32.
"""


LAYER_FORMS_VARIABLE = "PSM_JAX_LAYER_FORMS"
LAYER_FORMS = ("auto", "cpu", "plain")
"""The values of `PSM_JAX_LAYER_FORMS`: "auto" (or unset) picks by backend (`cpu_forms`)."""


def cpu_forms() -> bool:
    """Whether the layers take the forms tuned for XLA:CPU (module docstring) or the plain ones.

    `PSM_JAX_LAYER_FORMS=cpu` or `=plain` decides; unset or "auto", the CPU forms on the CPU
    backend (`jax.default_backend()`) and the plain forms on any other. Read when a layer is
    traced, so a jitted function keeps the forms it was traced with.

    Raises:
      ValueError: `PSM_JAX_LAYER_FORMS` is set to something else.
    """
    chosen = os.environ.get(LAYER_FORMS_VARIABLE, "auto").strip().lower() or "auto"
    if chosen not in LAYER_FORMS:
        raise ValueError(f"{LAYER_FORMS_VARIABLE} must be one of {LAYER_FORMS}, got {chosen!r}")
    if chosen == "auto":
        return jax.default_backend() == "cpu"
    return chosen == "cpu"


def check_compute_dtype(name: str) -> None:
    if name not in COMPUTE_DTYPES:
        raise ValueError(f"compute_dtype must be one of {COMPUTE_DTYPES}, got {name!r}")


def he_normal(batch_axis: tuple[int, ...] = ()):
    """He (Kaiming) normal initialiser, for layers followed by ReLU; batch axes are not fan."""
    return jax.nn.initializers.variance_scaling(
        2.0, "fan_in", "truncated_normal", batch_axis=batch_axis
    )


def xavier_uniform(batch_axis: tuple[int, ...] = ()):
    """Xavier (Glorot) uniform initialiser, Caffe's 'xavier'; batch axes are not fan."""
    return jax.nn.initializers.variance_scaling(1.0, "fan_avg", "uniform", batch_axis=batch_axis)


class ObserverParam(nnx.Param):
    """A parameter stacked over observers: axis 0 indexes the observer."""


def model_input(image: jax.Array, saliency: jax.Array | None) -> jax.Array:
    """Network input: RGB (and optionally a saliency map as a fourth channel), centred floats.

    Args:
      image: (..., H, W, 3) uint8 in [0, 255] or float in [0, 1].
      saliency: (..., H, W) map in [0, 1] (a USM or a PSM), or None for RGB-only input.

    Returns:
      (..., H, W, 3 or 4) float32: each channel in [0, 1] minus 0.5, so inputs are centred.
    """
    if jnp.issubdtype(image.dtype, jnp.integer):
        rgb = image.astype(jnp.float32) / 255.0
    else:
        rgb = image.astype(jnp.float32)
    channels = [rgb - 0.5]
    if saliency is not None:
        channels.append(saliency.astype(jnp.float32)[..., None] - 0.5)
    return jnp.concatenate(channels, axis=-1)


def pad_batch(array: np.ndarray, size: int) -> np.ndarray:
    """`array` with its first axis padded to `size` by repeating its last row.

    A short last batch then has the full batches' shape, so a jitted model is compiled once per
    job instead of once more per remainder; the caller drops the padded rows' outputs.
    """
    missing = size - len(array)
    if missing <= 0:
        return array
    return np.concatenate([array, np.repeat(np.asarray(array)[-1:], missing, axis=0)])


def _same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow/Flax 'SAME' padding: output ceil(size / stride)."""
    output = -(-size // stride)
    total = max((output - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def shifted_views(features: jax.Array, kernel: int, stride: int) -> list[jax.Array]:
    """The kernel * kernel strided views of padded features, in (row, column) kernel order."""
    _, height, width, _ = features.shape
    pad_h, pad_w = _same_padding(height, kernel, stride), _same_padding(width, kernel, stride)
    padded = jnp.pad(features, ((0, 0), pad_h, pad_w, (0, 0)))
    out_h, out_w = -(-height // stride), -(-width // stride)
    return [
        padded[
            :,
            dy : dy + stride * (out_h - 1) + 1 : stride,
            dx : dx + stride * (out_w - 1) + 1 : stride,
        ]
        for dy in range(kernel)
        for dx in range(kernel)
    ]


FORMULATIONS = ("auto", "conv_map", "shifted_matmul")
"""How `per_example_conv` computes (see the module docstring)."""


def _conv_one(features: jax.Array, kernel: jax.Array) -> jax.Array:
    """(H, W, C) * (k, k, C, O) -> (H, W, O): one example, stride 1, 'SAME'."""
    return lax.conv_general_dilated(
        features[None], kernel, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")
    )[0]


def _conv_loop(features: jax.Array, kernels: jax.Array) -> jax.Array:
    return lax.map(lambda pair: _conv_one(*pair), (features, kernels))


@jax.custom_vjp
def _conv_map(features: jax.Array, kernels: jax.Array) -> jax.Array:
    """Each example convolved with its own kernel by a loop of ordinary convolutions."""
    return _conv_loop(features, kernels)


def _conv_map_forward(features, kernels):
    return _conv_loop(features, kernels), (features, kernels)


def _conv_map_backward(residuals, gradient):
    features, kernels = residuals
    kernel = kernels.shape[1]
    # d/dx of a stride-1 'SAME' correlation with an odd kernel: the same correlation of the
    # output gradient with the kernel flipped in space and its channel axes swapped.
    flipped = jnp.swapaxes(kernels[:, ::-1, ::-1], 3, 4)
    features_gradient = _conv_loop(gradient, flipped)
    # d/dk for tap (dy, dx): sum over positions of the shifted input times the output gradient.
    views = shifted_views(features, kernel, 1)
    taps = [jnp.einsum("bhwc,bhwo->bco", view, gradient) for view in views]
    kernels_gradient = jnp.stack(taps, axis=1).reshape(kernels.shape)
    return features_gradient, kernels_gradient


_conv_map.defvjp(_conv_map_forward, _conv_map_backward)


def _choose_formulation(formulation: str, kernel: int, stride: int) -> str:
    if formulation not in FORMULATIONS:
        raise ValueError(f"formulation must be one of {FORMULATIONS}, got {formulation!r}")
    applies = stride == 1 and kernel % 2 == 1
    if formulation == "conv_map" and not applies:
        raise ValueError(
            f"The conv_map formulation needs stride 1 and an odd kernel, got {kernel}x{kernel} "
            f"with stride {stride}."
        )
    if formulation == "auto":
        return "conv_map" if applies and cpu_forms() else "shifted_matmul"
    return formulation


def per_example_conv(
    features: jax.Array,
    kernels: jax.Array,
    biases: jax.Array | None = None,
    stride: int = 1,
    formulation: str = "auto",
) -> jax.Array:
    """Convolves each example with its own kernel ('SAME' padding, cross-correlation like lax).

    Args:
      features: (B, H, W, C).
      kernels: (B, k, k, C, O), example b's kernel in HWIO layout.
      biases: (B, O) or None.
      stride: the same in both directions.
      formulation: one of `FORMULATIONS` (the module docstring says what each does); every one
        computes the same numbers.

    Returns:
      (B, ceil(H / stride), ceil(W / stride), O), equal to running `lax.conv_general_dilated` on
      each example with its kernel.
    """
    batch, kernel, _, channels, outputs = kernels.shape
    formulation = _choose_formulation(formulation, kernel, stride)
    if batch == 1:  # one example: an ordinary convolution is faster than the batched matmuls
        result = lax.conv_general_dilated(
            features,
            kernels[0],
            (stride, stride),
            "SAME",
            dimension_numbers=("NHWC", "HWIO", "NHWC"),
        )
        return result if biases is None else result + biases[:, None, None, :]
    if formulation == "conv_map":
        result = _conv_map(features, kernels)
        return result if biases is None else result + biases[:, None, None, :]
    views = shifted_views(features, kernel, stride)
    if channels * kernel * kernel <= 256:
        # Few input channels (the first layer): one batched matmul over gathered patches.
        patches = jnp.concatenate(views, axis=-1)
        result = jnp.einsum(
            "bhwp,bpo->bhwo", patches, kernels.reshape(batch, kernel * kernel * channels, outputs)
        )
    else:
        # Many channels: a sum of kernel * kernel batched matmuls, no patch tensor in memory.
        taps = kernels.reshape(batch, kernel * kernel, channels, outputs)
        result = sum(jnp.einsum("bhwc,bco->bhwo", view, taps[:, i]) for i, view in enumerate(views))
    if biases is not None:
        result = result + biases[:, None, None, :]
    return result


def _space_to_depth_conv(features: jax.Array, kernel: jax.Array) -> jax.Array:
    """A 'SAME' stride-2 convolution written as a stride-1 one on 2x2 blocks (space-to-depth).

    The padded input's 2x2 blocks become channels (4C), the k x k kernel a ceil(k/2)-square one
    over blocks (taps beyond k are zero); equal to the stride-2 convolution. Used for its input
    gradient, which is then an ordinary stride-1 correlation instead of XLA's zero-inserted one.
    """
    batch, height, width, channels = features.shape
    kernel_size, outputs = kernel.shape[0], kernel.shape[-1]
    (top, bottom), (left, right) = (
        _same_padding(height, kernel_size, 2),
        _same_padding(width, kernel_size, 2),
    )
    bottom += (height + top + bottom) % 2
    right += (width + left + right) % 2
    padded = jnp.pad(features, ((0, 0), (top, bottom), (left, right), (0, 0)))
    rows, cols = padded.shape[1] // 2, padded.shape[2] // 2
    blocks = padded.reshape(batch, rows, 2, cols, 2, channels).transpose(0, 1, 3, 2, 4, 5)
    blocks = blocks.reshape(batch, rows, cols, 4 * channels)
    taps = (kernel_size + 1) // 2
    extra = 2 * taps - kernel_size
    block_kernel = jnp.pad(kernel, ((0, extra), (0, extra), (0, 0), (0, 0)))
    block_kernel = block_kernel.reshape(taps, 2, taps, 2, channels, outputs).transpose(
        0, 2, 1, 3, 4, 5
    )
    block_kernel = block_kernel.reshape(taps, taps, 4 * channels, outputs)
    return lax.conv_general_dilated(
        blocks, block_kernel, (1, 1), "VALID", dimension_numbers=("NHWC", "HWIO", "NHWC")
    )


def _strided_conv(features: jax.Array, kernel: jax.Array) -> jax.Array:
    return lax.conv_general_dilated(
        features, kernel, (2, 2), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")
    )


SPACE_TO_DEPTH_MAX_CHANNELS = 4
"""`stride2_conv`'s forward pass is the space-to-depth form up to this many input channels (the
networks' first layers, image + map) and XLA's strided convolution above it (measured on a 2-core
CPU, docs/results_log.md: the first layers with 3-4 channels at 120x160, 1.2-1.5x faster; 16
and 32 channels, 2x slower)."""


def _stride2_primal(features: jax.Array, kernel: jax.Array) -> jax.Array:
    if features.shape[-1] <= SPACE_TO_DEPTH_MAX_CHANNELS:
        return _space_to_depth_conv(features, kernel)
    return _strided_conv(features, kernel)


@jax.custom_vjp
def stride2_conv(features: jax.Array, kernel: jax.Array) -> jax.Array:
    """A 'SAME' stride-2 convolution whose input gradient goes through `_space_to_depth_conv`.

    The kernel gradient is XLA's own; the input gradient, which XLA:CPU computes by correlating a
    zero-inserted output gradient, is the space-to-depth form's: 2.7x faster on the encoder's
    first three layers at batch 128 (docs/results_log.md). The forward pass is XLA's strided
    convolution, or the space-to-depth form for inputs of at most `SPACE_TO_DEPTH_MAX_CHANNELS`
    channels, where XLA:CPU's convolution is slowest. Same numbers either way (to float32
    rounding).
    """
    return _stride2_primal(features, kernel)


def _stride2_forward(features, kernel):
    return _stride2_primal(features, kernel), (features, kernel)


def _stride2_backward(residuals, gradient):
    features, kernel = residuals
    _, features_vjp = jax.vjp(lambda x: _space_to_depth_conv(x, kernel), features)
    _, kernel_vjp = jax.vjp(lambda k: _strided_conv(features, k), kernel)
    return features_vjp(gradient)[0], kernel_vjp(gradient)[0]


stride2_conv.defvjp(_stride2_forward, _stride2_backward)


def conv(features: jax.Array, kernel: jax.Array, stride: int = 1) -> jax.Array:
    """An ordinary 'SAME' convolution, NHWC x HWIO; stride 2 with the CPU forms (`cpu_forms`)
    through `stride2_conv`."""
    if stride == 2 and cpu_forms():
        return stride2_conv(features, kernel)
    return lax.conv_general_dilated(
        features, kernel, (stride, stride), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")
    )


class Conv(nnx.Module):
    """A 2-D convolution, 'SAME' padding, optionally stacked over observers.

    With `num_observers=None` it is an ordinary convolution. With an integer it holds one kernel per
    observer (`ObserverParam`, shape (N, k, k, C, O)) and `__call__(x, observer)` convolves each
    example with its observer's kernel: the cost per example is independent of N (a gather of B
    kernels, then `per_example_conv`). A scalar `observer` convolves the whole batch with that
    observer's kernel (an ordinary convolution).
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        kernel_size: int,
        *,
        stride: int = 1,
        num_observers: int | None = None,
        kernel_init=he_normal,
        rngs: nnx.Rngs,
    ):
        """`kernel_init(batch_axis)` returns the initialiser (`he_normal`, `xavier_uniform`, ...);
        stacked kernels are drawn in one call with the observer axis as a batch axis, so each
        observer's kernel has the same distribution as an unstacked one."""
        self.kernel_size = kernel_size
        self.stride = stride
        self.num_observers = num_observers
        shape = (kernel_size, kernel_size, in_features, out_features)
        if num_observers is None:
            self.kernel = nnx.Param(kernel_init()(rngs.params(), shape, jnp.float32))
            self.bias = nnx.Param(jnp.zeros((out_features,), jnp.float32))
        else:
            kernels = kernel_init((0,))(rngs.params(), (num_observers,) + shape, jnp.float32)
            self.kernel = ObserverParam(kernels)
            self.bias = ObserverParam(jnp.zeros((num_observers, out_features), jnp.float32))

    def __call__(self, features: jax.Array, observer: jax.Array | None = None) -> jax.Array:
        """Computes in `features`' dtype: float32 parameters are cast to it (the compute-dtype
        option, `COMPUTE_DTYPES`); the gradients reach them in float32."""
        kernel, bias = self.kernel.value, self.bias.value
        if self.num_observers is None:
            return add_bias(
                conv(features, kernel.astype(features.dtype), self.stride),
                bias.astype(features.dtype),
            )
        if observer is None:
            raise ValueError("A per-observer Conv needs the observer index of every example.")
        if jnp.ndim(observer) == 0:
            # One observer for the whole batch: an ordinary convolution with their kernel.
            return conv(features, kernel[observer].astype(features.dtype), self.stride) + bias[
                observer
            ].astype(features.dtype)
        return per_example_conv(
            features,
            kernel[observer].astype(features.dtype),
            bias[observer].astype(features.dtype),
            self.stride,
        )


def block_mean(features: jax.Array, factor: int) -> jax.Array:
    """(N, H, W, C) -> (N, H // factor, W // factor, C): the mean of each factor x factor block
    (the last H % factor rows and W % factor columns are dropped): the encoder's
    `input_downsample`."""
    if factor == 1:
        return features
    n, height, width, channels = features.shape
    h, w = height // factor, width // factor
    if h == 0 or w == 0:
        raise ValueError(
            f"input_downsample={factor} leaves nothing of {height}x{width} inputs: lower it."
        )
    blocks = features[:, : h * factor, : w * factor].reshape(n, h, factor, w, factor, channels)
    return jnp.mean(blocks, axis=(2, 4))


def _channel_sums(values: jax.Array) -> jax.Array:
    """(..., C) -> (C,) float32 sums over every other axis, as one matrix-vector product.

    XLA:CPU rewrites a large reduction into reduce-windows of 32 (for its accuracy) that run at
    about 1 ns per element; a product with a vector of ones is its own fast dot (BatchNorm's
    statistics at the encoder's first layer, 128 x 60 x 80 x 16: 11 ms instead of 24 ms,
    docs/results_log.md).
    """
    flat = values.reshape(-1, values.shape[-1])
    ones = jnp.ones((flat.shape[0],), flat.dtype)
    return jnp.dot(ones, flat, precision="highest", preferred_element_type=jnp.float32)


def add_bias(features: jax.Array, bias: jax.Array) -> jax.Array:
    """features (..., C) + bias (C,); with the CPU forms (`cpu_forms`) through
    `add_bias_by_products`, otherwise the plain sum."""
    if cpu_forms():
        return add_bias_by_products(features, bias)
    return features + bias


@jax.custom_vjp
def add_bias_by_products(features: jax.Array, bias: jax.Array) -> jax.Array:
    """features (..., C) + bias (C,), whose bias gradient is a `_channel_sums` product (XLA's own
    is a reduce-window sum over the batch and positions)."""
    return features + bias


def _add_bias_forward(features, bias):
    return features + bias, bias


def _add_bias_backward(bias, gradient):
    return gradient, _channel_sums(gradient).astype(bias.dtype)


add_bias_by_products.defvjp(_add_bias_forward, _add_bias_backward)


@jax.custom_vjp
def batch_norm_statistics_and_output(
    features: jax.Array, scale: jax.Array, bias: jax.Array, epsilon: float
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """BatchNorm in training mode over every axis but the last: (output, mean, variance).

    The batch statistics as Flax's `nnx.BatchNorm` computes them (float32, variance E[x^2] -
    E[x]^2 clipped at 0), the output (x - mean) * scale / sqrt(variance + epsilon) + bias in the
    features' dtype; every reduction, forward and backward, is a `_channel_sums` product. The mean
    and variance are for the running statistics: no gradient flows through them.
    """
    return _batch_norm_forward(features, scale, bias, epsilon)[0]


def _batch_norm_forward(features, scale, bias, epsilon):
    count = features.size // features.shape[-1]
    wide = features.astype(jnp.float32)
    mean = _channel_sums(wide) / count
    variance = jnp.maximum(_channel_sums(jnp.square(wide)) / count - jnp.square(mean), 0.0)
    inverse = lax.rsqrt(variance + epsilon)
    gain = scale.astype(jnp.float32) * inverse
    output = (wide - mean) * gain + bias.astype(jnp.float32)
    residuals = (features, mean, inverse, scale, bias)
    return (output.astype(features.dtype), mean, variance), residuals


def _batch_norm_backward(residuals, cotangents):
    features, mean, inverse, scale, bias = residuals
    gradient = cotangents[0].astype(jnp.float32)  # the statistics' cotangents are ignored
    count = features.size // features.shape[-1]
    normalised = (features.astype(jnp.float32) - mean) * inverse
    bias_gradient = _channel_sums(gradient)
    scale_gradient = _channel_sums(gradient * normalised)
    features_gradient = (scale.astype(jnp.float32) * inverse) * (
        gradient - bias_gradient / count - normalised * (scale_gradient / count)
    )
    return (
        features_gradient.astype(features.dtype),
        scale_gradient.astype(scale.dtype),
        bias_gradient.astype(bias.dtype),
        None,
    )


batch_norm_statistics_and_output.defvjp(_batch_norm_forward, _batch_norm_backward)


class BatchNorm(nnx.BatchNorm):
    """`nnx.BatchNorm` (same variables, same numbers to float32 rounding) whose training-mode
    statistics and gradients go through `batch_norm_statistics_and_output`: on a 2-core CPU the
    encoder's train step spent about 80 ms of 350 in the reduce-windows XLA made of
    `nnx.BatchNorm`'s reductions (docs/results_log.md). Eval mode, and training mode without the
    CPU forms (`cpu_forms`), are `nnx.BatchNorm`'s own.
    Features on the last axis; no masks and no named axes (plain `jit` with sharded batches
    gets global statistics from XLA, as with `nnx.BatchNorm`)."""

    def __call__(self, x, use_running_average: bool | None = None, *, mask=None):
        running = self.use_running_average if use_running_average is None else use_running_average
        # Eval mode, masks, other axes and an unset mode (Flax's own error) are Flax's.
        plain = not cpu_forms()
        if plain or running is not False or mask is not None or self.axis not in (-1, x.ndim - 1):
            return super().__call__(x, use_running_average, mask=mask)
        if self.axis_name is not None or not self.use_fast_variance:
            raise NotImplementedError("layers.BatchNorm: use nnx.BatchNorm for these options.")
        output, mean, variance = batch_norm_statistics_and_output(
            x.astype(self.dtype) if self.dtype is not None else x,
            self.scale[...],
            self.bias[...],
            self.epsilon,
        )
        mean, variance = lax.stop_gradient(mean), lax.stop_gradient(variance)
        self.mean[...] = self.momentum * self.mean[...] + (1 - self.momentum) * mean
        self.var[...] = self.momentum * self.var[...] + (1 - self.momentum) * variance
        return output


def max_pool(features: jax.Array, window: int = 3, stride: int = 2) -> jax.Array:
    """Max pooling with 'SAME' padding (output ceil(size / stride)), as in DeepNet/Caffe."""
    return nnx.max_pool(features, (window, window), (stride, stride), padding="SAME")


def mixed_input_init(saliency_init=xavier_uniform, rgb_init=he_normal):
    """An initialiser factory: He for the RGB input channels, another (Xavier) for the saliency one.

    Xu et al. (Sec. 5.1) initialise the parameters of the USM input channel with 'xavier' while the
    RGB channels come from a pretrained network; here the RGB channels get He initialisation
    (nothing pretrained is downloadable) and the last input channel Xavier.
    """

    def factory(batch_axis: tuple[int, ...] = ()):
        def init(key, shape, dtype=jnp.float32):
            rgb_key, saliency_key = jax.random.split(key)
            kernel = rgb_init(batch_axis)(rgb_key, shape, dtype)
            saliency_shape = shape[:-2] + (1, shape[-1])
            saliency = saliency_init(batch_axis)(saliency_key, saliency_shape, dtype)
            return kernel.at[..., -1:, :].set(saliency)

        return init

    return factory


def count_parameters(module: nnx.Module) -> int:
    """Number of scalar parameters (nnx.Param, including stacked ObserverParam) of a module."""
    state = nnx.state(module, nnx.Param)
    return int(sum(np.prod(leaf.shape) for leaf in jax.tree.leaves(state)))
