"""Trains any model of the registry (psm_jax/registry.py) from a config file.

    python launch/train.py --config=psm_jax/configs/<dataset>.py:<model>[,options] \
        --workdir=runs/<dataset>/<model> [--config.<field>=<value> ...]

e.g. the user-embedding encoder on the synthetic default, then the PSM network on its embeddings:

    python launch/train.py --config=psm_jax/configs/synthetic.py:embedding \
        --workdir=runs/synthetic_personal_saliency/embedding
    python launch/train.py --config=psm_jax/configs/synthetic.py:psm_network \
        --config.encoder_workdir=runs/synthetic_personal_saliency/embedding \
        --workdir=runs/synthetic_personal_saliency/psm_network

Models: embedding, psm_network, multi_task, per_observer, universal. Each config file's docstring
gives its commands and options. `--config.network.<field>=<value>` sets any field of the model's
architecture (e.g. `--config.network.compute_dtype=bfloat16`), also one the config file leaves at
its default. A workdir that holds a run resumes it. Multi-process runs (one
process per host, or several on one machine for testing) add
`--coordinator_address=host:port --num_processes=N --process_id=i`.
"""

import re
import sys

import jax
import runner
from absl import flags
from ml_collections import config_flags

import tfds_builders  # noqa: F401  (registers the datasets with TFDS)
from psm_jax import registry
from psm_jax.configs import main as main_configs
from psm_jax.data import datasets
from psm_jax.train import loop

flags.adopt_module_key_flags(runner)  # --verbose shows in --help

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Config file and model: psm_jax/configs/<dataset>.py:<model>[,options]."
)
_WORKDIR = flags.DEFINE_string("workdir", None, "Where checkpoints, config and logs go.")
_COORDINATOR = flags.DEFINE_string("coordinator_address", None, "host:port of process 0.")
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", None, "Processes in a multi-process run.")
_PROCESS_ID = flags.DEFINE_integer("process_id", None, "This process's index.")

_NETWORK_FIELD = re.compile(r"--config\.network\.(\w+)=(.*)", re.DOTALL)
_network_fields: dict = {}


def take_network_fields(argv: list[str]) -> tuple[list[str], dict]:
    """Takes every `--config.network.<field>=<value>` out of `argv`: (the rest, {"network.<field>":
    value}), values as `psm_jax.configs.main.parse_value`. A config file sets the `network` fields
    that differ from the architecture's defaults, and config_flags knows only the keys a config
    has; these are applied after parsing instead, so any field of the architecture can be set.
    Only the `=` form: `--config.network.<field> <value>` stays with config_flags, which knows
    the fields the config file sets."""
    rest, fields = [], {}
    for argument in argv:
        match = _NETWORK_FIELD.fullmatch(argument)
        if match:
            fields[f"network.{match[1]}"] = main_configs.parse_value(match[2])
        else:
            rest.append(argument)
    return rest, fields


def apply_network_fields(config, fields: dict) -> None:
    """Sets `fields` (from `take_network_fields`) in `config`, checked against the architecture:
    an unknown field or a bad value is a ValueError naming the flag."""
    try:
        with config.unlocked():  # config_flags locks it
            main_configs.apply_overrides(config, fields)
        registry.get(config.model).architecture(config)
    except (KeyError, TypeError, ValueError) as error:
        given = ", ".join(f"--config.{key}" for key in fields) or "--config.network"
        raise ValueError(f"{given}: {error}") from error


def main(argv):
    del argv
    config = _CONFIG.value
    apply_network_fields(config, _network_fields)
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
        summary = ", ".join(f"{k} {v:.4g}" for k, v in measurements.items())
        print(f"{config.model} trained in {_WORKDIR.value}: {summary}")


if __name__ == "__main__":
    flags.mark_flags_as_required(["config", "workdir"])
    sys.argv, _network_fields = take_network_fields(sys.argv)
    runner.run(main)
