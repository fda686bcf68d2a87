"""Models: shapes and ranges, per-example convolution and head selection against references."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from jax import lax

from psm_jax.models import (
    embedding,
    layers,
    multi_task,
    per_observer_networks,
    personalised,
    universal,
)

TINY_MULTI_TASK = multi_task.MultiTaskConfig(trunk_widths=(6, 8, 8, 8), head_widths=(8, 6, 4))
TINY_SALIENCY = personalised.SaliencyNetworkConfig(
    trunk_widths=(6, 8, 8), dynamic_width=8, head_width=6, embedding_size=5, hypernetwork_hidden=7
)


def _inputs(batch, channels=4, seed=0, size=(120, 160)):
    return jax.random.normal(jax.random.key(seed), (batch,) + size + (channels,))


@nnx.jit
def _run(model, inputs, condition):
    """A jitted forward pass (eager dispatch of the per-example convolutions is slow in tests)."""
    return model(inputs, condition)


def _conv_reference(features, kernel, bias, stride):
    return (
        lax.conv_general_dilated(
            features[None],
            kernel,
            (stride, stride),
            "SAME",
            dimension_numbers=("NHWC", "HWIO", "NHWC"),
        )[0]
        + bias
    )


@pytest.mark.parametrize(
    "shape, kernel, stride",
    [
        ((15, 20, 3), 3, 1),  # patch path
        ((15, 20, 40), 3, 1),  # shift-and-sum path
        pytest.param((15, 20, 40), 5, 1, marks=pytest.mark.slow),
        pytest.param((15, 20, 3), 3, 2, marks=pytest.mark.slow),  # odd size, stride 2
        pytest.param((60, 80, 4), 7, 2, marks=pytest.mark.slow),
        ((15, 20, 12), 1, 1),
    ],
)
@pytest.mark.parametrize(
    "formulation",
    [pytest.param(f, marks=() if f == "auto" else pytest.mark.slow) for f in layers.FORMULATIONS],
)
def test_per_example_conv_equals_a_loop_over_examples(shape, kernel, stride, formulation):
    if formulation == "conv_map" and (stride != 1 or kernel % 2 == 0):
        pytest.skip("conv_map is for stride 1, odd kernels")
    keys = jax.random.split(jax.random.key(0), 4)
    features = jax.random.normal(keys[0], (3,) + shape)
    kernels = jax.random.normal(keys[1], (3, kernel, kernel, shape[-1], 5))
    biases = jax.random.normal(keys[2], (3, 5))
    result = layers.per_example_conv(features, kernels, biases, stride, formulation)
    reference = jnp.stack(
        [_conv_reference(features[b], kernels[b], biases[b], stride) for b in range(3)]
    )
    assert result.shape == reference.shape
    np.testing.assert_allclose(result, reference, rtol=1e-4, atol=1e-4)

    # Gradients with respect to features, kernels and biases equal the reference loop's.
    weights = jax.random.normal(keys[3], reference.shape)

    def loss(convolve, features, kernels, biases):
        return jnp.sum(weights * jnp.sin(convolve(features, kernels, biases)))

    def ours(features, kernels, biases):
        return layers.per_example_conv(features, kernels, biases, stride, formulation)

    def loop(features, kernels, biases):
        return jnp.stack(
            [_conv_reference(features[b], kernels[b], biases[b], stride) for b in range(3)]
        )

    got = jax.jit(jax.grad(lambda *a: loss(ours, *a), argnums=(0, 1, 2)))(features, kernels, biases)
    want = jax.grad(lambda *a: loss(loop, *a), argnums=(0, 1, 2))(features, kernels, biases)
    for g, w in zip(got, want, strict=True):
        np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-3)


def test_per_example_conv_refuses_a_formulation_that_does_not_apply():
    features = jnp.zeros((2, 8, 8, 3))
    with pytest.raises(ValueError, match="stride 1 and an odd kernel"):
        layers.per_example_conv(features, jnp.zeros((2, 3, 3, 3, 4)), None, 2, "conv_map")
    with pytest.raises(ValueError, match="formulation must be one of"):
        layers.per_example_conv(features, jnp.zeros((2, 3, 3, 3, 4)), None, 1, "grouped")


def test_model_input_channels_and_centring():
    image = jnp.full((2, 4, 5, 3), 255, jnp.uint8)
    usm = jnp.zeros((2, 4, 5))
    inputs = layers.model_input(image, usm)
    assert inputs.shape == (2, 4, 5, 4)
    np.testing.assert_allclose(inputs[..., :3], 0.5)
    np.testing.assert_allclose(inputs[..., 3], -0.5)
    assert layers.model_input(image, None).shape == (2, 4, 5, 3)


def _single_observer_copy(model, observer, make):
    """A model built by `make()` for one observer whose parameters are row `observer` of `model`."""
    single = make()
    observer_state = jax.tree.map(
        lambda rows: rows[observer : observer + 1], nnx.state(model, layers.ObserverParam)
    )
    nnx.update(single, observer_state, nnx.state(model, nnx.Not(layers.ObserverParam)))
    return single


@pytest.mark.slow
@pytest.mark.parametrize("share_trunk", [True, False])
def test_multi_task_heads_select_each_examples_observer(share_trunk):
    config = dataclasses.replace(TINY_MULTI_TASK, share_trunk=share_trunk)
    model = multi_task.MultiTaskCNN(5, config, rngs=nnx.Rngs(0))
    inputs = _inputs(4, size=(32, 48))
    observer = jnp.array([3, 0, 3, 4])
    outputs = _run(model, inputs, observer)
    assert len(outputs) == 3 and all(o.shape == (4, 4, 6) for o in outputs)
    for b in range(4):
        alone = _single_observer_copy(
            model, int(observer[b]), lambda: multi_task.MultiTaskCNN(1, config, rngs=nnx.Rngs(9))
        )
        expected = _run(alone, inputs[b : b + 1], jnp.zeros((1,), jnp.int32))
        for output, single in zip(outputs, expected, strict=True):
            np.testing.assert_allclose(output[b], single[0], rtol=1e-4, atol=1e-5)
    # Different observers really have different heads.
    assert not np.allclose(outputs[2][0], _run(model, inputs[:1], jnp.array([0]))[2][0])


@pytest.mark.slow
def test_multi_task_rgb_only_and_side_outputs_differ():
    config = dataclasses.replace(TINY_MULTI_TASK, in_channels=3)
    model = multi_task.MultiTaskCNN(2, config, rngs=nnx.Rngs(0))
    s5, s6, s7 = _run(model, _inputs(2, channels=3), jnp.array([0, 1]))
    assert s5.shape == s6.shape == s7.shape == (2, 15, 20)
    assert not np.allclose(s5, s7)


@pytest.mark.slow
def test_usm_channel_has_xavier_initialisation():
    model = multi_task.MultiTaskCNN(1, rngs=nnx.Rngs(0))
    kernel = np.asarray(model.trunk[0].kernel.value)  # (7, 7, 4, 32)
    fan_in, fan_out = 7 * 7 * 1, 7 * 7 * 32
    xavier_bound = np.sqrt(6.0 / (fan_in + fan_out))
    assert np.abs(kernel[:, :, 3]).max() <= xavier_bound  # uniform within the Xavier bound
    assert np.abs(kernel[:, :, :3]).max() > xavier_bound  # He normal for RGB is wider


def test_personalised_network_outputs_and_dynamic_convolution():
    model = personalised.PersonalisedSaliencyNetwork(TINY_SALIENCY, rngs=nnx.Rngs(0))
    inputs = _inputs(4)
    user_embedding = embedding.normalise(jax.random.normal(jax.random.key(1), (4, 5)))
    outputs = _run(model, inputs, user_embedding)
    assert len(outputs) == 3
    for output in outputs:
        assert output.shape == (4, 15, 20)
        assert float(jnp.min(output)) >= -1.0 and float(jnp.max(output)) <= 1.0
    # Batched = each example alone (a batch costs nothing across examples, and mixes nothing).
    for b in range(4):
        alone = _run(model, inputs[b : b + 1], user_embedding[b : b + 1])
        for output, single in zip(outputs, alone, strict=True):
            np.testing.assert_allclose(output[b], single[0], rtol=1e-4, atol=1e-5)
    # The dynamic layer equals a per-example reference loop over the predicted kernels.
    features = model.trunk(inputs)
    kernels, biases = model.dynamic_kernels(user_embedding)
    batched = layers.per_example_conv(features, kernels, biases)
    for b in range(4):
        np.testing.assert_allclose(
            batched[b], _conv_reference(features[b], kernels[b], biases[b], 1), rtol=1e-4, atol=1e-4
        )
    # The embedding conditions the output.
    other = _run(model, inputs, user_embedding[::-1])
    assert not np.allclose(outputs[2], other[2])


@pytest.mark.slow
@pytest.mark.parametrize("architecture", ["xu", "strohm"])
def test_per_observer_networks_run_each_examples_own_network(architecture):
    config = TINY_MULTI_TASK if architecture == "xu" else TINY_SALIENCY
    fields = {
        f.name: getattr(config, f.name)
        for f in dataclasses.fields(config)
        if f.name != "share_trunk" and f.name not in ("embedding_size", "hypernetwork_hidden")
    }
    model = per_observer_networks(architecture, 4, rngs=nnx.Rngs(0), **fields)
    # Nothing is shared: every parameter is stacked per observer.
    assert not jax.tree.leaves(nnx.state(model, nnx.All(nnx.Param, nnx.Not(layers.ObserverParam))))
    assert [o.shape for o in _run(model, _inputs(1), jnp.array([3]))] == [(1, 15, 20)] * 3
    inputs = _inputs(3, size=(32, 48))
    observer = jnp.array([2, 2, 0])
    outputs = _run(model, inputs, observer)
    for b in range(3):
        alone = _single_observer_copy(
            model,
            int(observer[b]),
            lambda: per_observer_networks(architecture, 1, rngs=nnx.Rngs(5), **fields),
        )
        expected = _run(alone, inputs[b : b + 1], jnp.zeros((1,), jnp.int32))
        np.testing.assert_allclose(outputs[2][b], expected[2][0], rtol=1e-4, atol=1e-5)
    # A scalar observer runs that observer's layers on the whole batch (ordinary convolutions,
    # the evaluation's per-observer oracle): the same outputs as naming them per example.
    for k in (0, 2):
        one = _run(model, inputs, jnp.asarray(k, jnp.int32))
        each = _run(model, inputs, jnp.full((3,), k, jnp.int32))
        for a, b in zip(one, each, strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
    assert not np.allclose(_run(model, inputs, jnp.asarray(0))[2], outputs[2])
    with pytest.raises(ValueError, match="architecture"):
        per_observer_networks("deepgaze", 2, rngs=nnx.Rngs(0))


def _pairs(batch, m, seed):
    keys = jax.random.split(jax.random.key(seed))
    images = jax.random.randint(keys[0], (batch, m, 120, 160, 3), 0, 256).astype(jnp.uint8)
    psms = jax.random.uniform(keys[1], (batch, m, 120, 160))
    return images, psms


def test_embedding_is_unit_norm_and_invariant_to_pair_order():
    config = embedding.EncoderConfig(widths=(4, 8, 8, 8), embedding_size=6)
    encoder = embedding.UserEmbeddingEncoder(config, rngs=nnx.Rngs(0))
    encoder.eval()
    images, psms = _pairs(3, 4, seed=0)
    user_embedding = encoder(images, psms)
    assert user_embedding.shape == (3, 6)
    np.testing.assert_allclose(jnp.linalg.norm(user_embedding, axis=-1), 1.0, rtol=1e-5)
    order = jnp.array([2, 0, 3, 1])
    np.testing.assert_allclose(
        encoder(images[:, order], psms[:, order]), user_embedding, rtol=1e-4, atol=1e-6
    )
    # The PSMs matter (the user is in the saliency channel, not only in the images).
    other = encoder(images, psms[::-1])
    assert not np.allclose(other[0], user_embedding[0])


def test_a_discrepancy_encoder_reads_the_departure_from_the_usm():
    config = embedding.EncoderConfig(
        widths=(4, 8, 8, 8), embedding_size=6, input_map="discrepancy", discrepancy_scale=4.0
    )
    encoder = embedding.UserEmbeddingEncoder(config, rngs=nnx.Rngs(0))
    encoder.eval()
    images, psms = _pairs(2, 3, seed=1)
    usms = jnp.clip(psms + 0.05, 0, 1)
    with pytest.raises(ValueError, match="give the USMs"):
        encoder(images, psms)
    np.testing.assert_allclose(
        encoder.input_map(psms, usms), jnp.clip(0.5 + 4.0 * (psms - usms), 0, 1), atol=1e-6
    )
    # Only the departure matters: the same PSM - USM on other maps gives the same embedding.
    shifted = encoder(images, psms * 0.5, usms - psms * 0.5)
    np.testing.assert_allclose(shifted, encoder(images, psms, usms), atol=1e-5)
    assert not np.allclose(encoder(images, psms, usms), encoder(images, psms, usms[::-1]))
    with pytest.raises(ValueError, match="input_map must be one of"):
        embedding.EncoderConfig(input_map="usm")


@pytest.mark.slow
def test_embedding_training_mode_uses_dropout_and_batch_statistics():
    encoder = embedding.UserEmbeddingEncoder(
        embedding.EncoderConfig(widths=(4, 4, 4, 4), embedding_size=6), rngs=nnx.Rngs(0)
    )
    images, psms = _pairs(2, 3, seed=1)
    encoder.train()
    first, second = encoder(images, psms), encoder(images, psms)
    assert not np.allclose(first, second)  # a fresh dropout mask each call
    stats = nnx.state(encoder, nnx.BatchStat)
    assert any(float(jnp.abs(leaf).max()) > 0 for leaf in jax.tree.leaves(stats))


def test_universal_network_predicts_a_normalised_usm():
    model = universal.UniversalSaliencyNetwork(rngs=nnx.Rngs(0))
    inputs = layers.model_input(
        jax.random.randint(jax.random.key(0), (2, 120, 160, 3), 0, 256).astype(jnp.uint8), None
    )
    assert model(inputs).shape == (2, 15, 20)
    usm = model.usm(inputs)
    assert usm.shape == (2, 120, 160)
    np.testing.assert_allclose(usm.min(axis=(1, 2)), 0.0, atol=1e-6)
    np.testing.assert_allclose(usm.max(axis=(1, 2)), 1.0, atol=1e-6)


@pytest.mark.slow
def test_count_parameters_counts_stacked_rows():
    one = layers.count_parameters(multi_task.MultiTaskCNN(1, TINY_MULTI_TASK, rngs=nnx.Rngs(0)))
    ten = layers.count_parameters(multi_task.MultiTaskCNN(10, TINY_MULTI_TASK, rngs=nnx.Rngs(0)))
    head = sum(
        k * k * i * o + o
        for k, i, o in zip(
            TINY_MULTI_TASK.head_kernels, (8, 8, 6), TINY_MULTI_TASK.head_widths, strict=True
        )
    ) + sum(w + 1 for w in TINY_MULTI_TASK.head_widths)
    assert ten - one == 9 * head


@pytest.mark.slow
def test_a_leaky_dynamic_layer_passes_negative_responses_scaled():
    with pytest.raises(ValueError, match="dynamic_activation must be"):
        dataclasses.replace(TINY_SALIENCY, dynamic_activation="gelu")
    leaky = dataclasses.replace(TINY_SALIENCY, dynamic_activation="leaky_relu")
    inputs = _inputs(2)
    user_embedding = embedding.normalise(jax.random.normal(jax.random.key(1), (2, 5)))
    activations = {}
    model = personalised.PersonalisedSaliencyNetwork(leaky, rngs=nnx.Rngs(0))
    model(inputs, user_embedding, activations=activations)
    kernels, biases = model.dynamic_kernels(user_embedding)
    raw = layers.per_example_conv(model.trunk(inputs), kernels, biases)
    np.testing.assert_allclose(
        activations["dynamic"], jnp.where(raw > 0, raw, 0.1 * raw), rtol=1e-5, atol=1e-6
    )
    assert float(jnp.min(activations["dynamic"])) < 0  # a ReLU would have zeroed these


@pytest.mark.parametrize(
    "shape, kernel",
    [
        ((15, 20, 3), 3),
        pytest.param((16, 21, 4), 7, marks=pytest.mark.slow),
        pytest.param((30, 40, 8), 3, marks=pytest.mark.slow),
    ],
)
def test_stride2_conv_and_its_gradients_equal_lax(shape, kernel):
    # 3 and 4 channels: the space-to-depth forward pass; 8: XLA's (SPACE_TO_DEPTH_MAX_CHANNELS).
    keys = jax.random.split(jax.random.key(1), 3)
    features = jax.random.normal(keys[0], (2,) + shape)
    weights = jax.random.normal(keys[1], (kernel, kernel, shape[-1], 5))

    def reference(x, k):
        return lax.conv_general_dilated(
            x, k, (2, 2), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")
        )

    for convolve in (layers._space_to_depth_conv, layers.stride2_conv):
        np.testing.assert_allclose(
            convolve(features, weights), reference(features, weights), rtol=1e-4, atol=1e-4
        )
    out_weights = jax.random.normal(keys[2], reference(features, weights).shape)

    def loss(convolve, x, k):
        return jnp.sum(out_weights * jnp.sin(convolve(x, k)))

    got = jax.jit(jax.grad(lambda x, k: loss(layers.stride2_conv, x, k), argnums=(0, 1)))(
        features, weights
    )
    want = jax.grad(lambda x, k: loss(reference, x, k), argnums=(0, 1))(features, weights)
    for g, w in zip(got, want, strict=True):
        np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-3)


@pytest.mark.parametrize("dtype", [None, jnp.bfloat16])
def test_batch_norm_with_product_reductions_equals_flax_batch_norm(dtype):
    # layers.BatchNorm: nnx.BatchNorm's variables and numbers, every reduction a product.
    features = 3.0 * jax.random.normal(jax.random.key(0), (6, 5, 7, 8)) + 1.0
    out_weights = jax.random.normal(jax.random.key(1), features.shape)
    ours = layers.BatchNorm(8, momentum=0.9, dtype=dtype, rngs=nnx.Rngs(0))
    flax_norm = nnx.BatchNorm(8, momentum=0.9, dtype=dtype, rngs=nnx.Rngs(0))
    for norm in (ours, flax_norm):
        norm.scale[...] = jnp.linspace(0.5, 2.0, 8)
        norm.bias[...] = jnp.linspace(-1.0, 1.0, 8)
    assert jax.tree.structure(nnx.state(ours)) == jax.tree.structure(nnx.state(flax_norm))
    # bfloat16: Flax sums in bfloat16 where ours sums in float32, so they differ by its rounding.
    tolerance = dict(rtol=5e-2, atol=0.2) if dtype else dict(rtol=1e-5, atol=1e-5)

    def loss(norm, x):
        return jnp.sum(out_weights * jnp.sin(norm(x).astype(jnp.float32)))

    got = nnx.grad(loss, argnums=(0, 1))(ours, features)
    want = nnx.grad(loss, argnums=(0, 1))(flax_norm, features)
    np.testing.assert_allclose(got[1], want[1], **tolerance)
    for name in ("scale", "bias"):
        np.testing.assert_allclose(got[0][name][...], want[0][name][...], **tolerance)
    # Training mode: the output and the running statistics (two updates, so the momentum counts).
    for _ in range(2):
        np.testing.assert_allclose(
            ours(features).astype(jnp.float32), flax_norm(features).astype(jnp.float32), **tolerance
        )
    np.testing.assert_allclose(ours.mean[...], flax_norm.mean[...], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(ours.var[...], flax_norm.var[...], rtol=1e-4, atol=1e-4)
    assert float(jnp.max(jnp.abs(ours.mean[...]))) > 0.1  # the statistics did move
    ours.eval()
    flax_norm.eval()
    np.testing.assert_allclose(
        ours(features).astype(jnp.float32), flax_norm(features).astype(jnp.float32), **tolerance
    )


def test_add_bias_and_its_gradients_equal_a_plain_sum():
    features = jax.random.normal(jax.random.key(0), (3, 4, 5, 6))
    bias = jax.random.normal(jax.random.key(1), (6,))
    out_weights = jax.random.normal(jax.random.key(2), features.shape)

    def loss(add, x, b):
        return jnp.sum(out_weights * jnp.sin(add(x, b)))

    np.testing.assert_allclose(layers.add_bias_by_products(features, bias), features + bias)
    got = jax.jit(jax.grad(lambda x, b: loss(layers.add_bias_by_products, x, b), argnums=(0, 1)))(
        features, bias
    )
    want = jax.grad(lambda x, b: loss(jnp.add, x, b), argnums=(0, 1))(features, bias)
    for g, w in zip(got, want, strict=True):
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-5)


def test_the_cpu_forms_are_picked_on_the_cpu_and_the_variable_overrides(monkeypatch):
    monkeypatch.delenv(layers.LAYER_FORMS_VARIABLE, raising=False)
    assert jax.default_backend() == "cpu"
    assert layers.cpu_forms()
    monkeypatch.setenv(layers.LAYER_FORMS_VARIABLE, "plain")
    assert not layers.cpu_forms()
    monkeypatch.setenv(layers.LAYER_FORMS_VARIABLE, " CPU ")
    assert layers.cpu_forms()
    monkeypatch.setenv(layers.LAYER_FORMS_VARIABLE, "gpu")
    with pytest.raises(ValueError, match="PSM_JAX_LAYER_FORMS"):
        layers.cpu_forms()


def _spy_on_forms(monkeypatch) -> list[str]:
    """The names of the CPU-form functions the layers call, appended as they are traced."""
    called = []
    for name in ("stride2_conv", "add_bias_by_products", "batch_norm_statistics_and_output"):
        original = getattr(layers, name)
        monkeypatch.setattr(
            layers, name, lambda *a, _f=original, _n=name: called.append(_n) or _f(*a)
        )
    original_loop = layers._conv_map
    monkeypatch.setattr(
        layers, "_conv_map", lambda *a: called.append("conv_map") or original_loop(*a)
    )
    return called


@pytest.mark.slow  # traces every model twice; the forms one by one are tested fast above
def test_models_give_the_same_outputs_and_gradients_in_both_layer_forms(monkeypatch):
    # The encoder in training mode (stride-2 convolutions, biases, BatchNorm's batch statistics)
    # and the PSM network (the per-example convolution), once with the CPU forms and once with
    # the plain ones, from the same initialisation.
    called = _spy_on_forms(monkeypatch)
    encoder_config = embedding.EncoderConfig(widths=(4, 6), embedding_size=5, dropout_rate=0.0)
    keys = jax.random.split(jax.random.key(3), 4)
    images = jax.random.uniform(keys[0], (2, 2, 24, 32, 3))
    psms = jax.random.uniform(keys[1], (2, 2, 24, 32))
    inputs = jax.random.normal(keys[2], (2, 24, 32, 4))
    conditions = jax.random.normal(keys[3], (2, TINY_SALIENCY.embedding_size))

    def encoder_loss(model):
        return jnp.sum(jnp.sin(3.0 * model(images, psms)))

    def network_loss(model):
        return sum(jnp.sum(jnp.sin(output)) for output in model(inputs, conditions))

    results = {}
    for forms in ("cpu", "plain"):
        monkeypatch.setenv(layers.LAYER_FORMS_VARIABLE, forms)
        called.clear()
        encoder = embedding.UserEmbeddingEncoder(encoder_config, rngs=nnx.Rngs(0))
        network = personalised.PersonalisedSaliencyNetwork(TINY_SALIENCY, rngs=nnx.Rngs(1))
        results[forms] = (
            nnx.value_and_grad(encoder_loss)(encoder),
            nnx.state(encoder, nnx.BatchStat),  # the running statistics after one step
            nnx.value_and_grad(network_loss)(network),
        )
        if forms == "cpu":
            assert set(called) == {
                "stride2_conv",
                "add_bias_by_products",
                "batch_norm_statistics_and_output",
                "conv_map",
            }
        else:
            assert called == []
    got, want = jax.tree.leaves(results["cpu"]), jax.tree.leaves(results["plain"])
    assert len(got) == len(want) > 10
    for g, w in zip(got, want, strict=True):
        np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-4)


@pytest.mark.slow
def test_coordinate_channels_let_the_network_tell_positions_apart():
    inputs = jnp.zeros((1, 8, 10, 4))
    with_coords = personalised.coordinates(inputs)
    assert with_coords.shape == (1, 8, 10, 6)
    np.testing.assert_allclose(with_coords[0, :, 0, 4], (np.arange(8) + 0.5) / 8 - 0.5, atol=1e-6)
    np.testing.assert_allclose(with_coords[0, 0, :, 5], (np.arange(10) + 0.5) / 10 - 0.5, atol=1e-6)
    config = personalised.SaliencyNetworkConfig(coordinate_channels=True)
    model = personalised.PersonalisedSaliencyNetwork(config, rngs=nnx.Rngs(0))
    final = model(jnp.zeros((1, 120, 160, 4)), jnp.ones((1, 32)))[-1]
    # A constant image: away from the borders, only the coordinates can make outputs differ.
    assert float(jnp.std(final[0, 3:-3, 3:-3])) > 1e-3


@pytest.mark.slow
def test_the_bias_map_starts_at_zero_and_makes_outputs_depend_on_the_embedding_by_position():
    plain_config = personalised.SaliencyNetworkConfig()
    config = personalised.SaliencyNetworkConfig(bias_map_grid=(3, 4))
    plain = personalised.PersonalisedSaliencyNetwork(plain_config, rngs=nnx.Rngs(0))
    model = personalised.PersonalisedSaliencyNetwork(config, rngs=nnx.Rngs(0))
    inputs = jax.random.uniform(jax.random.key(1), (2, 120, 160, 4)) - 0.5
    embedding = jax.random.normal(jax.random.key(2), (2, 32))
    # Zero weights: an untrained network with the map is the one without it.
    for got, want in zip(model(inputs, embedding), plain(inputs, embedding), strict=True):
        np.testing.assert_allclose(got, want, atol=1e-6)
    shape = model.bias_map_generator.kernel.value.shape
    model.bias_map_generator.kernel.value = 0.01 * jax.random.normal(jax.random.key(3), shape)
    bias = model.bias_map(embedding, (15, 20))
    assert bias.shape == (2, 15, 20)
    assert float(jnp.abs(bias[0] - bias[1]).max()) > 1e-3  # depends on the embedding
    assert float(jnp.std(bias[0])) > 1e-3  # and on the position
    final = model(inputs, embedding)[-1]
    np.testing.assert_allclose(
        jnp.arctanh(final), jnp.arctanh(plain(inputs, embedding)[-1]) + bias, atol=1e-4
    )
    # The gradient reaches the map's weights from zero.
    grads = nnx.grad(lambda m: jnp.sum(m(inputs, embedding)[-1]))(
        personalised.PersonalisedSaliencyNetwork(config, rngs=nnx.Rngs(0))
    )
    assert float(jnp.abs(grads.bias_map_generator.kernel.value).max()) > 0
    with pytest.raises(ValueError, match="bias_map_grid"):
        personalised.SaliencyNetworkConfig(bias_map_grid=(3,))


@pytest.mark.slow
def test_instance_normalisation_keeps_the_embedding_generated_layer_alive():
    config = personalised.SaliencyNetworkConfig(dynamic_normalisation="instance")
    inputs = jax.random.uniform(jax.random.key(1), (2, 120, 160, 4)) - 0.5
    embedding = jax.random.normal(jax.random.key(2), (2, 32))
    plain = personalised.PersonalisedSaliencyNetwork(rngs=nnx.Rngs(0))
    model = personalised.PersonalisedSaliencyNetwork(config, rngs=nnx.Rngs(0))
    # Generated biases far below zero: the papers' layer is dead, the normalised one is not.
    for network in (plain, model):
        bias = network.kernel_generator.bias.value
        network.kernel_generator.bias.value = bias.at[-config.dynamic_width :].set(-100.0)
    dead, alive = {}, {}
    plain(inputs, embedding, activations=dead)
    model(inputs, embedding, activations=alive)
    assert float(jnp.mean(dead["dynamic"] > 0)) == 0.0
    live = jnp.mean(alive["dynamic"] > 0, axis=(1, 2))  # (B, C): every channel of every example
    assert float(live.min()) > 0.2 and float(live.max()) < 0.8
    # Each example's channel is standardised over its positions before scale and shift.
    features = jax.random.normal(jax.random.key(3), (2, 5, 6, 3)) * 7.0 + 3.0
    normalised = personalised.instance_normalise(features, jnp.full((3,), 2.0), jnp.ones((3,)))
    np.testing.assert_allclose(jnp.mean(normalised, axis=(1, 2)), 1.0, atol=1e-5)
    np.testing.assert_allclose(jnp.std(normalised, axis=(1, 2)), 2.0, atol=1e-3)
    # The outputs still depend on the embedding, and the gradient reaches scale and shift.
    final = model(inputs, jnp.stack([embedding[0], embedding[0]]))[-1]
    other = model(inputs, jnp.stack([embedding[0], embedding[1]]))[-1]
    assert float(jnp.abs(final[1] - other[1]).max()) > 1e-4
    grads = nnx.grad(lambda m: jnp.sum(jnp.square(m(inputs, embedding)[-1])))(model)
    assert float(jnp.abs(grads.dynamic_scale.value).max()) > 0
    assert float(jnp.abs(grads.dynamic_shift.value).max()) > 0
    with pytest.raises(ValueError, match="dynamic_normalisation"):
        personalised.SaliencyNetworkConfig(dynamic_normalisation="batch")
    with pytest.raises(ValueError, match="PSM network only"):
        personalised.PerObserverSaliencyNetworks(3, config, rngs=nnx.Rngs(0))


@pytest.mark.parametrize("input_map", ["psm", "discrepancy"])
def test_map_pooling_weights_the_features_by_where_the_person_looked(input_map):
    """Ours: pooling="map" averages the last features under the person's density (or the
    person's minus the population's, with the discrepancy input)."""
    config = embedding.EncoderConfig(
        widths=(4, 8, 8, 8), embedding_size=6, pooling="map", input_map=input_map
    )
    encoder = embedding.UserEmbeddingEncoder(config, rngs=nnx.Rngs(0))
    encoder.eval()
    psms = jnp.zeros((2, 64, 80)).at[0, 0:16, 0:16].set(1.0).at[1, 48:64, 64:80].set(1.0)
    usms = jnp.full((2, 64, 80), 0.5)
    weights = encoder.pooling_weights(psms, usms, (4, 5))
    assert weights.shape == (2, 4, 5)
    if input_map == "psm":
        np.testing.assert_allclose(weights.sum(axis=(1, 2)), 1.0, rtol=1e-5)
        # The mass lies where the map does: top-left for the first, bottom-right for the second.
        assert int(jnp.argmax(weights[0])) == 0 and weights[0, 3, 4] < 1e-3
        assert int(jnp.argmax(weights[1])) == 19 and weights[1, 0, 0] < 1e-3
    else:
        np.testing.assert_allclose(weights.sum(axis=(1, 2)), 0.0, atol=1e-6)
        np.testing.assert_allclose(weights[0, 3, 4], -1 / 20, rtol=1e-4)  # looked less there
    images, pair_psms = _pairs(2, 3, seed=4)
    pair_usms = jnp.clip(pair_psms + 0.05, 0, 1)
    first = encoder(images, pair_psms, pair_usms)
    np.testing.assert_allclose(jnp.linalg.norm(first, axis=-1), 1.0, rtol=1e-5)
    assert not np.allclose(first, encoder(images, pair_psms[::-1], pair_usms))
    with pytest.raises(ValueError, match="pooling must be one of"):
        embedding.EncoderConfig(pooling="max")


@pytest.mark.slow
def test_collect_embeddings_encodes_each_pair_once_and_equals_the_encoder(monkeypatch):
    config = embedding.EncoderConfig(
        widths=(4, 8, 8, 8), embedding_size=6, input_map="discrepancy", pooling="map"
    )
    encoder = embedding.UserEmbeddingEncoder(config, rngs=nnx.Rngs(0))
    encoder.eval()
    # 4 observers x 3 images: each observer's PSM of each image; sets of m = 2 that share pairs.
    images, psms = _pairs(4, 3, seed=2)
    usms = jnp.clip(psms[0] + 0.05, 0, 1)
    sets = [(0, (0, 1)), (1, (1, 2)), (0, (1, 2)), (2, (0, 2)), (3, (2, 0)), (1, (0, 1))]
    sets += [(2, (1, 0)), (3, (1, 2))]
    observer = np.array([o for o, _ in sets], np.int32)
    index = np.array([i for _, i in sets], np.int32)
    batch = {
        "images": np.asarray(images[0])[index],  # the same image for every observer
        "psms": np.asarray(psms)[observer[:, None], index],
        "usms": np.asarray(usms)[index],
        "observer": observer,
        "image_index": index,
    }
    # Two batches (the second short, as a stream's last): the first 5 sets, then 3.
    batches = [{k: v[:5] for k, v in batch.items()}, {k: v[5:] for k, v in batch.items()}]
    cache = {}
    vectors, chosen = embedding.collect_embeddings(
        encoder, batches, 4, 2, with_image_index=True, pair_cache=cache
    )
    expected = encoder(batch["images"], batch["psms"], batch["usms"])
    for k in range(4):
        rows = np.flatnonzero(observer == k)
        np.testing.assert_allclose(vectors[k], expected[rows], rtol=1e-4, atol=1e-5)
        np.testing.assert_array_equal(chosen[k], index[rows])
    pairs = {(int(o), int(i)) for o, row in zip(observer, index, strict=True) for i in row}
    assert set(cache) == pairs and len(pairs) < observer.size * 2
    with pytest.raises(ValueError, match="before observers \\[0, 1, 2, 3\\] had 3 sets"):
        embedding.collect_embeddings(encoder, batches, 4, 3)

    # Given the filled cache, the same sets are embedded without running the encoder at all.
    def no_encoder(*args):
        raise AssertionError("a cached pair went through the encoder again")

    monkeypatch.setattr(embedding, "_pair_features", no_encoder)
    again = embedding.collect_embeddings(encoder, batches, 4, 2, pair_cache=cache)
    np.testing.assert_array_equal(again, vectors)


def _cosine(a, b):
    a, b = np.ravel(a), np.ravel(b)
    return float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b)))


@pytest.mark.slow
@pytest.mark.parametrize("normalisation", ["none", "instance"])
def test_bfloat16_compute_keeps_float32_parameters_and_tracks_float32(normalisation):
    configs = {
        dtype: dataclasses.replace(
            TINY_SALIENCY, compute_dtype=dtype, dynamic_normalisation=normalisation
        )
        for dtype in ("float32", "bfloat16")
    }
    models = {
        dtype: personalised.PersonalisedSaliencyNetwork(config, rngs=nnx.Rngs(0))
        for dtype, config in configs.items()
    }
    # The same parameters, all float32: a checkpoint serves either compute dtype.
    states = {dtype: nnx.state(model, nnx.Param) for dtype, model in models.items()}
    for exact, low in zip(*(jax.tree.leaves(s) for s in states.values()), strict=True):
        assert low.dtype == jnp.float32
        np.testing.assert_array_equal(exact, low)
    inputs = _inputs(3, size=(32, 48))
    user_embedding = embedding.normalise(jax.random.normal(jax.random.key(1), (3, 5)))
    outputs = {dtype: _run(model, inputs, user_embedding) for dtype, model in models.items()}
    for exact, low in zip(outputs["float32"], outputs["bfloat16"], strict=True):
        assert low.dtype == jnp.float32
        assert float(jnp.max(jnp.abs(exact - low))) < 0.05  # bf16 keeps 8 bits of mantissa
        assert not np.array_equal(exact, low)  # it did compute in bf16
        assert _cosine(exact, low) > 0.99

    def loss(model):
        return jnp.mean(jnp.square(model(inputs, user_embedding)[2] - 0.1))

    gradients = {dtype: nnx.grad(loss)(model) for dtype, model in models.items()}
    for exact, low in zip(*(jax.tree.leaves(g) for g in gradients.values()), strict=True):
        assert low.dtype == jnp.float32
        if float(jnp.max(jnp.abs(exact))) > 1e-6:
            assert _cosine(exact, low) > 0.95
    with pytest.raises(ValueError, match="compute_dtype must be one of"):
        personalised.SaliencyNetworkConfig(compute_dtype="float16")


@pytest.mark.slow
def test_bfloat16_encoder_and_per_observer_networks_track_float32():
    encoders = {
        dtype: embedding.UserEmbeddingEncoder(
            embedding.EncoderConfig(widths=(4, 8, 8, 8), embedding_size=6, compute_dtype=dtype),
            rngs=nnx.Rngs(0),
        )
        for dtype in ("float32", "bfloat16")
    }
    images, psms = _pairs(3, 4, seed=0)
    embeddings = {}
    for dtype, encoder in encoders.items():
        encoder.eval()
        embeddings[dtype] = encoder(images, psms)
    assert embeddings["bfloat16"].dtype == jnp.float32
    assert not np.array_equal(embeddings["float32"], embeddings["bfloat16"])
    cosines = jnp.sum(embeddings["float32"] * embeddings["bfloat16"], axis=-1)
    assert float(jnp.min(cosines)) > 0.99
    networks = {
        dtype: per_observer_networks(
            "strohm",
            3,
            rngs=nnx.Rngs(0),
            trunk_widths=(6, 8, 8),
            dynamic_width=8,
            head_width=6,
            compute_dtype=dtype,
        )
        for dtype in ("float32", "bfloat16")
    }
    inputs, observer = _inputs(2, size=(32, 48)), jnp.array([2, 0])
    exact, low = (_run(network, inputs, observer)[2] for network in networks.values())
    assert low.dtype == jnp.float32 and not np.array_equal(exact, low)
    assert float(jnp.max(jnp.abs(exact - low))) < 0.05


def test_block_mean_averages_blocks_and_drops_the_remainder():
    features = jnp.arange(2 * 5 * 7 * 3, dtype=jnp.float32).reshape(2, 5, 7, 3)
    pooled = layers.block_mean(features, 2)
    assert pooled.shape == (2, 2, 3, 3)
    expected = np.asarray(features)[:, :4, :6].reshape(2, 2, 2, 3, 2, 3).mean(axis=(2, 4))
    np.testing.assert_allclose(pooled, expected, rtol=1e-6)
    assert layers.block_mean(features, 1) is features
    with pytest.raises(ValueError, match="leaves nothing"):
        layers.block_mean(features, 6)


@pytest.mark.slow
def test_an_encoder_with_input_downsample_reads_block_averaged_pairs():
    """Ours: input_downsample=2 is the same network fed inputs averaged over 2x2 blocks (the
    PSM-input encoder's input channels are affine in the pixels, so averaging commutes)."""
    small = embedding.EncoderConfig(widths=(4, 8, 8, 8), embedding_size=6, input_downsample=2)
    full = dataclasses.replace(small, input_downsample=1)
    encoder = embedding.UserEmbeddingEncoder(small, rngs=nnx.Rngs(0))
    reference = embedding.UserEmbeddingEncoder(full, rngs=nnx.Rngs(0))
    encoder.eval(), reference.eval()
    images, psms = _pairs(2, 3, seed=5)
    averaged_images = layers.block_mean(
        images.reshape(6, 120, 160, 3).astype(jnp.float32) / 255.0, 2
    ).reshape(2, 3, 60, 80, 3)
    averaged_psms = layers.block_mean(psms.reshape(6, 120, 160, 1), 2).reshape(2, 3, 60, 80)
    ours = encoder(images, psms)
    np.testing.assert_allclose(ours, reference(averaged_images, averaged_psms), atol=1e-5)
    assert not np.allclose(ours, reference(images, psms), atol=1e-3)
    for bad in (0, 1.5, True):
        with pytest.raises(ValueError, match="input_downsample"):
            embedding.EncoderConfig(input_downsample=bad)
