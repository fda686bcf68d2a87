r"""Prepares a psm-jax TFDS dataset without TensorFlow (array_record), and prints its summary.

.venv/bin/python launch/build_dataset.py --dataset=synthetic_personal_saliency/tiny
.venv/bin/python launch/build_dataset.py --dataset=osie_personal \
    --manual_dir=/path/to/osie

A release in a known layout with other sizes (e.g. OSIE's format with 12 observers at 1024x768):
--observer_split=6,3,3 --sigma_px=31 build the config "default+observers_6_3_3+sigma_31", whose
full name (printed) is what --dataset of the other launchers takes. --observer_fold=2/5 builds
fold 2 of 5-fold cross-validation over observers, "default+fold_2_of_5" (studies/observer_folds.py
runs the main job on every fold).
"""

import runner

from absl import app, flags

from psm_jax.data import builder as builder_lib
from psm_jax.data import datasets

flags.adopt_module_key_flags(runner)  # --verbose shows in --help

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
_OBSERVER_SPLIT = flags.DEFINE_list(
    "observer_split",
    None,
    "train,validation,test observer counts (default: the config's, e.g. OSIE 9,3,3).",
)
_OBSERVER_FOLD = flags.DEFINE_string(
    "observer_fold",
    None,
    "k/K: fold k (0 .. K-1) of K-fold cross-validation over observers (test chunk k, validation "
    "chunk k+1, training the rest), e.g. 2/5; instead of --observer_split.",
)
_SIGMA_PX = flags.DEFINE_float(
    "sigma_px",
    None,
    "Gaussian sigma of the PSMs in native image pixels (default: the release's; OSIE 24 px at "
    "800x600, about 1 degree: scale it with the image width for another resolution).",
)


def dataset_name(
    dataset: str,
    observer_split: list[str] | None,
    sigma_px: float | None,
    observer_fold: str | None = None,
) -> str:
    """--dataset with the config derived from --observer_split or --observer_fold, and
    --sigma_px."""
    if observer_split is None and sigma_px is None and observer_fold is None:
        return dataset
    if observer_split is not None and observer_fold is not None:
        raise app.UsageError("Give --observer_fold or --observer_split, not both.")
    name, _, config = dataset.partition("/")
    try:
        split = None if observer_split is None else tuple(int(c) for c in observer_split)
    except ValueError:
        raise app.UsageError(
            f"--observer_split={','.join(observer_split)}: expected three integers."
        ) from None
    fold = None
    if observer_fold is not None:
        try:
            fold = tuple(int(c) for c in observer_fold.split("/"))
            if len(fold) != 2:
                raise ValueError
        except ValueError:
            raise app.UsageError(
                f"--observer_fold={observer_fold}: expected k/K, e.g. 2/5."
            ) from None
    try:
        derived = builder_lib.config_name(config or "default", split, sigma_px, fold)
    except ValueError as error:
        raise app.UsageError(str(error)) from None
    return f"{name}/{derived}"


def main(argv):
    del argv
    name = dataset_name(
        _DATASET.value, _OBSERVER_SPLIT.value, _SIGMA_PX.value, _OBSERVER_FOLD.value
    )
    builder = datasets.build_dataset(
        name,
        data_dir=_DATA_DIR.value,
        manual_dir=_MANUAL_DIR.value,
        file_format=_FILE_FORMAT.value,
        overwrite=_OVERWRITE.value,
    )
    print(datasets.summarise(builder))
    if name != _DATASET.value:
        print(f"Pass --dataset={name} to the other launchers.")


if __name__ == "__main__":
    runner.run(main)
