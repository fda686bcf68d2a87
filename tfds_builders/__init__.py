"""TFDS builders of psm-jax, one folder each in TFDS's own conventions.

Importing this package registers the four datasets with TFDS, so that `tfds.builder(name)` and
`tfds.data_source(name, ...)` find them:

    osie_personal                 OSIE (15 observers x 700 images), manual download
    personalized_saliency         PS (Xu et al. 2017, 30 participants x 1,606 images), manual
    individual_differences        ID (de Haas et al. 2019) or any long-format fixation table
    synthetic_personal_saliency   generated, no download (configs tiny and default)
"""

from psm_jax.data.datasets import DATASETS
from tfds_builders.individual_differences import individual_differences_dataset_builder
from tfds_builders.osie_personal import osie_personal_dataset_builder
from tfds_builders.personalized_saliency import personalized_saliency_dataset_builder
from tfds_builders.synthetic_personal_saliency import synthetic_personal_saliency_dataset_builder

__all__ = [
    "DATASETS",
    "individual_differences_dataset_builder",
    "osie_personal_dataset_builder",
    "personalized_saliency_dataset_builder",
    "synthetic_personal_saliency_dataset_builder",
]
