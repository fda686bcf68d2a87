r"""The open sets of evaluations of different people pooled into one table over all of them: e.g.
the main job on the three synthetic generator draws (5 unseen people each, 15 together).

    .venv/bin/python studies/pool_open_sets.py --output_dir=runs/synthetic_pooled --reports=\
seed0=runs/synthetic_personal_saliency/report,seed1=runs/seed1/report,seed2=runs/seed2/report

Each report folder holds an evaluation's `open_scores.csv` and `open.json` (the main job's
`<workdir>/report`, or `launch/evaluate.py`'s `<output_dir>/report`). The people of different
evaluations are different people (another draw, another release), so each observer id is
prefixed with its evaluation's name (`seed1/3`). The scores are pooled
(`psm_jax.evaluation.scoring.pooled_table`) into `<output_dir>/pooled_open_scores.csv` (the
same format, to recompute from) and one table over all people, written to
`<output_dir>/pooled_open.md` with every row against the ground-truth USM and the embedding
network against the mean-embedding control and the strongest other row, over pairs and over
people (`psm_jax.evaluation.people`). Nothing is trained or chosen: the evaluations are read as
they are. For every observer unseen once in one dataset, see `studies/observer_folds.py`.
"""

import dataclasses
from pathlib import Path

import numpy as np
from absl import app, flags

from psm_jax import cli
from psm_jax.evaluation import report, scoring

_REPORTS = flags.DEFINE_list(
    "reports", None, "name=report folder, one per evaluation of other people.", required=True
)
_OUTPUT_DIR = flags.DEFINE_string(
    "output_dir", None, "Where pooled_open.md and the pooled scores go.", required=True
)
_TITLE = flags.DEFINE_string("title", "open sets pooled", "The pooled table's heading.")


def read_reports(reports: list[str]) -> tuple[list[scoring.PairScores], list[scoring.Table]]:
    """Each `name=folder`'s open-set scores (observer ids prefixed with the name) and table."""
    parts, tables = [], []
    for entry in reports:
        name, _, folder = entry.partition("=")
        if not name or not folder:
            raise app.UsageError(f"--reports: {entry!r} is not name=folder.")
        folder = Path(folder)
        scores = scoring.read_scores(scoring.scores_path(folder, "open"))
        parts.append(
            dataclasses.replace(
                scores, observer_ids=np.array([f"{name}/{o}" for o in scores.observer_ids])
            )
        )
        tables.append(scoring.Table.read(folder / "open.json"))
    return parts, tables


def main(argv):
    del argv
    parts, tables = read_reports(_REPORTS.value)
    output_dir = Path(_OUTPUT_DIR.value)
    output_dir.mkdir(parents=True, exist_ok=True)
    scores_path, table = scoring.pooled_table(
        parts, tables, output_dir / "pooled_open_scores.csv", title=_TITLE.value
    )
    each = "\n".join(
        f"### {entry.partition('=')[0]}: {entry.partition('=')[2]}/open.md\n\n"
        + report.table_markdown(part_table).split("\n", 2)[2]  # without its heading
        for entry, part_table in zip(_REPORTS.value, tables, strict=True)
    )
    path = output_dir / "pooled_open.md"
    path.write_text(
        f"# {_TITLE.value}\n\nThe open-set per-pair scores of {len(parts)} evaluations of "
        f"different people pooled ({scores_path.name}); observer ids prefixed with the "
        "evaluation's name.\n\n" + report.pooled_markdown(table) + "\n## Each evaluation\n\n" + each
    )
    print(report.pooled_markdown(table))
    print(f"Pooled over {table.people} people: {path}, scores {scores_path}")


if __name__ == "__main__":
    app.run(main, flags_parser=cli.parse_flags)  # --help exits 0
