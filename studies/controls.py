r"""The controls of a finished main-job run (issue 37): trained from the run's own configs, then
the run evaluated with their rows.

    .venv/bin/python studies/controls.py --run=runs/synthetic_personal_saliency \
        --output_dir=runs/synthetic_personal_saliency_controls

For a run made without `--config.controls` (`psm_jax.configs.main`): reads the configs the run's
models were trained with (`<run>/<model>/config.json`: their data, USM source, schedules,
composition and loss), trains each control of `--controls` from them
(`psm_jax.configs.main.control_config`, as the main job would: the no-embedding control, the
multi-task CNN and the per-observer networks trained alike the PSM network) in
`<output_dir>/<control>`, then evaluates the run's models with them (the run's evaluation config)
into `<output_dir>`: the tables gain the controls' rows, and the embedding network is compared
with each. A control already trained there is reused. Nothing is chosen from the results.
"""

import json
from pathlib import Path

import ml_collections
from absl import app, flags, logging

import tfds_builders
from psm_jax import cli, registry, xla_defaults
from psm_jax.configs import main as main_configs
from psm_jax.evaluation import evaluators, methods
from psm_jax.train import checkpoint, loop

_RUN = flags.DEFINE_string("run", None, "A main job's workdir.", required=True)
_OUTPUT_DIR = flags.DEFINE_string(
    "output_dir", None, "Where the controls train and the report goes.", required=True
)
_CONTROLS = flags.DEFINE_list(
    "controls", list(main_configs.CONTROLS), "Which controls (psm_jax.configs.main.CONTROLS)."
)


def main(argv):
    del argv
    if not flags.FLAGS["verbosity"].present:
        logging.set_verbosity(logging.WARNING)
    run, output_dir = Path(_RUN.value), Path(_OUTPUT_DIR.value)
    workdirs = {
        name: str(run / name) for name in registry.MODELS if (run / name / "config.json").exists()
    }
    if not workdirs:
        raise FileNotFoundError(f"--run={run} holds no trained model (no <model>/config.json).")
    trained = {name: checkpoint.load_config(path) for name, path in workdirs.items()}
    names = main_configs.controls(ml_collections.ConfigDict({"controls": _CONTROLS.value}))
    for control in names:
        config = main_configs.control_config(control, trained)
        workdirs[control] = str(output_dir / control)
        print(
            f"Training the {control} control ({config.num_steps} steps, batch "
            f"{config.batch_size}) in {workdirs[control]} ...",
            flush=True,
        )
        loop.train_and_evaluate(config, workdirs[control])
    models = methods.Models.restore(workdirs)
    saved = run / "report" / evaluators.CONFIG_FILE
    evaluation_config = ml_collections.ConfigDict(json.loads(saved.read_text()))
    print(f"Evaluating {run} with the controls into {output_dir} ...", flush=True)
    evaluation = evaluators.evaluate(models, evaluation_config, output_dir / "report")
    path = evaluators.write_report(output_dir / "report.md", evaluation, models, evaluation_config)
    print(f"Report: {path}")


if __name__ == "__main__":
    xla_defaults.apply()  # before JAX starts a backend (as the launchers do)
    tfds_builders.register()
    app.run(main, flags_parser=cli.parse_flags)  # --help exits 0
