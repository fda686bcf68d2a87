"""The model registry: every model builds from its config, and the ReLU-activity diagnostic."""

import numpy as np
import pytest
from conftest import tiny_config
from flax import nnx

from psm_jax import registry


@pytest.mark.parametrize("name", list(registry.MODELS))
def test_every_model_builds_from_its_config(name):
    config = tiny_config(name, "unused")
    spec = registry.get(name)
    model = registry.build_model(config, 3 if spec.per_observer else None, nnx.Rngs(0))
    assert model.config == spec.architecture(config)
    if spec.per_observer:
        with pytest.raises(ValueError, match="number of training observers"):
            registry.build_model(config, None, nnx.Rngs(0))


def test_unknown_models_are_named():
    with pytest.raises(ValueError, match="Unknown model 'deepgaze'; known: embedding"):
        registry.get("deepgaze")


@pytest.mark.slow
def test_relu_activity_shows_a_dead_dynamic_layer():
    config = tiny_config("psm_network", "unused")
    model = registry.build_model(config, None, nnx.Rngs(0))
    rng = np.random.default_rng(0)
    batch = {
        "image": rng.integers(0, 256, (4, 120, 160, 3), dtype=np.uint8),
        "usm": rng.random((4, 120, 160), dtype=np.float32),
        "embedding": rng.normal(size=(4, 8)).astype(np.float32),
    }
    alive = registry.relu_activity(model, batch)
    assert set(alive) == {
        f"{kind}/{layer}"
        for kind in ("live_units", "live_channels")
        for layer in ("trunk_0", "trunk_1", "trunk_2", "dynamic", "head")
    }
    assert 0.1 < float(alive["live_units/dynamic"]) < 0.9
    # Biases of the embedding-generated layer far below zero: no unit fires (dying ReLU).
    bias = model.kernel_generator.bias.value
    width = config.network.dynamic_width
    model.kernel_generator.bias.value = bias.at[-width:].set(-1e3)
    dead = registry.relu_activity(model, batch)
    assert float(dead["live_units/dynamic"]) == 0.0
    assert float(dead["live_channels/dynamic"]) == 0.0
    assert float(dead["live_units/trunk_0"]) == float(alive["live_units/trunk_0"])
    assert (
        registry.relu_activity(
            registry.build_model(tiny_config("universal", "unused"), None, nnx.Rngs(0)), batch
        )
        == {}
    )


@pytest.mark.parametrize("embedding_loss", ["triplet", "supervised_contrastive"])
def test_the_encoder_logs_the_loss_it_trains_under_its_own_name(embedding_loss):
    import ml_collections

    config = ml_collections.ConfigDict(
        {"embedding_loss": embedding_loss, "margin": 0.05, "mining": "semi_hard", "temperature": 1}
    )
    embeddings = np.random.default_rng(0).normal(size=(8, 4)).astype(np.float32)
    observer = np.array([0, 0, 1, 1, 2, 2, 3, 3])
    loss, measurements = registry._embedding_loss(config)(
        lambda *inputs: embeddings, {"images": None, "psms": None}, observer
    )
    assert float(measurements[f"{embedding_loss}_loss"]) == float(loss)
    triplet_tags = [name for name in measurements if "triplet" in name]
    if embedding_loss == "supervised_contrastive":  # measured for comparison, under its own name
        assert triplet_tags and all(n.startswith("measured_triplet/") for n in triplet_tags)
