"""Variants of a config for the studies that train several side by side (encoder_study.py,
psm_network_study.py): `--variants='name:path=value,path=value'`, each path a field of the model's
config as `launch/train.py` takes it after `--config.` (e.g. `network.pooling=mean`).

Values are Python literals where they parse as one (`0.1`, `True`, `(16, 32)`), strings otherwise;
a path the config does not have is an error (a typo must not train the default silently).
"""

from __future__ import annotations

import ast
import re

import ml_collections


def parse(text: str) -> tuple[str, dict]:
    """`"name:path=value,path=value"` -> (name, {path: value})."""
    name, separator, body = text.partition(":")
    if not separator or not name:
        raise ValueError(f"A variant is 'name:path=value,...', got {text!r}.")
    fields = {}
    for item in filter(None, re.split(r",(?=\s*[\w.]+=)", body)):  # (8, 16) stays one value
        path, equals, value = item.partition("=")
        if not equals or not path.strip():
            raise ValueError(f"{item!r} in the variant {text!r} is not path=value.")
        try:
            fields[path.strip()] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            fields[path.strip()] = value
    return name, fields


def apply(config: ml_collections.ConfigDict, fields: dict) -> ml_collections.ConfigDict:
    """Sets each path of `fields` in `config`; a KeyError naming a path the config lacks."""
    for path, value in fields.items():
        *parents, last = path.split(".")
        target = config
        for part in parents:
            if part not in target:
                raise KeyError(f"The {config.get('model', '')} config has no {path!r}.")
            target = target[part]
        if last not in target:
            raise KeyError(f"The {config.get('model', '')} config has no {path!r}.")
        target[last] = value
    return config
