r"""The main job (README quick start): build, train every model, evaluate, write the report.

.venv/bin/python launch/main.py
.venv/bin/python launch/main.py --config=psm_jax/configs/main.py:osie_personal \
    --config.manual_dir=/path/to/osie
.venv/bin/python launch/main.py --config=psm_jax/configs/main.py:synthetic_personal_saliency/tiny \
    --workdir=/tmp/tiny_run
.venv/bin/python launch/main.py --config.models.embedding.network.input_map=psm \
    --config.models.embedding.network.pooling=mean --workdir=runs/papers_encoder

Every field of psm_jax/configs/main.py (the dataset, one config per model, the evaluation) is set
with `--config.<path>=<value>`; the config is checked before anything is built or trained.
"""

from pathlib import Path

import runner

from absl import flags
from ml_collections import config_flags

from psm_jax import main_job

flags.adopt_module_key_flags(runner)  # --verbose shows in --help

_CONFIG = runner.define_config(
    config_flags.DEFINE_config_file,
    "config",
    str(Path(__file__).resolve().parents[1] / "psm_jax" / "configs" / "main.py"),
    "The main job's config: psm_jax/configs/main.py[:<dataset>] (default: the synthetic "
    "dataset); any field with --config.<path>=<value>.",
    fields="psm_jax/configs/main.py's docstring (each model's: psm_jax/configs/base.py)",
)
flags.declare_key_flag("config")  # listed in --help (ml_collections defines it)
_WORKDIR = flags.DEFINE_string("workdir", None, "Where runs go (default runs/<dataset>).")


def main(argv):
    del argv
    main_job.run(_CONFIG.value, _WORKDIR.value)


if __name__ == "__main__":
    runner.run(main)
