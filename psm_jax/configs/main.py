r"""The main job's config (`launch/main.py`): one sub-config per model, plus the evaluation config.

    .venv/bin/python launch/main.py                                    # the synthetic default
    .venv/bin/python launch/main.py --config=psm_jax/configs/main.py:osie_personal \
        --config.manual_dir=/path/to/osie
    .venv/bin/python launch/main.py --config.dataset=synthetic_personal_saliency/seed1 \
        --workdir=runs/seed1                                 # another generator draw
    .venv/bin/python launch/main.py --config.models.embedding.network.pooling=mean \
        --config.evaluation.usm_floor=0 --workdir=runs/mean_pooling

The argument after the file (default "synthetic_personal_saliency") is the dataset whose schedules
the models train with: the synthetic configs' defaults (`synthetic.QUICK_SYNTHETIC`), or the
"quick" option of the real datasets' configs (`experiments.QUICK_REAL`); "/tiny" gives the tests'
tiny networks. On the tiny synthetic dataset, whose 24 training images cannot supply sets of 32,
observers are embedded with the tiny encoder's m.

Fields:
  dataset, data_dir, manual_dir
              the dataset (a builder config of the same dataset may be given, e.g. another
              synthetic draw), where its records go, the release folder (datasets that need one).
              Every model's config refers to these three: set them here, not per model.
  schedules   the dataset the models' schedules were made for (the argument; not to be set).
  models      one training config per model of the registry (`psm_jax.registry.MODELS`), in the
              order the main job trains them; each documented in `psm_jax/configs/base.py`, e.g.
              `--config.models.psm_network.num_steps=600`.
  usm_source  "predicted" (default): the universal model trains first, its USMs of every image
              are written to <workdir>/predicted_usm (`psm_jax.inference.export_usms`), and the
              encoder, the PSM network, the multi-task CNN and the per-observer networks train on
              them (the "predicted" config option), as a new person's images only have those;
              "ground_truth": they train on the ground-truth USMs (the papers' tables' rows "w/
              GT USM"), and the evaluation adds the rows given the universal model's USM. Chosen
              on OSIE's validation images (docs/results_log.md, 2026-12-06): given the universal
              model's USM and enrolled on its USMs, the embedding network trained on the ground
              truth fell below that USM (CC -0.008, KLD +0.028), the one trained on predicted USMs
              beat it on CC, SIM and KLD in both protocols.
  controls    models trained after the others for the rows that isolate the personal gain (ours;
              default none: they add about as much training time again): "no_embedding" (the
              PSM network's recipe with one fixed embedding for everybody,
              `--config.embedding_input=none`), "multi_task_alike" and "per_observer_alike"
              (the multi-task CNN and the per-observer networks trained alike the PSM network:
              its log-ratio composition and KLD loss, its optimiser and as many examples per
              observer, `psm_jax.configs.experiments.trained_alike`); each in <workdir>/<name>,
              e.g. `--config.controls=no_embedding,multi_task_alike,per_observer_alike`.
  evaluation  the evaluation config (`psm_jax/configs/evaluation.py`), e.g.
              `--config.evaluation.m=16`.
"""

from __future__ import annotations

import ml_collections

from psm_jax import registry
from psm_jax.configs import (
    base,
    evaluation,
    experiments,
    individual_differences,
    osie,
    ps,
    synthetic,
)

CONFIG_FILES = {
    "synthetic_personal_saliency": synthetic,
    "osie_personal": osie,
    "personalized_saliency": ps,
    "individual_differences": individual_differences,
}
"""Dataset (without its builder config) -> the config file of its models."""

USM_SOURCES = ("predicted", "ground_truth")
"""What the personalised models train on (`usm_source`, module docstring)."""

PERSONALISED = ("embedding", "psm_network", "multi_task", "per_observer")
"""The models that read a USM (trained on the `usm_source`)."""

CONTROLS = ("no_embedding", "multi_task_alike", "per_observer_alike")
"""The models `controls` may name (module docstring), in the order they train."""

SHARED_FIELDS = ("dataset", "data_dir", "manual_dir")
"""Fields every model's config refers to (ml_collections references to the main config's)."""


def _tiny(dataset: str) -> bool:
    """Whether `dataset` is the tiny synthetic dataset or a config derived from it
    ("synthetic_personal_saliency/tiny+fold_0_of_3", `psm_jax.data.builder.config_name`)."""
    return dataset.partition("/")[2].split("+")[0] == "tiny"


def training_config(dataset: str, model: str) -> ml_collections.ConfigDict:
    """The main job's config of `model` on `dataset` ("name" or "name/builder_config")."""
    name = dataset.split("/")[0]
    if name not in CONFIG_FILES:
        raise ValueError(f"The main job knows no dataset {dataset!r}; known: {list(CONFIG_FILES)}.")
    if name == "synthetic_personal_saliency":
        config = synthetic.get_config(model + (",tiny" if _tiny(dataset) else ""))
        config.dataset = dataset  # e.g. synthetic_personal_saliency/seed1
        return config
    return CONFIG_FILES[name].get_config(model + ",quick")


