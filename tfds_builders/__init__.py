"""TFDS builders of psm-jax, one folder each in TFDS's own conventions.

`register()` registers the four datasets with TFDS, so that `tfds.builder(name)` and
`tfds.data_source(name, ...)` find them (importing this package registers nothing: the launchers,
the benchmarks and the tests call it):

    osie_personal                 OSIE (15 observers x 700 images), manual download
    personalized_saliency         PS (Xu et al. 2017, 30 participants x 1,606 images), manual
    individual_differences        ID (de Haas et al. 2019) or any long-format fixation table
    synthetic_personal_saliency   generated, no download (configs tiny and default)
"""

from __future__ import annotations

import importlib

from psm_jax.data.datasets import DATASETS

__all__ = ["DATASETS", "register"]


def register() -> tuple[str, ...]:
    """Registers every psm-jax dataset's builder with TFDS (TFDS registers a builder class when
    its module is imported; doing it again is harmless); returns their names."""
    for name in DATASETS:
        importlib.import_module(f"tfds_builders.{name}.{name}_dataset_builder")
    return DATASETS
