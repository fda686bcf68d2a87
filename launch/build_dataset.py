"""Prepares a psm-jax TFDS dataset without TensorFlow (array_record), and prints its summary.

python launch/build_dataset.py --dataset=synthetic_personal_saliency/tiny
python launch/build_dataset.py --dataset=osie_personal --manual_dir=../shared/datasets/osie
"""

from absl import app, flags

import tfds_builders  # noqa: F401  (registers the datasets with TFDS)
from psm_jax.data import datasets

_DATASET = flags.DEFINE_string(
    "dataset",
    None,
    "osie_personal, personalized_saliency, individual_differences or "
    "synthetic_personal_saliency, optionally with /config (e.g. /tiny).",
    required=True,
)
_MANUAL_DIR = flags.DEFINE_string("manual_dir", None, "Folder of the downloaded release.")
_DATA_DIR = flags.DEFINE_string("data_dir", datasets.DEFAULT_DATA_DIR, "Where records go.")
_FILE_FORMAT = flags.DEFINE_enum(
    "file_format", "array_record", ["array_record", "tfrecord"], "tfrecord needs TensorFlow."
)
_OVERWRITE = flags.DEFINE_bool("overwrite", False, "Rebuild even if already prepared.")


def main(argv):
    del argv
    builder = datasets.build_dataset(
        _DATASET.value,
        data_dir=_DATA_DIR.value,
        manual_dir=_MANUAL_DIR.value,
        file_format=_FILE_FORMAT.value,
        overwrite=_OVERWRITE.value,
    )
    print(datasets.summarise(builder))


if __name__ == "__main__":
    app.run(main)
