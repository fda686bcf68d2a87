"""The main job (README quick start): build, train every model, evaluate, write the report.

python launch/main.py
python launch/main.py --dataset=osie_personal --manual_dir=../shared/datasets/osie
python launch/main.py --dataset=synthetic_personal_saliency/tiny --workdir=/tmp/tiny_run
python launch/main.py --override=embedding:network.input_map=psm,network.pooling=mean \
    --workdir=runs/papers_encoder
"""

import runner
import shared_flags
from absl import flags

import tfds_builders  # noqa: F401  (registers the datasets with TFDS)
from psm_jax import main_job
from psm_jax.configs import main as main_configs
from psm_jax.data import datasets

flags.adopt_module_key_flags(runner)  # --verbose shows in --help

flags.adopt_module_key_flags(shared_flags)
_DATASET = flags.DEFINE_string("dataset", main_job.DEFAULT_DATASET, "Dataset[/config] to run on.")
_MANUAL_DIR = flags.DEFINE_string("manual_dir", None, "Release folder (OSIE, PS, ID).")
_DATA_DIR = flags.DEFINE_string("data_dir", datasets.DEFAULT_DATA_DIR, "Where records go.")
_WORKDIR = flags.DEFINE_string("workdir", None, "Where runs go (default runs/<dataset>).")
_M = flags.DEFINE_integer(
    "m", None, "Pairs per evaluated observer's embedding (default: psm_jax/configs/evaluation.py)."
)


_OVERRIDE = flags.DEFINE_multi_string(
    "override",
    [],
    "model:key=value,... options on top of a model's quick schedule, e.g. "
    "embedding:network.pooling=mean (repeatable; see psm_jax/configs).",
)


def main(argv):
    del argv
    evaluation = main_configs.evaluation_config(_DATASET.value)
    evaluation.usm_floor = shared_flags.USM_FLOOR.value
    evaluation.discrepancy_weight = shared_flags.DISCREPANCY_WEIGHT.value
    if _M.value:
        evaluation.m = _M.value
    try:
        overrides = main_configs.parse_overrides(_OVERRIDE.value)
    except ValueError as error:
        raise ValueError(f"--override: {error}") from error
    main_job.run(
        _DATASET.value,
        data_dir=_DATA_DIR.value,
        manual_dir=_MANUAL_DIR.value,
        workdir=_WORKDIR.value,
        evaluation=evaluation,
        overrides=overrides,
    )


if __name__ == "__main__":
    runner.run(main)
