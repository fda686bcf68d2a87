r"""Trains any model of the registry (psm_jax/registry.py) from a config file.

    .venv/bin/python launch/train.py --config=psm_jax/configs/<dataset>.py:<model>[,options] \
        --workdir=runs/<dataset>/<model> [--config.<field>=<value> ...]

e.g. the user-embedding encoder on the synthetic default, then the PSM network on its embeddings:

    .venv/bin/python launch/train.py --config=psm_jax/configs/synthetic.py:embedding \
        --workdir=runs/synthetic_personal_saliency/embedding
    .venv/bin/python launch/train.py --config=psm_jax/configs/synthetic.py:psm_network \
        --config.encoder_workdir=runs/synthetic_personal_saliency/embedding \
        --workdir=runs/synthetic_personal_saliency/psm_network

Models: embedding, psm_network, multi_task, per_observer, universal. Each config file's docstring
gives its commands and options. `--config.<field>=<value>` sets any field of the config
(`psm_jax/configs/base.py` lists them), and `--config.network.<field>=<value>` any field of the
model's architecture (e.g. `--config.network.compute_dtype=bfloat16`): every config file fills
`config.network` with all of them. A workdir that holds a run resumes it. Multi-process runs (one
process per host, or several on one machine for testing) add
`--coordinator_address=host:port --num_processes=N --process_id=i`.
"""

import runner

import jax
from absl import flags
from ml_collections import config_flags

from psm_jax import registry
from psm_jax.data import datasets
from psm_jax.train import loop

flags.adopt_module_key_flags(runner)  # --verbose shows in --help

_CONFIG = runner.define_config(
    config_flags.DEFINE_config_file,
    "config",
    None,
    "Config file and model: psm_jax/configs/<dataset>.py:<model>[,options]; any field with "
    "--config.<field>=<value> (psm_jax/configs/base.py lists them).",
    fields="psm_jax/configs/base.py (--config.network.<field>: the fields of the model's "
    "architecture dataclass in psm_jax/models/)",
)
flags.declare_key_flag("config")  # listed in --help (ml_collections defines it)
_WORKDIR = flags.DEFINE_string("workdir", None, "Where checkpoints, config and logs go.")
_COORDINATOR = flags.DEFINE_string("coordinator_address", None, "host:port of process 0.")
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", None, "Processes in a multi-process run.")
_PROCESS_ID = flags.DEFINE_integer("process_id", None, "This process's index.")


def check_network(config) -> None:
    """The config's network fields against its architecture: an unknown field or a bad value is
    a ValueError naming `--config.network`."""
    try:
        registry.get(config.model).architecture(config)
    except (KeyError, TypeError, ValueError) as error:
        raise ValueError(f"--config.network: {error}") from error


def main(argv):
    del argv
    config = _CONFIG.value
    check_network(config)
    if _COORDINATOR.value:
        # Cross-process collectives on CPU (testing on one machine); GPUs and TPUs bring their own.
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
        jax.distributed.initialize(_COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value)
    datasets.build_dataset(
        config.dataset, data_dir=config.data_dir, manual_dir=config.manual_dir or None
    )
    extra_manual_dirs = config.combine_manual_dirs.split(",") if config.combine_manual_dirs else []
    for k, name in enumerate(filter(None, config.combine_with.split(","))):
        manual_dir = extra_manual_dirs[k] if k < len(extra_manual_dirs) else None
        datasets.build_dataset(name, data_dir=config.data_dir, manual_dir=manual_dir or None)
    measurements = loop.train_and_evaluate(config, _WORKDIR.value)
    if jax.process_index() == 0:
        summary = ", ".join(
            f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in measurements.items()
        )
        print(f"{config.model} trained in {_WORKDIR.value}: {summary}")


if __name__ == "__main__":
    flags.mark_flags_as_required(["config", "workdir"])
    runner.run(main)
