"""Strohm et al. 2024's personalised saliency network (Fig. 3, Sec. 3.2) and MultiCNN baseline.

PSM(I, U) = USM(I) + discrepancy(I, U). The network sees the image with the USM as a fourth channel
(120x160) and a conditioning vector, the user embedding e_U (`psm_jax.models.embedding`):

1. image-USM features: 3x3 convolutions with stride 2 and ReLU, down to 15x20 (`trunk_widths`);
2. in parallel, a hypernetwork (an MLP) predicts a 3x3 kernel and bias from the embedding; they are
   convolved over the features of that example (`layers.per_example_conv`: batched, no Python loop
   over examples), then ReLU;
3. final convolutions give the discrepancy at 15x20 through tanh, in [-1, 1]. A projection (1x1
   convolution + tanh) before each of the last two convolutions gives an intermediate discrepancy
   map, so the network has three outputs for deep supervision (Eq. 3), coarse to final.

Choices where the paper is silent (configurable): trunk widths (16, 32, 64), dynamic layer 64 -> 32
channels, a final 3x3 convolution of 32 channels and then the 3x3 output convolution; no
normalisation layers (the paper names none for this network, and without them the per-observer
baseline below has no per-observer statistics to keep; ours, an option: instance normalisation of
the embedding-generated layer, `dynamic_normalisation`); He-normal initialisation for ReLU layers,
Xavier for the tanh projections. The hypernetwork predicts kernel = base + MLP(e): its last layer's
bias is the He-initialised base kernel and its weights start small (std 0.1 / sqrt(hidden)), so an
untrained network behaves like a well-initialised static one and the embedding's influence is
learned.

`PerObserverSaliencyNetworks` is the MultiCNN baseline of Strohm et al.: the same architecture with
no sharing and no embedding, one full network per observer, every layer's parameters stacked over
observers (the dynamic layer becomes each observer's own static 3x3 convolution).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
from flax import nnx

from psm_jax.models import layers


@dataclasses.dataclass(frozen=True)
class SaliencyNetworkConfig:
    """Architecture of the personalised saliency network (and of its per-observer baseline)."""

    in_channels: int = 4
    trunk_widths: tuple[int, ...] = (16, 32, 64)
    dynamic_width: int = 32
    dynamic_kernel_size: int = 3
    head_width: int = 32
    embedding_size: int = 32
    hypernetwork_hidden: int = 128
    # The activation after the embedding-generated layer: "relu" (as every other layer; the
    # papers') or "leaky_relu" (ours, slope 0.1: a unit that went negative for every input still
    # passes a gradient, against the dying layer measured in docs/results_log.md).
    dynamic_activation: str = "relu"
    # Normalisation of the embedding-generated layer before its activation: "none" (the papers')
    # or "instance" (ours): each example's channels standardised over their positions, then a
    # learned per-channel scale and shift, so about half of every channel's units are positive
    # for any example and the layer cannot die (docs/results_log.md measured it dead on OSIE).
    # The PSM network only; the per-observer networks refuse it.
    dynamic_normalisation: str = "none"
    # How the embedding-generated layer is computed (`layers.FORMULATIONS`; the same numbers
    # either way): "auto" picks the fastest measured on the backend (docs/results_log.md).
    dynamic_formulation: str = "auto"
    # Two more input channels holding each pixel's row and column (CoordConv, Liu et al. 2018;
    # ours, off by default): a fully convolutional network cannot otherwise tell the centre from
    # the border, so it cannot express a person's spatial bias (where on the screen they look).
    coordinate_channels: bool = False
    # An embedding-conditioned bias map (ours, off by default): the hypernetwork's hidden layer
    # also predicts a coarse (rows, columns) map, resized bilinearly to the output grid and added
    # to the final output before its tanh. A direct path for a person's spatial bias (where they
    # look whatever the image), the signal of the observer-mean baselines; (0, 0) = none. Its
    # weights start at zero, so an untrained network is the one without it.
    bias_map_grid: tuple[int, int] = (0, 0)
    # The dtype the layers compute in (`layers.COMPUTE_DTYPES`): "float32" (default) or
    # "bfloat16" (ours, for accelerators with bf16 units): parameters stay float32 and are cast
    # per call, the outputs are float32; a checkpoint serves either. Accuracy and speed measured
    # in docs/results_log.md (on XLA:CPU bf16 is slower).
    compute_dtype: str = "float32"

    def __post_init__(self):
        layers.check_compute_dtype(self.compute_dtype)
        if self.dynamic_activation not in ("relu", "leaky_relu"):
            raise ValueError(
                "dynamic_activation must be 'relu' or 'leaky_relu', got "
                f"{self.dynamic_activation!r}"
            )
        if self.dynamic_normalisation not in ("none", "instance"):
            raise ValueError(
                "dynamic_normalisation must be 'none' or 'instance', got "
                f"{self.dynamic_normalisation!r}"
            )
        if len(self.bias_map_grid) != 2 or min(self.bias_map_grid) < 0:
            raise ValueError(
                f"bias_map_grid must be (rows, columns) >= 0, got {self.bias_map_grid}"
            )
        if self.dynamic_formulation not in layers.FORMULATIONS:
            raise ValueError(
                f"dynamic_formulation must be one of {layers.FORMULATIONS}, got "
                f"{self.dynamic_formulation!r}"
            )


def _activation(name: str, x: jax.Array) -> jax.Array:
    return jax.nn.leaky_relu(x, 0.1) if name == "leaky_relu" else jax.nn.relu(x)


class _Decoder(nnx.Module):
    """The last layers: two projections (intermediate outputs) and two convolutions."""

    def __init__(self, config: SaliencyNetworkConfig, num_observers: int | None, rngs: nnx.Rngs):
        width = config.dynamic_width

        def conv(i, o, k, init=layers.he_normal):
            return layers.Conv(i, o, k, num_observers=num_observers, kernel_init=init, rngs=rngs)

        self.projection_1 = conv(width, 1, 1, layers.xavier_uniform)
        self.conv_1 = conv(width, config.head_width, 3)
        self.projection_2 = conv(config.head_width, 1, 1, layers.xavier_uniform)
        self.conv_out = conv(config.head_width, 1, 3, layers.xavier_uniform)

    def __call__(
        self, features, observer=None, activations: dict | None = None, final_bias=None
    ) -> tuple[jax.Array, jax.Array, jax.Array]:
        """`final_bias`: (B, h, w) added to the final output before its tanh, or None."""
        first = jnp.tanh(self.projection_1(features, observer))
        hidden = jax.nn.relu(self.conv_1(features, observer))
        if activations is not None:
            activations["head"] = hidden
        second = jnp.tanh(self.projection_2(hidden, observer))
        final = self.conv_out(hidden, observer)[..., 0]
        if final_bias is not None:
            final = final + final_bias.astype(final.dtype)
        outputs = first[..., 0], second[..., 0], jnp.tanh(final)
        return tuple(output.astype(jnp.float32) for output in outputs)


def instance_normalise(
    features: jax.Array, scale: jax.Array, shift: jax.Array, epsilon: float = 1e-5
) -> jax.Array:
    """(B, h, w, C): each example's channels standardised over positions, then `scale` and
    `shift` (C,) applied."""
    mean = jnp.mean(features, axis=(1, 2), keepdims=True)
    variance = jnp.mean(jnp.square(features - mean), axis=(1, 2), keepdims=True)
    return (features - mean) * jax.lax.rsqrt(variance + epsilon) * scale + shift


def coordinates(inputs: jax.Array) -> jax.Array:
    """(B, H, W, C) -> (B, H, W, C + 2): the pixel's row and column, each centred in [-0.5, 0.5]."""
    batch, height, width, _ = inputs.shape
    rows = (jnp.arange(height, dtype=inputs.dtype) + 0.5) / height - 0.5
    cols = (jnp.arange(width, dtype=inputs.dtype) + 0.5) / width - 0.5
    grid = jnp.stack(jnp.meshgrid(rows, cols, indexing="ij"), axis=-1)
    return jnp.concatenate([inputs, jnp.broadcast_to(grid, (batch, height, width, 2))], axis=-1)


