"""Config files: every dataset x model x option parses; the main job's table; evaluation."""

import itertools

import numpy as np
import pytest

from psm_jax import registry
from psm_jax.configs import (
    base,
    cd,
    evaluation,
    experiments,
    individual_differences,
    osie,
    ps,
    synthetic,
)
from psm_jax.configs import main as main_configs
from psm_jax.data import datasets, pipeline


@pytest.mark.parametrize("module", [synthetic, osie, ps, individual_differences])
@pytest.mark.parametrize("model", registry.MODELS)
@pytest.mark.parametrize("options", ["", ",predicted"])
def test_every_config_parses_and_builds_its_model(module, model, options):
    config = module.get_config(model + options)
    assert config.model == model
    assert config.dataset
    if "predicted" in options:
        assert config.usm == "external" and config.external_usm_dir
    architecture = registry.get(model).architecture(config)  # the network fields are valid
    assert architecture is not None


def test_the_protocol_is_an_evaluation_setting_not_a_training_option():
    with pytest.raises(ValueError, match="launch/evaluate.py --protocol=open"):
        osie.get_config("psm_network,open")
    with pytest.raises(ValueError, match="launch/evaluate.py --protocol=open"):
        synthetic.get_config("psm_network,open")
    config = evaluation.get_config()
    assert tuple(config.protocols) == ("closed", "open") and config.usm_floor == 0.3
    assert config.m == 32


def test_the_main_job_table_maps_every_dataset_to_its_quick_configs():
    assert main_configs.training_config("osie_personal", "psm_network").num_steps == 1200
    assert main_configs.training_config("osie_personal", "universal").num_steps == 600
    seed1 = main_configs.training_config("synthetic_personal_saliency/seed1", "embedding")
    assert seed1.dataset == "synthetic_personal_saliency/seed1" and seed1.num_steps == 200
    tiny = main_configs.training_config("synthetic_personal_saliency/tiny", "embedding")
    assert tiny.num_steps == 6 and main_configs.evaluation_config(tiny.dataset).m == tiny.m
    with pytest.raises(ValueError, match="knows no dataset 'salicon'"):
        main_configs.training_config("salicon", "embedding")


@pytest.mark.parametrize(
    "config_for", [synthetic.get_config, lambda model: osie.get_config(model + ",quick")]
)
def test_quick_schedules_train_discrepancy_models_with_adam_and_embed_with_m_32(config_for):
    for model in ("psm_network", "multi_task", "per_observer"):
        config = config_for(model)
        assert (config.optimizer, config.learning_rate, config.loss_reduction) == (
            "adam",
            1e-3,
            "mean",
        )
    # The PSM network's embedding pool is drawn at the evaluation's m, not the encoder's.
    assert config_for("psm_network").m == 32 and config_for("embedding").m == 8
    assert synthetic.get_config("psm_network,paper").optimizer == "sgd"
    # The encoder's quick recipe: the contrastive loss (the triplet one collapsed, RESULTS.md).
    assert config_for("embedding").embedding_loss == "supervised_contrastive"
    assert synthetic.get_config("embedding,paper").embedding_loss == "triplet"
    # ... reading the departure from the USM and pooling under it (the papers': PSM, average).
    quick = config_for("embedding").network
    assert (quick.input_map, quick.pooling) == ("discrepancy", "map")
    assert "pooling" not in synthetic.get_config("embedding,paper").network
    tiny = synthetic.get_config("embedding,tiny").network  # the tests' encoder is the quick one
    assert (tiny.input_map, tiny.pooling, tiny.widths) == ("discrepancy", "map", (4, 8, 8, 8))


def test_paper_settings_are_the_defaults():
    embedding = ps.get_config("embedding")
    assert (embedding.optimizer, embedding.learning_rate, embedding.batch_size) == (
        "adam",
        1e-3,
        256,
    )
    assert embedding.margin == 0.05 and embedding.mining == "semi_hard"
    assert embedding.embedding_loss == "triplet"
    network = ps.get_config("psm_network")
    assert (network.learning_rate, network.momentum, network.weight_decay) == (0.02, 0.9, 5e-4)
    assert network.batch_size == 32 and network.lr_halving_epochs == 25
    assert network.embedding_pool_size == 100
    xu = ps.get_config("multi_task")
    assert (xu.learning_rate, xu.batch_size, xu.num_steps, xu.flip) == (3e-4, 40, 40_000, True)


