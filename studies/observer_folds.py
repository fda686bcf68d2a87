r"""Every observer unseen once: the main job on each fold of K-fold cross-validation over observers,
and the open-set scores of all folds pooled into one table over all people.

    .venv/bin/python studies/observer_folds.py --config=psm_jax/configs/main.py:osie_personal \
        --manual_dir=/path/to/osie --folds=5 --workdir=runs/osie_folds
    .venv/bin/python studies/observer_folds.py --config.dataset=synthetic_personal_saliency/seed1 \
        --folds=5 --workdir=runs/seed1_folds            # a synthetic draw (30 observers)

One split tests few people (OSIE: 3, whose sign test cannot reach p < 0.05). Fold k of K
(`psm_jax.data.splits.fold_observers`, the dataset config "<config>+fold_<k>_of_<K>") tests
the k-th of K chunks of the observers, validates on the next chunk and trains on the rest, so over
the K folds every observer is a test observer exactly once (OSIE, K = 5: 9 / 3 / 3 per fold).

For each fold this runs `launch/main.py`'s job unchanged (its config, psm_jax/configs/main.py, with
any `--config.` field as there) on that fold's dataset, in `<workdir>/fold_<k>_of_<K>`; the
settings are frozen before the first fold and nothing is chosen from any fold's results. A fold
whose report.md and open-set scores exist is reused as it is; an unfinished one resumes (the main
job reuses its finished stages). Then the folds' open-set per-pair scores
(`<fold>/report/open_scores.csv`) are pooled (`psm_jax.evaluation.scoring.pool_scores`) into
`<workdir>/pooled_open_scores.csv` (the same format, to recompute from) and one table over all
people (`scoring.table_from_scores`): every row's means, every row against the ground-truth USM,
the embedding network against the mean-embedding control and against the strongest other row,
over pairs and over people (k of n better, Wilcoxon over people, a bootstrap interval resampling
observers and images), written to `<workdir>/pooled_open.md` with each fold's own table.
"""

import copy
from pathlib import Path

from absl import app, flags, logging
from ml_collections import config_flags

import tfds_builders
from psm_jax import cli, main_job, xla_defaults
from psm_jax.configs import main as main_configs
from psm_jax.data import builder as builder_lib
from psm_jax.evaluation import report, scoring

_CONFIG = config_flags.DEFINE_config_file(
    "config",
    str(Path(__file__).resolve().parents[1] / "psm_jax" / "configs" / "main.py"),
    "The main job's config (psm_jax/configs/main.py[:dataset]); its dataset is split in folds.",
)
_FOLDS = flags.DEFINE_integer("folds", 5, "K, the folds of the observers (3 to their number).")
_WORKDIR = flags.DEFINE_string(
    "workdir", None, "One workdir per fold below it, and the pooled results.", required=True
)
_MANUAL_DIR = flags.DEFINE_string(
    "manual_dir", None, "The release folder (OSIE-format releases); sets --config.manual_dir."
)


def fold_workdir(workdir: str | Path, fold: int, folds: int) -> Path:
    """Where fold `fold` of `folds` runs."""
    return Path(workdir) / f"fold_{fold}_of_{folds}"


def _finished(workdir: Path, controls: tuple[str, ...] = ()) -> bool:
    """Whether the fold's main job has written its report, after every control the config names
    was trained (a run made before `--config.controls` was given trains them and evaluates
    again)."""
    report_path = workdir / "report.md"  # the main job's last write; the scores come before it
    if not (report_path.exists() and scoring.scores_path(workdir / "report", "open").exists()):
        return False
    written = report_path.stat().st_mtime
    return all(
        (workdir / control / "config.json").exists()
        and (workdir / control / "config.json").stat().st_mtime < written
        for control in controls
    )


def main(argv):
    del argv
    if not flags.FLAGS["verbosity"].present:  # the libraries' INFO logs, as the launchers do
        logging.set_verbosity(logging.WARNING)
    config, folds, workdir = _CONFIG.value, _FOLDS.value, Path(_WORKDIR.value)
    if _MANUAL_DIR.value:
        config.manual_dir = _MANUAL_DIR.value
    try:
        datasets = [builder_lib.with_fold(config.dataset, k, folds) for k in range(folds)]
    except ValueError as error:
        raise app.UsageError(f"--folds={folds} of {config.dataset}: {error}") from None
    parts, tables = [], []
    for fold, dataset in enumerate(datasets):
        fold_dir = fold_workdir(workdir, fold, folds)
        step = f"[fold {fold + 1}/{folds}] {dataset}"
        if _finished(fold_dir, main_configs.controls(config)):
            print(f"{step}: finished earlier, reused ({fold_dir})", flush=True)
        else:
            print(f"{step}: the main job in {fold_dir} ...", flush=True)
            fold_config = copy.deepcopy(config)  # its own references (ConfigDict() shares them)
            fold_config.dataset = dataset
            main_job.run(fold_config, fold_dir)
        parts.append(scoring.read_scores(scoring.scores_path(fold_dir / "report", "open")))
        tables.append(scoring.Table.read(fold_dir / "report" / "open.json"))
        unseen = sorted(set(parts[-1].observer_ids))
        print(f"{step}: {len(unseen)} unseen observers scored: {', '.join(unseen)}", flush=True)

    scores_path, table = scoring.pooled_table(
        parts,
        tables,
        workdir / "pooled_open_scores.csv",
        title=f"{config.dataset}, open set pooled over {folds} folds",
    )
    each_fold = "\n".join(
        f"### Fold {k} of {folds}: [{fold_workdir('.', k, folds).name}/report/open.md]"
        f"({fold_workdir('.', k, folds).name}/report/open.md)\n\n"
        + report.table_markdown(fold_table).split("\n", 2)[2]  # without its heading
        for k, fold_table in enumerate(tables)
    )
    text = (
        f"# Every observer unseen once: {config.dataset}, {folds} folds over observers\n\n"
        "The main job (psm_jax/configs/main.py, settings frozen) on each fold "
        f"{datasets[0].replace('+fold_0_of', '+fold_<k>_of')}; the open-set per-pair scores of "
        f"the {folds} folds pooled ({scores_path.name}): every observer is scored once, unseen "
        "in training.\n\n" + report.pooled_markdown(table) + "\n## Each fold\n\n" + each_fold
    )
    path = workdir / "pooled_open.md"
    path.write_text(text)
    print("\n" + report.table_markdown(table))
    print(f"Pooled over {table.people} people: {path}, scores {scores_path}")


if __name__ == "__main__":
    xla_defaults.apply()  # before JAX starts a backend (as the launchers do)
    tfds_builders.register()
    app.run(main, flags_parser=cli.parse_flags)  # --help exits 0
