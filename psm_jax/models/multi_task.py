"""The multi-task CNN of Xu et al. 2017 (Fig. 4, Sec. 4.2) and its MultiConvNets baseline.

Input: a 120x160 image with its USM as a fourth channel (or RGB only: the "RGB based" rows of
Xu's Table 2). Four convolutional layers (conv1-conv4) are shared by all observers; then each
observer n has its own head of three convolutional layers with ReLU (conv5-conv7), and a 1x1
convolution after each of conv5, conv6 and conv7 maps its features to a discrepancy map
S_l (l = 5, 6, 7): the three outputs of the intermediate supervision of Eq. 2.

Head parameters are stored stacked over observers (`layers.ObserverParam`, axis 0 = observer), and
each example runs only its own observer's head (`layers.Conv` with `num_observers`): the cost of one
example does not grow with the number of observers, and a train step can update only the heads of
the observers in its batch (`psm_jax.train.step`).

`share_trunk=False` gives Xu's MultiConvNets baseline (and "RGB based MultiConvNets" with
`in_channels=3`): the same seven layers, every one stacked per observer, nothing shared.

Faithful to the paper: 4 shared + 3 per-observer convolutions; ReLU after each of conv5-conv7; 1x1
side convolutions after conv5, conv6, conv7; 'xavier' initialisation of the USM input channel and
of the 1x1 convolutions. The paper builds on DeepNet (Pan et al. 2016) initialised from a network
trained on SALICON; nothing pretrained can be downloaded here, so the layers follow DeepNet's shape
(7x7 conv + 3x3/2 max-pool, 5x5 conv + 3x3/2 max-pool, then 3x3 and 5x5 convs) at narrower widths
(configurable), He-initialised, and reach 15x20 (stride 8), the discrepancy resolution. The side
outputs are linear (Caffe's Euclidean loss on a 1x1 convolution; the paper names no squashing).
"""

from __future__ import annotations

import dataclasses

import jax
from flax import nnx

from psm_jax.models import layers


@dataclasses.dataclass(frozen=True)
class MultiTaskConfig:
    """Architecture of the multi-task CNN (and of MultiConvNets with share_trunk=False)."""

    in_channels: int = 4
    trunk_widths: tuple[int, int, int, int] = (32, 64, 64, 64)
    trunk_kernels: tuple[int, int, int, int] = (7, 5, 3, 5)
    head_widths: tuple[int, int, int] = (64, 32, 16)
    head_kernels: tuple[int, int, int] = (5, 5, 5)
    share_trunk: bool = True


class MultiTaskCNN(nnx.Module):
    """Shared conv1-conv4, per-observer conv5-conv7, three discrepancy maps at 15x20.

    Call with `inputs` (B, 120, 160, in_channels) from `layers.model_input` and `observer` (B,)
    int indices in [0, num_observers). Returns (S5, S6, S7), each (B, 15, 20).
    """

    def __init__(
        self, num_observers: int, config: MultiTaskConfig = MultiTaskConfig(), *, rngs: nnx.Rngs
    ):
        self.config = config
        self.num_observers = num_observers
        trunk_observers = None if config.share_trunk else num_observers
        first_init = layers.mixed_input_init() if config.in_channels == 4 else layers.he_normal
        self.trunk = nnx.List()
        in_features = config.in_channels
        for i, (width, kernel) in enumerate(
            zip(config.trunk_widths, config.trunk_kernels, strict=True)
        ):
            self.trunk.append(
                layers.Conv(
                    in_features,
                    width,
                    kernel,
                    stride=2 if i == 0 else 1,
                    num_observers=trunk_observers,
                    kernel_init=first_init if i == 0 else layers.he_normal,
                    rngs=rngs,
                )
            )
            in_features = width
        self.head = nnx.List()
        self.side = nnx.List()
        for width, kernel in zip(config.head_widths, config.head_kernels, strict=True):
            self.head.append(
                layers.Conv(in_features, width, kernel, num_observers=num_observers, rngs=rngs)
            )
            self.side.append(
                layers.Conv(
                    width,
                    1,
                    1,
                    num_observers=num_observers,
                    kernel_init=layers.xavier_uniform,
                    rngs=rngs,
                )
            )
            in_features = width

    def features(self, inputs: jax.Array, observer: jax.Array | None = None) -> jax.Array:
        """conv1-conv4 (shared unless share_trunk=False): (B, 15, 20, trunk_widths[-1])."""
        features = inputs
        for i, conv in enumerate(self.trunk):
            features = jax.nn.relu(conv(features, observer))
            if i < 2:
                features = layers.max_pool(features)
        return features

    def __call__(self, inputs: jax.Array, observer: jax.Array):
        features = self.features(inputs, observer)
        outputs = []
        for conv, side in zip(self.head, self.side, strict=True):
            features = jax.nn.relu(conv(features, observer))
            outputs.append(side(features, observer)[..., 0])
        return tuple(outputs)
