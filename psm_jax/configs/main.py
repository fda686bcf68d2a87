"""The main job's configs (`launch/main.py`): which config file serves which dataset.

    python launch/main.py                                    # the synthetic default
    python launch/main.py --dataset=osie_personal --manual_dir=../shared/datasets/osie

Every model trains with its dataset's quick schedule: the synthetic configs' defaults
(`synthetic.QUICK_SYNTHETIC`), the "quick" option of the real datasets' configs
(`experiments.QUICK_REAL`). The evaluation takes `evaluation.get_config()`; on the tiny synthetic
dataset, whose 24 training images cannot supply sets of 32, observers are embedded with the tiny
encoder's m.

Options (ours) reach a stage's config as overrides, `model:key=value,key=value`
(`parse_override`), e.g. `--override=embedding:network.input_map=psm,network.pooling=mean` on
`launch/main.py`.
"""

from __future__ import annotations

import ast
import re

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


def parse_override(text: str) -> tuple[str, dict]:
    """`"name:key=value,key=value"` -> (name, {key: value}); values are Python literals where they
    parse as one (`0.1`, `True`, `(16, 32)`), strings otherwise; keys may be dotted
    (`network.input_map`)."""
    name, separator, body = text.partition(":")
    if not separator or not name:
        raise ValueError(f"An override is 'name:key=value,...', got {text!r}.")
    fields = {}
    for item in filter(None, re.split(r",(?=\s*[\w.]+=)", body)):  # (8, 16) stays one value
        key, equals, value = item.partition("=")
        key = key.strip()
        if not equals or not key:
            raise ValueError(f"{item!r} in the override {text!r} is not key=value.")
        fields[key] = parse_value(value)
    return name, fields


def parse_value(text: str):
    """A config value given as text: a Python literal where it parses as one (`0.1`, `True`,
    `(16, 32)`), the string otherwise."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def parse_overrides(texts: list[str]) -> dict[str, dict]:
    """Several `parse_override` texts -> {name: {key: value}}, merged per name in order."""
    merged: dict[str, dict] = {}
    for text in texts:
        name, fields = parse_override(text)
        merged.setdefault(name, {}).update(fields)
    return merged


def apply_overrides(config: ml_collections.ConfigDict, fields: dict) -> None:
    """Sets each (dotted) key of `fields` in `config`. A key the config lacks is a KeyError that
    names it (a typo must not train the default silently), except a field of `network`, which
    configs set only where they differ from the architecture's defaults: the architecture's
    dataclass rejects unknown ones (`psm_jax.registry.ModelSpec.architecture`)."""
    for key, value in fields.items():
        *path, last = key.split(".")
        target = config
        for part in path:
            if part not in target:
                raise KeyError(f"The {config.get('model', '')} config has no {key!r}.")
            target = target[part]
        if last not in target and path != ["network"]:
            raise KeyError(f"The {config.get('model', '')} config has no {key!r}.")
        target[last] = value
