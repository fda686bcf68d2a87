"""The main job (README quick start): build, train every model, evaluate, write the report.

python launch/main.py
python launch/main.py --dataset=osie_personal --manual_dir=../shared/datasets/osie
python launch/main.py --dataset=synthetic_personal_saliency/tiny --workdir=/tmp/tiny_run
"""

from absl import app, flags

from psm_jax import evaluate, main_job
from psm_jax.data import datasets

_DATASET = flags.DEFINE_string("dataset", main_job.DEFAULT_DATASET, "Dataset[/config] to run on.")
_MANUAL_DIR = flags.DEFINE_string("manual_dir", None, "Release folder (OSIE, PS, ID).")
_DATA_DIR = flags.DEFINE_string("data_dir", datasets.DEFAULT_DATA_DIR, "Where records go.")
_WORKDIR = flags.DEFINE_string("workdir", None, "Where runs go (default runs/<dataset>).")
_M = flags.DEFINE_integer("m", None, "Pairs per evaluated observer's embedding.")
_USM_FLOOR = evaluate.define_usm_floor_flag()


def main(argv):
    del argv
    main_job.run(
        _DATASET.value,
        data_dir=_DATA_DIR.value,
        manual_dir=_MANUAL_DIR.value,
        workdir=_WORKDIR.value,
        m=_M.value,
        usm_floor=_USM_FLOOR.value,
    )


if __name__ == "__main__":
    app.run(main)
