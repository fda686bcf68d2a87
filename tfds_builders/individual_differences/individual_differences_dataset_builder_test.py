"""TFDS\'s own builder test of individual_differences on dummy_data/.

Needs TensorFlow (the `test` extra installs it)."""

import pytest

pytest.importorskip("tensorflow")

import tensorflow_datasets as tfds  # noqa: E402

from tfds_builders.individual_differences import individual_differences_dataset_builder  # noqa: E402


class IndividualDifferencesTest(tfds.testing.DatasetBuilderTestCase):
    DATASET_CLASS = individual_differences_dataset_builder.Builder
    SPLITS = {"train": 8, "validation": 1, "test": 1}


if __name__ == "__main__":
    tfds.testing.test_main()
