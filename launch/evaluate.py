r"""Evaluates trained workdirs and writes the report the main job writes: report.md and its tables.

    .venv/bin/python launch/evaluate.py --workdir=runs/synthetic_personal_saliency

reads a main job's workdir (one trained workdir per model below it: embedding, psm_network,
multi_task, per_observer, universal, and the controls no_embedding, multi_task_alike,
per_observer_alike; those absent are left out) and writes
`<workdir>/report.md` with `<workdir>/report/` (`<protocol>.md` / `.json` per protocol, the
figures), as the main job did. Models trained apart are given one by one, and then
`--output_dir` says where the report goes:

    .venv/bin/python launch/evaluate.py --embedding=runs/my_encoder \
        --psm_network=runs/my_psm_network --output_dir=runs/my_report

The dataset and data_dir come from the workdirs' saved configs (all must agree). The evaluation
config is the one the main job evaluated with (`<workdir>/report/evaluation_config.json`), else
psm_jax/configs/evaluation.py; any field with `--config.<field>=<value>` on top: e.g.
`--config.usm_floor=0 --config.discrepancy_weight=1` scores the papers' clip(USM + discrepancy,
0, 1), `--config.protocols=open,` one protocol, `--config.compute_dtype=bfloat16` the same
checkpoints computing in bf16.
"""

import json
from pathlib import Path

import runner

import ml_collections
from absl import app, flags
from ml_collections import config_flags

from psm_jax import registry
from psm_jax.configs import evaluation as evaluation_config
from psm_jax.configs import main as main_configs
from psm_jax.evaluation import evaluators, methods

flags.adopt_module_key_flags(runner)  # --verbose shows in --help

_CONFIG = runner.define_config(
    config_flags.DEFINE_config_dict,
    "config",
    evaluation_config.get_config(),
    "The evaluation config (psm_jax/configs/evaluation.py); --config.<field>=<value>.",
    fields="psm_jax/configs/evaluation.py's docstring",
)
flags.declare_key_flag("config")  # listed in --help (ml_collections defines it)
_WORKDIR = flags.DEFINE_string(
    "workdir", None, "A main job's workdir: its models, and where the report goes."
)
_OUTPUT = flags.DEFINE_string(
    "output_dir", None, "Where report.md and report/ go (default: --workdir)."
)
_WORKDIRS = {
    name: flags.DEFINE_string(name, None, f"The trained {name} workdir ({spec.summary}).")
    for name, spec in registry.MODELS.items()
}
_CONTROL_HELP = {
    "no_embedding": "A PSM network trained with --config.embedding_input=none: the no-embedding "
    "control's row.",
    "multi_task_alike": "A multi-task CNN trained alike the embedding network (log-ratio "
    "composition; the main job's --config.controls): its row.",
    "per_observer_alike": "Per-observer networks trained alike the embedding network (log-ratio "
    "composition; the main job's --config.controls): their row.",
}
for _name in main_configs.CONTROLS:
    _WORKDIRS[_name] = flags.DEFINE_string(_name, None, _CONTROL_HELP[_name])


def model_workdirs(root: str | None, given: dict[str, str]) -> dict[str, str]:
    """The workdir of each model: `<root>/<model>` where it holds a trained run, then the ones
    given one by one (which win)."""
    workdirs = {}
    if root is not None:
        if not Path(root).is_dir():
            raise FileNotFoundError(f"--workdir={root} does not exist.")
        for name in (*registry.MODELS, *main_configs.CONTROLS):
            if (Path(root) / name / "config.json").exists():
                workdirs[name] = str(Path(root) / name)
        if not workdirs:
            raise FileNotFoundError(
                f"--workdir={root} holds no trained model (no <model>/config.json below it)."
            )
    return {**workdirs, **{name: path for name, path in given.items() if path}}


def evaluation_config(workdir: str | None) -> ml_collections.ConfigDict:
    """The config the main job in `workdir` evaluated with (if it wrote one), else the default,
    with the command line's `--config.<field>` values on top."""
    config = _CONFIG.value
    saved = Path(workdir or "") / "report" / evaluators.CONFIG_FILE
    if workdir and saved.exists():
        config = ml_collections.ConfigDict(json.loads(saved.read_text()))
        overrides = config_flags.get_override_values(flags.FLAGS["config"])
        for path, value in overrides.items():
            try:
                config.update_from_flattened_dict({path: value})
            except (KeyError, AttributeError):
                raise ValueError(
                    f"--config.{path}: {saved}, the config this workdir was evaluated with, has "
                    f"no such field. {runner.closest_fields(config, '--config.' + path)}"
                ) from None
    return config


def main(argv):
    del argv
    workdirs = model_workdirs(
        _WORKDIR.value, {name: flag.value for name, flag in _WORKDIRS.items()}
    )
    if not workdirs:
        raise app.UsageError("Give --workdir (a main job's) or trained workdirs (--embedding=...).")
    output = Path(_OUTPUT.value or _WORKDIR.value or "")
    if not (_OUTPUT.value or _WORKDIR.value):
        raise app.UsageError("Give --output_dir (where report.md goes).")
    config = evaluation_config(_WORKDIR.value)
    evaluators.check(config)
    models = methods.Models.restore(workdirs, compute_dtype=config.compute_dtype or None)
    evaluation = evaluators.evaluate(models, config, output / "report")
    path = evaluators.write_report(
        output / "report.md",
        evaluation,
        models,
        config,
        wall_time=f"Evaluation wall time: {evaluation.seconds:.0f} s.",
    )
    for protocol in evaluation.results.get("tables", {}):
        print((output / "report" / f"{protocol}.md").read_text())
    print(f"Report: {path}")


if __name__ == "__main__":
    runner.run(main)