class _Trunk(nnx.Module):
    """Image-USM features: 3x3 stride-2 convolutions with ReLU, 120x160 -> 15x20."""

    def __init__(self, config: SaliencyNetworkConfig, num_observers: int | None, rngs: nnx.Rngs):
        self.coordinate_channels = config.coordinate_channels
        self.convs = nnx.List()
        in_features = config.in_channels + (2 if config.coordinate_channels else 0)
        for width in config.trunk_widths:
            self.convs.append(
                layers.Conv(in_features, width, 3, stride=2, num_observers=num_observers, rngs=rngs)
            )
            in_features = width

    def __call__(self, features, observer=None, activations: dict | None = None):
        if self.coordinate_channels:
            features = coordinates(features)
        for index, conv in enumerate(self.convs):
            features = jax.nn.relu(conv(features, observer))
            if activations is not None:
                activations[f"trunk_{index}"] = features
        return features


class PersonalisedSaliencyNetwork(nnx.Module):
    """N(USM(I), I, e_U) -> three discrepancy maps at 15x20 in [-1, 1], coarse to final.

    Call with `inputs` (B, 120, 160, 4) from `layers.model_input(image, usm)` and `embedding`
    (B, embedding_size). The cost of a batch is the batch size times the cost of one example: the
    dynamic kernels are computed for the whole batch in one matmul and applied by one batched
    per-example convolution.
    """

    def __init__(self, config: SaliencyNetworkConfig = SaliencyNetworkConfig(), *, rngs: nnx.Rngs):
        self.config = config
        dtype = jnp.dtype(config.compute_dtype)
        self.trunk = _Trunk(config, None, rngs)
        in_features = config.trunk_widths[-1]
        k = config.dynamic_kernel_size
        self.kernel_shape = (k, k, in_features, config.dynamic_width)
        kernel_size = k * k * in_features * config.dynamic_width
        self.hidden = nnx.Linear(
            config.embedding_size, config.hypernetwork_hidden, dtype=dtype, rngs=rngs
        )
        base_kernel = layers.he_normal()(rngs.params(), self.kernel_shape, jnp.float32).reshape(-1)
        self.kernel_generator = nnx.Linear(
            config.hypernetwork_hidden,
            kernel_size + config.dynamic_width,
            kernel_init=jax.nn.initializers.normal(0.1 / config.hypernetwork_hidden**0.5),
            dtype=dtype,
            rngs=rngs,
        )
        self.kernel_generator.bias.value = jnp.concatenate(
            [base_kernel, jnp.zeros((config.dynamic_width,), jnp.float32)]
        )
        if config.dynamic_normalisation == "instance":
            self.dynamic_scale = nnx.Param(jnp.ones((config.dynamic_width,), jnp.float32))
            self.dynamic_shift = nnx.Param(jnp.zeros((config.dynamic_width,), jnp.float32))
        self.decoder = _Decoder(config, None, rngs)
        rows, columns = config.bias_map_grid
        self.bias_map_generator = (
            nnx.Linear(
                config.hypernetwork_hidden,
                rows * columns,
                kernel_init=jax.nn.initializers.zeros,
                dtype=dtype,
                rngs=rngs,
            )
            if rows * columns
            else None
        )

    def dynamic_kernels(self, embedding: jax.Array) -> tuple[jax.Array, jax.Array]:
        """The hypernetwork: (B, d) embeddings -> (B, k, k, C, O) kernels and (B, O) biases."""
        generated = self.kernel_generator(jax.nn.relu(self.hidden(embedding)))
        kernel_size = generated.shape[-1] - self.config.dynamic_width
        kernels = generated[:, :kernel_size].reshape((-1,) + self.kernel_shape)
        return kernels, generated[:, kernel_size:]

    def bias_map(self, embedding: jax.Array, size: tuple[int, int]) -> jax.Array | None:
        """The embedding-conditioned bias map at `size` (B, h, w), or None without one."""
        if self.bias_map_generator is None:
            return None
        coarse = self.bias_map_generator(jax.nn.relu(self.hidden(embedding)))
        coarse = coarse.reshape((-1,) + tuple(self.config.bias_map_grid))
        return jax.image.resize(coarse, coarse.shape[:1] + tuple(size), "bilinear")

    def __call__(self, inputs: jax.Array, embedding: jax.Array, activations: dict | None = None):
        """The three outputs; `activations`, if given, receives every ReLU layer's output by
        name (trunk_0.., dynamic, head), for diagnostics (`psm_jax.registry.relu_activity`)."""
        dtype = jnp.dtype(self.config.compute_dtype)
        features = self.trunk(inputs.astype(dtype), activations=activations)
        kernels, biases = self.dynamic_kernels(embedding.astype(dtype))
        features = layers.per_example_conv(
            features, kernels, biases, formulation=self.config.dynamic_formulation
        )
        if self.config.dynamic_normalisation == "instance":
            # Statistics in float32 whatever the compute dtype.
            features = instance_normalise(
                features.astype(jnp.float32), self.dynamic_scale, self.dynamic_shift
            ).astype(dtype)
        features = _activation(self.config.dynamic_activation, features)
        if activations is not None:
            activations["dynamic"] = features
        final_bias = self.bias_map(embedding, features.shape[1:3])
        return self.decoder(features, activations=activations, final_bias=final_bias)


