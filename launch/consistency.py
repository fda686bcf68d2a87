"""Inter-observer consistency of a dataset: mean pairwise AUC-Judd (Xu et al. 2017, Table 1).

.venv/bin/python launch/consistency.py --dataset=osie_personal --manual_dir=/path/to/osie
.venv/bin/python launch/consistency.py --dataset=synthetic_personal_saliency/tiny
"""

import time

import runner

from absl import flags

from psm_jax import analysis
from psm_jax.data import datasets

flags.adopt_module_key_flags(runner)  # --verbose shows in --help

_DATASET = flags.DEFINE_string("dataset", None, "Dataset[/config].", required=True)
_MANUAL_DIR = flags.DEFINE_string("manual_dir", None, "Release folder (OSIE, PS, ID).")
_DATA_DIR = flags.DEFINE_string("data_dir", datasets.DEFAULT_DATA_DIR, "Where records go.")
_VIEWING = flags.DEFINE_integer("viewing", None, "Score only this repeated viewing (0-based).")


def main(argv):
    del argv
    start = time.perf_counter()
    datasets.build_dataset(_DATASET.value, data_dir=_DATA_DIR.value, manual_dir=_MANUAL_DIR.value)
    result = analysis.dataset_consistency(
        _DATASET.value, data_dir=_DATA_DIR.value, viewing=_VIEWING.value
    )
    viewing = "all" if result.viewing is None else result.viewing
    print(
        f"{_DATASET.value}: inter-observer consistency (mean pairwise AUC-Judd) = "
        f"{100 * result.mean_auc_judd:.2f} over {result.num_images} images on a "
        f"{result.grid[0]}x{result.grid[1]} grid (viewing: {viewing}; "
        f"{time.perf_counter() - start:.0f} s)"
    )


if __name__ == "__main__":
    runner.run(main)
