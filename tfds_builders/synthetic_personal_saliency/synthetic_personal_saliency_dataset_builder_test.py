"""TFDS's own builder test of synthetic_personal_saliency, config tiny (needs TensorFlow)."""

import pytest

pytest.importorskip("tensorflow")

import tensorflow_datasets as tfds  # noqa: E402

from tfds_builders.synthetic_personal_saliency import (  # noqa: E402
    synthetic_personal_saliency_dataset_builder,
)


class SyntheticPersonalSaliencyTest(tfds.testing.DatasetBuilderTestCase):
    DATASET_CLASS = synthetic_personal_saliency_dataset_builder.Builder
    BUILDER_CONFIG_NAMES_TO_TEST = ["tiny"]
    SPLITS = {"train": 24, "validation": 3, "test": 3}


if __name__ == "__main__":
    tfds.testing.test_main()