def evaluation_config(dataset: str) -> ml_collections.ConfigDict:
    """The main job's evaluation settings on `dataset`."""
    config = evaluation.get_config()
    if _tiny(dataset):
        config.m = training_config(dataset, "embedding").m
    return config


def get_config(dataset: str = "synthetic_personal_saliency") -> ml_collections.ConfigDict:
    """The main job's config on `dataset` (module docstring)."""
    dataset = dataset or "synthetic_personal_saliency"
    config = ml_collections.ConfigDict()
    models = {name: training_config(dataset, name) for name in registry.MODELS}
    config.dataset = dataset
    config.data_dir = models["embedding"].data_dir
    config.manual_dir = models["embedding"].manual_dir
    config.schedules = dataset
    config.usm_source = "predicted"
    config.controls = ()
    config.models = ml_collections.ConfigDict()
    for name, model_config in models.items():
        for field in SHARED_FIELDS:
            model_config[field] = config.get_ref(field)
        config.models[name] = model_config
    config.evaluation = evaluation_config(dataset)
    return config


def control_config(
    control: str, models: dict[str, ml_collections.ConfigDict]
) -> ml_collections.ConfigDict:
    """The training config of a control (`CONTROLS`) from the trained models' configs (model name
    -> config, as the main job trains them or as their workdirs saved them)."""
    if control not in CONTROLS:
        raise ValueError(f"--config.controls: unknown control {control!r}; known: {CONTROLS}.")
    if "psm_network" not in models:
        raise ValueError(f"The {control} control is built on the PSM network's config: none given.")
    psm_network = models["psm_network"]
    if control == "no_embedding":
        config = ml_collections.ConfigDict(psm_network.to_dict())
        config.embedding_input = "none"
        config.encoder_workdir = ""
        return config
    model = control.removesuffix("_alike")
    if model not in models:
        raise ValueError(f"The {control} control needs the {model} model's config: none given.")
    return experiments.trained_alike(models[model], psm_network)


def controls(config: ml_collections.ConfigDict) -> tuple[str, ...]:
    """`config.controls` as a tuple in `CONTROLS` order (a comma-separated string is accepted,
    as a command line gives it); a ValueError naming the flag for an unknown one."""
    value = config.get("controls", ())
    given = [value] if isinstance(value, str) else list(value)
    # ml_collections gives `--config.controls=a,b` as the tuple ("a,b",).
    names = [name.strip() for item in given for name in str(item).split(",") if name.strip()]
    unknown = sorted(set(names) - set(CONTROLS))
    if unknown:
        raise ValueError(f"--config.controls: unknown {unknown}; known: {', '.join(CONTROLS)}.")
    return tuple(name for name in CONTROLS if name in names)


def family(dataset: str) -> str:
    """The dataset without its builder config, "/tiny" kept (it has its own networks)."""
    name = dataset.split("/")[0]
    return name + "/tiny" if _tiny(dataset) else name


def check(config: ml_collections.ConfigDict) -> None:
    """A ValueError naming the `--config.` field when the main config cannot run: another dataset
    family than its schedules were made for, a model config or network field that its model
    does not accept, or an evaluation setting out of range. Called before anything trains."""
    if family(config.dataset) != family(config.schedules):
        raise ValueError(
            f"--config.dataset={config.dataset}: the models' schedules were made for "
            f"{config.schedules}; pass --config=psm_jax/configs/main.py:{config.dataset} instead."
        )
    unknown = set(config.models) - set(registry.MODELS)
    if unknown:
        raise ValueError(f"--config.models: unknown models {sorted(unknown)}.")
    if config.usm_source not in USM_SOURCES:
        raise ValueError(f"--config.usm_source={config.usm_source!r}: one of {USM_SOURCES}.")
    if config.usm_source == "predicted" and "universal" not in config.models:
        raise ValueError(
            "--config.usm_source=predicted needs the universal model (config.models.universal); "
            "or train on the ground truth: --config.usm_source=ground_truth."
        )
    names = controls(config)
    if names and "psm_network" not in config.models:
        raise ValueError("--config.controls: the controls are built on the PSM network's config.")
    for name in names:
        model = name.removesuffix("_alike")
        if model != "no_embedding" and model not in config.models:
            raise ValueError(f"--config.controls={name} needs --config.models.{model}.")
    for name, model_config in config.models.items():
        try:
            registry.get(name).architecture(model_config)  # unknown or bad network fields
            registry.get(name).loss(model_config)
            base.check_numbers(model_config)
        except (KeyError, TypeError, ValueError) as error:
            raise ValueError(f"--config.models.{name}: {error}") from error
