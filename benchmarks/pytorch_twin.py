"""A PyTorch twin of our PSM network and user-embedding encoder: the yardstick for our speed.

What a user who wrote Strohm et al.'s models in PyTorch would write, kept layer for layer equal to
ours (`psm_jax.models.personalised`, `psm_jax.models.embedding`) so the two compute the same
numbers (checked by `benchmarks/bench_vs_pytorch.py`, which loads our weights into the twin):

- convolutions in NCHW with `torch.channels_last` memory format (oneDNN's fast layout);
- TensorFlow/Flax 'SAME' padding, which is asymmetric for our stride-2 layers on even sizes
  (`F.pad` before an unpadded convolution; a symmetric `padding=1` would sample other pixels);
- the embedding-generated layer as one grouped convolution over the batch (`groups=B`), the usual
  PyTorch way to convolve each example with its own kernel;
- the cosine triplet loss with semi-hard mining of `psm_jax.losses.mined_triplet_losses`.

torch is an optional dependency (`pip install -e '.[bench]'`); nothing in psm_jax imports this.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


def _same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    output = -(-size // stride)
    total = max((output - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def same_pad(x: torch.Tensor, kernel: int, stride: int) -> torch.Tensor:
    """Pads (N, C, H, W) as 'SAME' would before an unpadded convolution."""
    top, bottom = _same_padding(x.shape[2], kernel, stride)
    left, right = _same_padding(x.shape[3], kernel, stride)
    if top == bottom == left == right == 0:
        return x
    return F.pad(x, (left, right, top, bottom))


class SameConv(nn.Conv2d):
    """`nn.Conv2d` with 'SAME' padding (symmetric where it can be, as PyTorch users write it)."""

    def __init__(self, in_channels, out_channels, kernel, stride=1):
        self.same = kernel // 2 if stride == 1 and kernel % 2 == 1 else None
        super().__init__(in_channels, out_channels, kernel, stride=stride, padding=self.same or 0)

    def forward(self, x):
        if self.same is None:
            x = same_pad(x, self.kernel_size[0], self.stride[0])
        return super().forward(x)


class TwinPSMNetwork(nn.Module):
    """Strohm et al.'s saliency network: trunk, hypernetwork-generated layer, decoder."""

    def __init__(self, config):
        super().__init__()
        self.config = config
        widths = (config.in_channels,) + tuple(config.trunk_widths)
        self.trunk = nn.ModuleList(
            SameConv(widths[i], widths[i + 1], 3, stride=2) for i in range(len(widths) - 1)
        )
        k, c, o = config.dynamic_kernel_size, widths[-1], config.dynamic_width
        self.kernel_shape = (k, k, c, o)
        self.hidden = nn.Linear(config.embedding_size, config.hypernetwork_hidden)
        self.kernel_generator = nn.Linear(config.hypernetwork_hidden, k * k * c * o + o)
        self.projection_1 = SameConv(o, 1, 1)
        self.conv_1 = SameConv(o, config.head_width, 3)
        self.projection_2 = SameConv(config.head_width, 1, 1)
        self.conv_out = SameConv(config.head_width, 1, 3)

    def forward(self, inputs: torch.Tensor, embedding: torch.Tensor):
        """inputs (B, 4, H, W) channels_last, embedding (B, d) -> three (B, h, w) maps."""
        x = inputs
        for conv in self.trunk:
            x = F.relu(conv(x))
        batch, channels, height, width = x.shape
        k, _, c, o = self.kernel_shape
        generated = self.kernel_generator(F.relu(self.hidden(embedding)))
        # (B, k, k, C, O) HWIO -> (B * O, C, k, k) OIHW, one group per example.
        kernels = generated[:, : k * k * c * o].reshape(batch, k, k, c, o)
        kernels = kernels.permute(0, 4, 3, 1, 2).reshape(batch * o, c, k, k)
        grouped = x.reshape(1, batch * channels, height, width)
        x = F.conv2d(grouped, kernels, padding=k // 2, groups=batch)
        x = x.reshape(batch, o, height, width) + generated[:, k * k * c * o :, None, None]
        x = F.relu(x)
        first = torch.tanh(self.projection_1(x))
        hidden = F.relu(self.conv_1(x))
        second = torch.tanh(self.projection_2(hidden))
        final = torch.tanh(self.conv_out(hidden))
        return first[:, 0], second[:, 0], final[:, 0]


class TwinEncoder(nn.Module):
    """The user-embedding encoder: [conv stride 2, BatchNorm, ReLU] x 4, pool, dropout, linear."""

    def __init__(self, config):
        super().__init__()
        widths = (4,) + tuple(config.widths)
        self.convs = nn.ModuleList(
            SameConv(widths[i], widths[i + 1], config.kernel_size, stride=2)
            for i in range(len(widths) - 1)
        )
        self.norms = nn.ModuleList(
            nn.BatchNorm2d(w, eps=1e-5, momentum=1 - config.batch_norm_momentum) for w in widths[1:]
        )
        self.dropout = nn.Dropout(config.dropout_rate)
        self.linear = nn.Linear(widths[-1], config.embedding_size)

    def forward(self, inputs: torch.Tensor, m: int) -> torch.Tensor:
        """inputs (B * m, 4, H, W) -> (B, d) unit embeddings."""
        x = inputs
        for conv, norm in zip(self.convs, self.norms, strict=True):
            x = F.relu(norm(conv(x)))
        features = self.linear(self.dropout(x.mean(dim=(2, 3))))
        mean = features.reshape(-1, m, features.shape[-1]).mean(dim=1)
        return F.normalize(mean, dim=-1, eps=1e-12)


def triplet_loss(
    embeddings: torch.Tensor, labels: torch.Tensor, margin: float = 0.05
) -> torch.Tensor:
    """Cosine triplet loss, semi-hard mining (hardest negative when no semi-hard one exists)."""
    unit = F.normalize(embeddings, dim=-1, eps=1e-12)
    similarity = unit @ unit.T
    batch = len(labels)
    same = labels[:, None] == labels[None, :]
    eye = torch.eye(batch, dtype=torch.bool)
    pair_mask = same & ~eye
    negative_mask = ~same
    positive = similarity[:, :, None]
    negative = similarity[:, None, :]
    lowest = torch.finfo(similarity.dtype).min
    hardest = torch.where(negative_mask[:, None, :], negative, lowest).expand(batch, batch, batch)
    semi_hard = negative_mask[:, None, :] & (negative < positive) & (negative > positive - margin)
    candidates = torch.where(
        semi_hard.any(-1, keepdim=True), torch.where(semi_hard, negative, lowest), hardest
    )
    chosen = candidates.max(-1).values
    losses = torch.clamp(chosen - similarity + margin, min=0.0)
    pair_mask = pair_mask & negative_mask.any(-1)[:, None]
    return torch.where(pair_mask, losses, 0.0).sum() / pair_mask.sum().clamp(min=1)


def deep_supervised_mse(outputs, target: torch.Tensor) -> torch.Tensor:
    """Sum over outputs of the per-example mean squared error, averaged over the batch."""
    return sum(((output - target) ** 2).mean(dim=(1, 2)) for output in outputs).mean()


# --------------------------------------------------------------------------- weights from ours


def _conv_weights(twin_conv: nn.Conv2d, conv) -> None:
    twin_conv.weight.copy_(torch.from_numpy(np.asarray(conv.kernel.value).transpose(3, 2, 0, 1)))
    twin_conv.bias.copy_(torch.from_numpy(np.asarray(conv.bias.value)))


def _linear_weights(twin_linear: nn.Linear, linear) -> None:
    twin_linear.weight.copy_(torch.from_numpy(np.asarray(linear.kernel.value).T.copy()))
    twin_linear.bias.copy_(torch.from_numpy(np.asarray(linear.bias.value)))


@torch.no_grad()
def psm_network_from(model) -> TwinPSMNetwork:
    """A twin holding the weights of our `PersonalisedSaliencyNetwork`."""
    twin = TwinPSMNetwork(model.config)
    for twin_conv, conv in zip(twin.trunk, model.trunk.convs, strict=True):
        _conv_weights(twin_conv, conv)
    _linear_weights(twin.hidden, model.hidden)
    _linear_weights(twin.kernel_generator, model.kernel_generator)
    for name in ("projection_1", "conv_1", "projection_2", "conv_out"):
        _conv_weights(getattr(twin, name), getattr(model.decoder, name))
    return twin.to(memory_format=torch.channels_last)


@torch.no_grad()
def encoder_from(model) -> TwinEncoder:
    """A twin holding the weights and BatchNorm statistics of our `UserEmbeddingEncoder`."""
    twin = TwinEncoder(model.config)
    for twin_conv, conv in zip(twin.convs, model.convs, strict=True):
        _conv_weights(twin_conv, conv)
    for twin_norm, norm in zip(twin.norms, model.norms, strict=True):
        twin_norm.weight.copy_(torch.from_numpy(np.asarray(norm.scale.value)))
        twin_norm.bias.copy_(torch.from_numpy(np.asarray(norm.bias.value)))
        twin_norm.running_mean.copy_(torch.from_numpy(np.asarray(norm.mean.value)))
        twin_norm.running_var.copy_(torch.from_numpy(np.asarray(norm.var.value)))
    _linear_weights(twin.linear, model.linear)
    return twin.to(memory_format=torch.channels_last)


def to_torch(nhwc: np.ndarray) -> torch.Tensor:
    """(N, H, W, C) array -> (N, C, H, W) tensor in channels_last memory (no copy of layout)."""
    return torch.from_numpy(np.ascontiguousarray(nhwc)).permute(0, 3, 1, 2)
