r"""The no-embedding control of a main-job run (issue 37): its PSM network's recipe retrained with
one fixed embedding for everybody, then the run evaluated with that control's row.

    .venv/bin/python studies/no_embedding_control.py --run=runs/synthetic_personal_saliency \
        --output_dir=runs/synthetic_personal_saliency_no_embedding

Reads `<run>/psm_network/config.json` (the PSM network as the main job trained it: its data, USM
source, schedule, composition and loss) and trains it again with `embedding_input="none"`
(`psm_jax.train.loop.constant_embedding_pool`: the same architecture, composition, loss and
budget, the dynamic layer's kernels generated from one unit vector for every observer: a
universal refiner of the USM) in `<output_dir>/no_embedding`, then evaluates the run's models with
it (`launch/evaluate.py --workdir=<run> --no_embedding=...`'s evaluation, the run's evaluation
config) into `<output_dir>`: the tables gain the row `no_embedding`, and the embedding network's
gain over it is what knowing the person adds. Nothing is chosen from the results.
"""

import json
from pathlib import Path

import ml_collections
from absl import app, flags, logging

import tfds_builders
from psm_jax import cli, registry, xla_defaults
from psm_jax.evaluation import evaluators, methods
from psm_jax.train import checkpoint, loop

_RUN = flags.DEFINE_string("run", None, "A main job's workdir.", required=True)
_OUTPUT_DIR = flags.DEFINE_string(
    "output_dir", None, "Where the control trains and the report goes.", required=True
)


def main(argv):
    del argv
    if not flags.FLAGS["verbosity"].present:
        logging.set_verbosity(logging.WARNING)
    run, output_dir = Path(_RUN.value), Path(_OUTPUT_DIR.value)
    config = checkpoint.load_config(run / "psm_network")
    with config.unlocked():
        config.embedding_input = "none"
    control = output_dir / "no_embedding"
    print(f"Training the no-embedding control in {control} ...", flush=True)
    loop.train_and_evaluate(config, str(control))
    workdirs = {
        name: str(run / name) for name in registry.MODELS if (run / name / "config.json").exists()
    }
    workdirs["no_embedding"] = str(control)
    models = methods.Models.restore(workdirs)
    saved = run / "report" / evaluators.CONFIG_FILE
    evaluation_config = ml_collections.ConfigDict(json.loads(saved.read_text()))
    print(f"Evaluating {run} with the control into {output_dir} ...", flush=True)
    evaluation = evaluators.evaluate(models, evaluation_config, output_dir / "report")
    path = evaluators.write_report(output_dir / "report.md", evaluation, models, evaluation_config)
    print(f"Report: {path}")


if __name__ == "__main__":
    xla_defaults.apply()  # before JAX starts a backend (as the launchers do)
    tfds_builders.register()
    app.run(main, flags_parser=cli.parse_flags)  # --help exits 0
