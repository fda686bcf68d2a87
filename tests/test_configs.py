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

TINY = "synthetic_personal_saliency/tiny"


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
    with pytest.raises(ValueError, match="the evaluation config's protocols"):
        osie.get_config("psm_network,open")
    with pytest.raises(ValueError, match="launch/evaluate.py --config.protocols"):
        synthetic.get_config("psm_network,open")
    config = evaluation.get_config()
    assert tuple(config.protocols) == ("closed", "open") and config.usm_floor == 0.3
    assert config.m == 32


def test_the_main_job_table_maps_every_dataset_to_its_quick_configs():
    assert main_configs.training_config("osie_personal", "psm_network").num_steps == 1200
    universal = main_configs.training_config("osie_personal", "universal")
    assert universal.num_steps == 1500 and universal.network.backbone == "efficientnet_lite0"
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
    assert synthetic.get_config("embedding,paper").network.pooling == "mean"  # the papers'
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
    assert config.learning_rate == 0.123 and config.network.to_dict() == json.loads(
        json.dumps(stored["network"])
    )


def test_every_config_file_fills_the_network_with_every_architecture_field():
    """So that `--config.network.<field>` can set any of them (ml_collections' flags set only
    fields a config has); the values are the architecture's defaults where the file sets none."""
    import dataclasses

    for model in registry.MODELS:
        config = synthetic.get_config(model)
        architecture = registry.get(model).architecture(config)
        assert set(config.network) == {f.name for f in dataclasses.fields(architecture)}, model
    # The per-observer networks switch architecture on the fields of the other left at defaults.
    config = synthetic.get_config("per_observer")
    assert config.architecture == "strohm"
    config.architecture = "xu"
    assert registry.get("per_observer").architecture(config).share_trunk is False
    config.network.dynamic_width = 7  # a strohm field set: an error under xu, not ignored
    with pytest.raises(TypeError, match="dynamic_width"):
        registry.get("per_observer").architecture(config)


def test_the_main_config_holds_one_config_per_model_and_the_evaluation():
    config = main_configs.get_config()
    assert set(config.models) == set(registry.MODELS)
    assert config.models.psm_network.num_steps == 1200 and config.evaluation.m == 32
    # The dataset and where it lives are set once: every model's config follows.
    config.dataset = "synthetic_personal_saliency/seed1"
    config.data_dir = "/tmp/elsewhere"
    for model_config in config.models.values():
        assert model_config.dataset == "synthetic_personal_saliency/seed1"
        assert model_config.data_dir == "/tmp/elsewhere"
    main_configs.check(config)
    osie_config = main_configs.get_config("osie_personal")
    osie_config.manual_dir = "/data/osie"
    assert osie_config.models.embedding.manual_dir == "/data/osie"
    tiny = main_configs.get_config(TINY)
    assert tiny.evaluation.m == tiny.models.embedding.m == 3


def test_the_main_config_is_checked_before_anything_trains():
    config = main_configs.get_config()
    config.dataset = "osie_personal"  # the synthetic schedules on another dataset
    with pytest.raises(ValueError, match="main.py:osie_personal"):
        main_configs.check(config)
    config = main_configs.get_config()
    config.models.embedding.network.input_map = "psmm"
    with pytest.raises(ValueError, match="--config.models.embedding: input_map must be one of"):
        main_configs.check(config)
    config = main_configs.get_config()
    config.models.embedding.embedding_loss = "x"
    with pytest.raises(ValueError, match="--config.models.embedding: --config.embedding_loss"):
        main_configs.check(config)
    config = main_configs.get_config()
    assert config.usm_source == "predicted"
    config.usm_source = "ground truth"
    with pytest.raises(ValueError, match="--config.usm_source='ground truth': one of"):
        main_configs.check(config)
    config = main_configs.get_config()
    del config.models["universal"]
    with pytest.raises(ValueError, match="usm_source=predicted needs the universal model"):
        main_configs.check(config)
    config.usm_source = "ground_truth"
    main_configs.check(config)
    from psm_jax.evaluation import evaluators

    evaluation = main_configs.get_config().evaluation
    evaluation.discrepancy_weight = 3.0
    with pytest.raises(ValueError, match="discrepancy_weight must be in"):
        evaluators.check(evaluation)
    evaluation = main_configs.get_config().evaluation
    evaluation.evals.tabels = {}
    with pytest.raises(ValueError, match="unknown evaluators \\['tabels'\\]"):
        evaluators.check(evaluation)


def test_a_derived_dataset_config_keeps_its_family_and_the_tiny_networks():
    """A fold of the tiny dataset ("tiny+fold_0_of_3") is still the tiny dataset: its schedules
    and networks are the tiny ones, and the main config on it passes the check."""
    assert main_configs.family(TINY + "+fold_0_of_3") == TINY
    assert main_configs.family("osie_personal/default+fold_2_of_5") == "osie_personal"
    config = main_configs.get_config(TINY)
    config.dataset = TINY + "+fold_0_of_3"
    main_configs.check(config)
    fold = main_configs.get_config(TINY + "+fold_1_of_3")
    assert fold.models.embedding.network.widths == config.models.embedding.network.widths
    assert fold.evaluation.m == config.evaluation.m == 3