class PerObserverSaliencyNetworks(nnx.Module):
    """MultiCNN (Strohm et al.'s baseline): one full network per observer, stacked, no sharing.

    Call with `inputs` (B, 120, 160, 4) and `observer` (B,) int indices in [0, num_observers);
    each example runs only its own observer's network, so the cost per example does not grow with
    the number of observers.
    """

    def __init__(
        self,
        num_observers: int,
        config: SaliencyNetworkConfig = SaliencyNetworkConfig(),
        *,
        rngs: nnx.Rngs,
    ):
        if config.dynamic_normalisation != "none":
            raise ValueError(
                "dynamic_normalisation is an option of the PSM network only; the per-observer "
                f"networks have no embedding-generated layer (got {config.dynamic_normalisation!r})"
            )
        self.config = config
        self.num_observers = num_observers
        self.trunk = _Trunk(config, num_observers, rngs)
        self.observer_conv = layers.Conv(
            config.trunk_widths[-1],
            config.dynamic_width,
            config.dynamic_kernel_size,
            num_observers=num_observers,
            rngs=rngs,
        )
        self.decoder = _Decoder(config, num_observers, rngs)

    def __call__(self, inputs: jax.Array, observer: jax.Array, activations: dict | None = None):
        """As `PersonalisedSaliencyNetwork.__call__`, each example with its observer's layers."""
        inputs = inputs.astype(jnp.dtype(self.config.compute_dtype))
        features = self.trunk(inputs, observer, activations=activations)
        features = jax.nn.relu(self.observer_conv(features, observer))
        if activations is not None:
            activations["dynamic"] = features
        return self.decoder(features, observer, activations=activations)
