"""The shared body of the `launch/train_*.py` launchers: absl flags, config file, workdir.

    python launch/train_<model>.py --config=psm_jax/configs/<dataset>.py:<model>[,options] \
        --workdir=runs/<name> [--config.<field>=<value> ...]

Multi-process runs (one process per host, or several on one machine for testing) add
`--coordinator_address=host:port --num_processes=N --process_id=i`.
"""

from __future__ import annotations

import jax
from absl import app, flags
from ml_collections import config_flags

from psm_jax.data import datasets

_CONFIG = config_flags.DEFINE_config_file("config", None, "Config file (path[:model,options]).")
_WORKDIR = flags.DEFINE_string("workdir", None, "Where checkpoints, config and logs go.")
_COORDINATOR = flags.DEFINE_string("coordinator_address", None, "host:port of process 0.")
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", None, "Processes in a multi-process run.")
_PROCESS_ID = flags.DEFINE_integer("process_id", None, "This process's index.")


def _main(model: str, argv) -> None:
    del argv
    from psm_jax.train import loop

    config = _CONFIG.value
    if config is None or _WORKDIR.value is None:
        raise app.UsageError("--config and --workdir are required.")
    if config.model != model:
        raise app.UsageError(
            f"--config gives model {config.model!r}, but this launcher trains {model!r}: "
            f"use launch/train_{config.model}.py or pass :{model} after the config file."
        )
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
        print(f"{model} trained in {_WORKDIR.value}: {summary}")


def main(model: str) -> None:
    """Runs the launcher for `model` under absl."""
    flags.mark_flags_as_required(["config", "workdir"])
    app.run(lambda argv: _main(model, argv))
