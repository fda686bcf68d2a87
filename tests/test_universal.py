"""Universal models: the readout of a frozen backbone's features (its blur, centre bias, loss,
training on precomputed features) and the USMs a new image gets from it."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import TINY, tiny_config
from flax import nnx

from psm_jax import inference, registry
from psm_jax.models import pretrained, universal

READOUT = universal.UniversalConfig(
    backbone="efficientnet_lite0",
    input_size=(64, 96),
    readout_widths=(8,),
    centre_bias_grid=(3, 4),
)


def _features(config, batch=2, seed=0):
    """Random features of the shapes the backbone gives at the config's input size."""
    channels = config.feature_channels
    keys = jax.random.split(jax.random.key(seed), len(channels))
    height, width = config.input_size
    features = {}
    for key, (name, count) in zip(keys, channels.items(), strict=True):
        stride = 32 if name == "head" else int(name.removeprefix("stride"))
        shape = (batch, -(-height // stride), -(-width // stride), count)
        features[name] = jax.nn.relu(jax.random.normal(key, shape))
    return features


def test_the_readout_maps_features_to_logits_on_the_finest_grid_and_a_normalised_usm():
    model = universal.ReadoutSaliencyNetwork(READOUT, rngs=nnx.Rngs(0))
    model.eval()
    features = _features(READOUT)
    logits = model(features)
    assert logits.shape == (2, 8, 12)  # the stride-8 grid of 64x96
    usm = np.asarray(model.usm(features, (120, 160)))
    assert usm.shape == (2, 120, 160)
    np.testing.assert_allclose(usm.max(axis=(1, 2)), 1.0, atol=1e-6)
    np.testing.assert_allclose(usm.min(axis=(1, 2)), 0.0, atol=1e-6)
    # The learned centre bias starts at zero, and adds its upsampled map to every image's logits.
    assert np.all(np.asarray(model.centre_bias[...]) == 0)
    model.centre_bias[...] = jnp.ones((3, 4))
    np.testing.assert_allclose(model(features), logits + 1.0, atol=1e-5)


def test_projecting_each_stride_before_upsampling_equals_projecting_the_upsampled_stack():
    """The readout's first layer runs per stride at the stride's own resolution; by linearity
    that is the 1x1 convolution of the upsampled, concatenated features."""
    model = universal.ReadoutSaliencyNetwork(READOUT, rngs=nnx.Rngs(0))
    features = _features(READOUT)
    names = READOUT.feature_names

    def upsampled(array):
        return jax.image.resize(array, (2, 8, 12, array.shape[-1]), "bilinear")

    stacked = jnp.concatenate([upsampled(features[n]) for n in names], axis=-1)
    kernel = jnp.concatenate([p.kernel[...][0, 0] for p in model.project], axis=0)
    bias = sum(p.bias[...] for p in model.project)
    ours = sum(upsampled(p(features[n])) for p, n in zip(model.project, names, strict=True))
    np.testing.assert_allclose(ours, stacked @ kernel + bias, rtol=1e-4, atol=1e-4)


def test_the_readout_reads_only_its_strides_and_refuses_unknown_ones():
    coarse = dataclasses.replace(READOUT, feature_strides=(16, 32), head=True)
    model = universal.ReadoutSaliencyNetwork(coarse, rngs=nnx.Rngs(0))
    model.eval()
    assert coarse.feature_names == ("stride16", "stride32", "head")
    assert coarse.feature_channels == {"stride16": 112, "stride32": 320, "head": 1280}
    assert model(_features(coarse)).shape == (2, 4, 6)
    with pytest.raises(ValueError, match="feature_strides must be among"):
        universal.UniversalConfig(backbone="efficientnet_lite0", feature_strides=(4,))
    with pytest.raises(ValueError, match="backbone must be"):
        universal.UniversalConfig(backbone="resnet50")


def test_the_gaussian_blur_keeps_constant_maps_and_spreads_a_peak_symmetrically():
    constant = jnp.full((1, 9, 11), 3.0)
    np.testing.assert_allclose(universal.gaussian_blur(constant, 1.5, 3), constant, rtol=1e-6)
    peak = jnp.zeros((1, 9, 11)).at[0, 4, 5].set(1.0)
    blurred = np.asarray(universal.gaussian_blur(peak, 1.0, 3))
    assert blurred[0, 4, 5] == blurred.max() < 1.0
    np.testing.assert_allclose(blurred[0, 4, 4], blurred[0, 4, 6], rtol=1e-6)
    np.testing.assert_allclose(blurred[0, 3, 5], blurred[0, 5, 5], rtol=1e-6)
    np.testing.assert_allclose(blurred.sum(), 1.0, rtol=1e-5)  # away from the border
    sharp = np.asarray(universal.gaussian_blur(peak, 0.05, 3))
    np.testing.assert_allclose(sharp, np.asarray(peak), atol=1e-6)


def test_the_usm_loss_on_a_grid_that_does_not_divide_the_map_is_its_cross_entropy():
    rng = np.random.default_rng(0)
    usm = rng.random((2, 120, 160)).astype(np.float32)
    logits = jnp.asarray(rng.normal(size=(2, 48, 64)).astype(np.float32))  # 2.5x: no blocks
    loss = np.asarray(universal.usm_loss(logits, jnp.asarray(usm)))
    target = np.asarray(jax.image.resize(usm, (2, 48, 64), "linear", antialias=True))
    target = target.reshape(2, -1) / target.reshape(2, -1).sum(axis=1, keepdims=True)
    log_p = np.asarray(jax.nn.log_softmax(logits.reshape(2, -1), axis=-1))
    np.testing.assert_allclose(loss, -(target * log_p).sum(axis=1), rtol=1e-5)


def test_the_registry_builds_either_universal_model_with_its_batch_fields():
    config = tiny_config("universal", "/tmp/unused")
    config.network.backbone = ""  # the small network trained from scratch
    assert registry.get("universal").batch_keys(config) == ("image", "usm")
    assert registry.get("universal").frozen_features(config) is None
    config.network.backbone = "efficientnet_lite0"
    assert registry.get("universal").batch_keys(config) == (
        "usm",
        "stride8",
        "stride16",
        "stride32",
    )
    model = registry.build_model(config, None, nnx.Rngs(0))
    assert isinstance(model, universal.ReadoutSaliencyNetwork)
    assert registry.get("universal").frozen_features(config) is not None


@pytest.mark.slow
@pytest.mark.skipif(not pretrained.weights_installed(), reason=pretrained.WEIGHTS_INSTALL)
def test_the_readout_trains_on_precomputed_features_and_predicts_from_images(
    tiny_data_dir, tmp_path
):
    """The loop computes the backbone's features once, trains only the readout on them (its
    checkpoint holds no backbone weight), and the restored model predicts a USM from an image of
    any size through the backbone; a dataset's images decode at the model's input size."""
    from psm_jax.data import pipeline
    from psm_jax.train import checkpoint, loop

    config = tiny_config("universal", tiny_data_dir, num_steps=4, checkpoint_every=4)
    config.network.backbone = "efficientnet_lite0"
    config.network.input_size = (64, 96)
    config.network.readout_widths = (8,)
    config.optimizer, config.learning_rate, config.weight_decay = "adam", 1e-3, 0.0
    measurements = loop.train_and_evaluate(config, tmp_path / "run")
    assert np.isfinite(measurements["loss"]) and np.isfinite(measurements["validation_loss"])
    restored = inference.restore(tmp_path / "run")
    assert restored.input_size == (64, 96)
    params = nnx.state(restored.model, nnx.Param)
    assert sum(x.size for x in jax.tree.leaves(params)) < 10_000  # the readout alone
    manager = checkpoint.manager(tmp_path / "run")
    assert manager.latest_step() == 4
    source, _ = pipeline.open_split(TINY, "test", tiny_data_dir)
    native = pipeline.decode_image(source[0]["image"], (240, 320))
    usms = inference.predicted_usms(restored, [native, native[:200]])  # two sizes
    assert usms.shape == (2, 120, 160) and np.isfinite(usms).all()
    np.testing.assert_allclose(usms.max(axis=(1, 2)), 1.0, atol=1e-6)
    at_input = pipeline.decode_image(source[0]["image"], (64, 96))
    np.testing.assert_allclose(
        inference.predicted_usms(restored, at_input[None])[0],
        inference.source_usms(restored, source)[0],
        atol=1e-5,
    )


def test_the_channel_table_is_the_built_backbones():
    from psm_jax.models import efficientnet_lite

    for name, channels in universal.BACKBONE_CHANNELS.items():
        variant = name.removeprefix("efficientnet_")
        built = nnx.eval_shape(
            lambda v=variant: efficientnet_lite.EfficientNetLite(
                efficientnet_lite.VARIANTS[v], rngs=nnx.Rngs(0)
            )
        ).feature_channels()
        assert channels == {
            key: built["head" if key == "head" else f"stride{key}"] for key in channels
        }, name


def test_resizing_and_blurring_by_matrices_equal_jax_image_resize_and_shifted_sums():
    rng = np.random.default_rng(0)
    maps = jnp.asarray(rng.random((2, 12, 16, 3)).astype(np.float32))

    @jax.jit  # the matrices are constants, also when first built under a trace
    def resized(x):
        return universal.resize_maps(x, (48, 64))

    np.testing.assert_allclose(
        resized(maps), jax.image.resize(maps, (2, 48, 64, 3), "bilinear"), atol=1e-5
    )
    usm = jnp.asarray(rng.random((2, 120, 160)).astype(np.float32))
    np.testing.assert_allclose(
        universal.resize_maps(usm, (48, 64), antialias=True),
        jax.image.resize(usm, (2, 48, 64), "linear", antialias=True),
        atol=1e-5,
    )
    radius, sigma = 3, 1.2
    offsets = np.arange(-radius, radius + 1)
    taps = np.exp(-0.5 * (offsets / sigma) ** 2)
    taps /= taps.sum()
    x = np.asarray(usm[:, :20, :25])
    padded = np.pad(x, ((0, 0), (radius, radius), (radius, radius)), mode="edge")
    rows = sum(t * padded[:, k : k + 20, :] for k, t in enumerate(taps))
    expected = sum(t * rows[:, :, k : k + 25] for k, t in enumerate(taps))
    np.testing.assert_allclose(universal.gaussian_blur(x, sigma, radius), expected, atol=1e-5)


def test_a_full_disk_exporting_usms_names_the_folder(tiny_data_dir, tmp_path, monkeypatch):
    """Issue 36 case 17: "[Errno 28] No space left on device" named no file."""
    import errno

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    config = tiny_config("universal", tiny_data_dir)
    restored = inference.Restored(workdir=tmp_path, config=config, model=None, step=0)
    monkeypatch.setattr(
        inference, "predicted_usms", lambda universal, images: np.zeros((len(images), 4, 4))
    )
    monkeypatch.setattr(np, "save", full)
    with pytest.raises(OSError, match=f"disk is full: no space left to write in {tmp_path}/usm"):
        inference.export_usms(restored, tmp_path / "usm", progress=False)
    assert not (tmp_path / "usm").exists()
