"""The main job's configs (`launch/main.py`): which config file serves which dataset.

    python launch/main.py                                    # the synthetic default
    python launch/main.py --dataset=osie_personal --manual_dir=../shared/datasets/osie

Every model trains with its dataset's quick schedule: the synthetic configs' defaults
(`synthetic.QUICK_SYNTHETIC`), the "quick" option of the real datasets' configs
(`experiments.QUICK_REAL`). The evaluation takes `evaluation.get_config()`; on the tiny synthetic
dataset, whose 24 training images cannot supply sets of 32, observers are embedded with the tiny
encoder's m.
"""

from __future__ import annotations

import ml_collections

from psm_jax.configs import evaluation, individual_differences, osie, ps, synthetic

CONFIG_FILES = {
    "synthetic_personal_saliency": synthetic,
    "osie_personal": osie,
    "personalized_saliency": ps,
    "individual_differences": individual_differences,
}
"""Dataset (without its builder config) -> the config file of its models."""


def training_config(dataset: str, model: str) -> ml_collections.ConfigDict:
    """The main job's config of `model` on `dataset` ("name" or "name/builder_config")."""
    name = dataset.split("/")[0]
    if name not in CONFIG_FILES:
        raise ValueError(f"The main job knows no dataset {dataset!r}; known: {list(CONFIG_FILES)}.")
    if name == "synthetic_personal_saliency":
        config = synthetic.get_config(model + (",tiny" if dataset.endswith("/tiny") else ""))
        config.dataset = dataset  # e.g. synthetic_personal_saliency/seed1
        return config
    return CONFIG_FILES[name].get_config(model + ",quick")


def evaluation_config(dataset: str) -> ml_collections.ConfigDict:
    """The main job's evaluation settings on `dataset`."""
    config = evaluation.get_config()
    if dataset.endswith("/tiny"):
        config.m = training_config(dataset, "embedding").m
    return config
