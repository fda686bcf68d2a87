"""TFDS\'s own builder test of osie_personal on dummy_data/.

Needs TensorFlow (the `test` extra installs it)."""

import pytest

pytest.importorskip("tensorflow")

import tensorflow_datasets as tfds  # noqa: E402

from tfds_builders.osie_personal import osie_personal_dataset_builder  # noqa: E402


class OsiePersonalTest(tfds.testing.DatasetBuilderTestCase):
    DATASET_CLASS = osie_personal_dataset_builder.Builder
    SPLITS = {"train": 8, "validation": 1, "test": 1}


if __name__ == "__main__":
    tfds.testing.test_main()