def test_unknown_options_and_models_are_errors():
    with pytest.raises(ValueError, match="Unknown config options"):
        experiments.apply_options(osie.get_config("embedding"), {"fast"})
    with pytest.raises(ValueError, match="Unknown model 'deepgaze'"):
        base.get_config("deepgaze")
    with pytest.raises(ValueError, match="embedding encoder only"):
        cd.get_config("multi_task")
    config = synthetic.get_config("embedding")
    config.embedding_loss = "contrastive"
    with pytest.raises(ValueError, match="embedding_loss must be one of"):
        registry.get("embedding").loss(config)


def test_combined_dataset_keeps_observers_of_each_dataset_distinct(tmp_path):
    data_dir = str(tmp_path)
    datasets.build_dataset("synthetic_personal_saliency/tiny", data_dir=data_dir)
    part = pipeline.open_split("synthetic_personal_saliency/tiny", "train", data_dir)
    stream = pipeline.combined_embedding_dataset(
        [part, part], batch_size=8, m=3, sets_per_observer=1
    )
    labels = np.concatenate([batch["observer"] for batch in itertools.islice(stream, 6)])
    observers = len(part[1].observers("train"))
    assert labels.min() >= 0 and labels.max() < 2 * observers
    assert (labels < observers).any() and (labels >= observers).any()


def test_a_workdir_saved_before_a_config_field_existed_still_loads(tmp_path):
    """Fields added later (here composed_kld_weight and init_from) get their defaults, which keep
    the old behaviour; stored values win."""
    import json

    from psm_jax.train import checkpoint

    stored = synthetic.get_config("psm_network").to_dict()
    del stored["composed_kld_weight"], stored["init_from"]
    stored["learning_rate"] = 0.123
    (tmp_path / "config.json").write_text(json.dumps(stored))
    config = checkpoint.load_config(tmp_path)
    assert config.composed_kld_weight == 0.0 and config.init_from == ""
    assert config.learning_rate == 0.123 and config.network.to_dict() == stored["network"]


def test_overrides_parse_literals_and_set_dotted_keys():
    name, fields = main_configs.parse_override(
        "embedding:network.input_map=discrepancy,temperature=0.2,network.widths=(8, 16)"
    )
    assert name == "embedding"
    assert fields == {
        "network.input_map": "discrepancy",
        "temperature": 0.2,
        "network.widths": (8, 16),
    }
    merged = main_configs.parse_overrides(["embedding:m=4", "embedding:m=8,lr=0.1", "universal:"])
    assert merged == {"embedding": {"m": 8, "lr": 0.1}, "universal": {}}
    for bad in ("embedding", ":m=4", "embedding:m"):
        with pytest.raises(ValueError, match="override"):
            main_configs.parse_override(bad)

    config = main_configs.training_config("synthetic_personal_saliency", "embedding")
    main_configs.apply_overrides(config, {"network.input_map": "discrepancy", "m": 4})
    assert config.network.input_map == "discrepancy" and config.m == 4
    assert registry.get("embedding").architecture(config).input_map == "discrepancy"
    with pytest.raises(KeyError, match="'mm'"):  # a typo must not train the default silently
        main_configs.apply_overrides(config, {"mm": 4})
    with pytest.raises(KeyError, match="'netwrk.input_map'"):
        main_configs.apply_overrides(config, {"netwrk.input_map": "psm"})


def test_the_main_job_rejects_a_bad_override_before_it_trains():
    from psm_jax import main_job

    configs = main_job._training_configs(
        "synthetic_personal_saliency",
        "/tmp/data",
        None,
        {"embedding": {"network.input_map": "discrepancy"}},
    )
    assert configs["embedding"].network.input_map == "discrepancy"
    assert "input_map" not in configs["psm_network"].network  # the others keep their schedule
    with pytest.raises(ValueError, match="unknown models"):
        main_job._training_configs(
            "synthetic_personal_saliency", "/tmp/data", None, {"encoder": {}}
        )
    with pytest.raises(ValueError, match="Bad override of embedding"):  # not an encoder field
        main_job._training_configs(
            "synthetic_personal_saliency",
            "/tmp/data",
            None,
            {"embedding": {"network.input_mapp": 1}},
        )
    with pytest.raises(ValueError, match="Bad override of embedding"):  # a bad value
        main_job._training_configs(
            "synthetic_personal_saliency", "/tmp/data", None, {"embedding": {"embedding_loss": "x"}}
        )
