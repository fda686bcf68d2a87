"""Scores and tables: per-pair metrics, the per-pair scores file, row means with significance
marks, every row against the ground-truth USM over pairs and over people. Numbers only;
`psm_jax.evaluation.report` writes them as markdown.

Every row's per-pair scores are written to `<protocol>_scores.csv` (`write_scores`: one line per
(row, image, observer), columns `SCORE_COLUMNS`) and the table is computed from that file as read
back (`read_scores`), so anyone can recompute a table or another statistic from it. The scores of
several evaluations of disjoint people (the folds of `studies/observer_folds.py`) pool into one
(`pool_scores`), and a table is computed from any scores alone (`table_from_scores`).

A table row is the mean of the five reported metrics (`psm_jax.metrics.saliency_metrics`) over the
protocol's pairs. The asterisk marks a metric where the embedding network (the `embedding` row)
beats the strongest other row: over people (`psm_jax.evaluation.people`: the Wilcoxon signed-rank
test of each observer's mean difference, p < 0.05) where the table has at least
`people.MIN_PEOPLE_FOR_WILCOXON` observers; with fewer, the papers' Mann-Whitney test over pairs,
which treats pairs as independent (the table's `significance` says which). Beside it, every row is
compared with the ground-truth USM, the question the papers ask (does personalising beat the
population map?): the difference of the means and the paired Wilcoxon signed-rank p over pairs
(pairs are not independent: each observer and each image recurs), the statistics over people (k of
n better, the test over people, a bootstrap interval over observers and images), per metric, and
the information gain over the USM in bits per fixation (`psm_jax.metrics.information_gain`; 0 for
the USM itself). Every table records the USM floor, the discrepancy weight and the m it was
computed with.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import os
from pathlib import Path

import numpy as np

from psm_jax import metrics
from psm_jax.evaluation import methods
from psm_jax.evaluation import people as people_lib
from psm_jax.evaluation.pairs import EvaluationSet

METRICS = ("cc", "sim", "auc_judd", "nss", "kld")
INFORMATION_GAIN = "information_gain"

SCORE_COLUMNS = ("row", "image_id", "observer_id", *METRICS, "ig")
"""The columns of a per-pair scores file; `ig` is the information gain over the ground-truth USM
in bits per fixation."""


def versus_usm(values: np.ndarray, usm_values: np.ndarray) -> dict[str, float]:
    """A row's per-pair scores against the ground-truth USM's on the same pairs: the difference
    of the means and the two-sided paired Wilcoxon p (pairs where either is NaN left out)."""
    finite = np.isfinite(values) & np.isfinite(usm_values)
    return {
        "difference": float(np.mean(values[finite]) - np.mean(usm_values[finite])),
        "p": metrics.wilcoxon_p(values[finite], usm_values[finite]),
    }


def versus_reference(
    values: np.ndarray, reference: np.ndarray, metric: str, people: people_lib.People
) -> dict:
    """A row's per-pair scores against another row's on the same pairs: over pairs
    (`versus_usm`: "difference", "p") and over people ("people": `people.People.versus`)."""
    result: dict = versus_usm(values, reference)
    result["people"] = people.versus(values, reference, metric)
    return result


def scores_path(output_dir: str | Path, protocol: str) -> Path:
    """Where a protocol's per-pair scores go: `<output_dir>/<protocol>_scores.csv`."""
    return Path(output_dir) / f"{protocol}_scores.csv"


@dataclasses.dataclass(frozen=True)
class PairScores:
    """Every row's per-pair scores of one protocol, as a scores file holds them.

    Attributes:
      image_ids, observer_ids: (P,) each pair's image and observer, as in the dataset.
      rows: row id -> metric -> (P,) scores, in the file's row order; the information gain is
        under `INFORMATION_GAIN`.
    """

    image_ids: np.ndarray
    observer_ids: np.ndarray
    rows: dict[str, dict[str, np.ndarray]]


def write_scores(
    path: str | Path, evaluation: EvaluationSet, scores: dict[str, dict[str, np.ndarray]]
) -> Path:
    """Writes every row's per-pair scores (`score`) as CSV, columns `SCORE_COLUMNS`, rows in
    `scores`' order, pairs in the evaluation set's; atomically (a temporary file renamed)."""
    pair_scores = PairScores(
        image_ids=np.array([evaluation.image_ids[i] for i in evaluation.image]),
        observer_ids=np.array([evaluation.observer_ids[o] for o in evaluation.observer]),
        rows=scores,
    )
    return write_pair_scores(path, pair_scores)


def write_pair_scores(path: str | Path, pair_scores: PairScores) -> Path:
    """Writes per-pair scores as `write_scores` does (what `read_scores` reads back)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    image_ids, observer_ids = pair_scores.image_ids, pair_scores.observer_ids
    temporary = path.with_name(path.name + ".tmp")
    with temporary.open("w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(SCORE_COLUMNS)
        for row_id, values in pair_scores.rows.items():
            columns = [np.asarray(values[m], np.float64) for m in (*METRICS, INFORMATION_GAIN)]
            for pair in range(len(image_ids)):
                writer.writerow(
                    [row_id, image_ids[pair], observer_ids[pair]]
                    + [repr(float(column[pair])) for column in columns]
                )
    os.replace(temporary, path)
    return path


def read_scores(path: str | Path) -> PairScores:
    """A scores file written by `write_scores`; a ValueError naming the file when it is not
    one (other columns, a row whose pairs differ from the first row's, a non-number)."""
    path = Path(path)
    with path.open(newline="") as file:
        reader = csv.reader(file)
        header = tuple(next(reader, ()))
        if header != SCORE_COLUMNS:
            raise ValueError(
                f"{path}: not a scores file: columns {header}, expected {SCORE_COLUMNS}."
            )
        lines = list(reader)
    by_row: dict[str, list[list[str]]] = {}
    for line in lines:
        by_row.setdefault(line[0], []).append(line)
    if not by_row:
        raise ValueError(f"{path}: a scores file without scores.")
    first = next(iter(by_row.values()))
    pairs = [(line[1], line[2]) for line in first]
    rows = {}
    for row_id, row_lines in by_row.items():
        if [(line[1], line[2]) for line in row_lines] != pairs:
            raise ValueError(f"{path}: row {row_id!r} scores other pairs than the first row.")
        try:
            values = np.array([[float(v) for v in line[3:]] for line in row_lines], np.float64)
        except ValueError as error:
            raise ValueError(f"{path}: row {row_id!r}: {error}") from None
        rows[row_id] = {
            metric: values[:, k] for k, metric in enumerate((*METRICS, INFORMATION_GAIN))
        }
    return PairScores(
        image_ids=np.array([image for image, _ in pairs]),
        observer_ids=np.array([observer for _, observer in pairs]),
        rows=rows,
    )


def pool_scores(parts: list[PairScores]) -> PairScores:
    """The per-pair scores of evaluations of disjoint people as one: their pairs one after the
    other, the rows scored in every part (in the first part's order).

    A ValueError where an observer is scored in two parts (pooling counts each person once) or
    no row is scored in every part."""
    seen: dict[str, int] = {}
    for index, part in enumerate(parts):
        for observer in np.unique(part.observer_ids):
            if observer in seen:
                raise ValueError(
                    f"Observer {observer} is scored in parts {seen[observer]} and {index}: "
                    "pooled scores count each person once."
                )
            seen[observer] = index
    rows = [row_id for row_id in parts[0].rows if all(row_id in part.rows for part in parts)]
    if not rows:
        raise ValueError("Nothing to pool: no row is scored in every part.")
    return PairScores(
        image_ids=np.concatenate([part.image_ids for part in parts]),
        observer_ids=np.concatenate([part.observer_ids for part in parts]),
        rows={
            row_id: {
                metric: np.concatenate([part.rows[row_id][metric] for part in parts])
                for metric in parts[0].rows[row_id]
            }
            for row_id in rows
        },
    )


def pooled_table(
    parts: list[PairScores], tables: list[Table], path: str | Path, *, title: str
) -> tuple[Path, Table]:
    """The open-set scores of evaluations of disjoint people (folds, generator draws) pooled
    (`pool_scores`), written to `path` (`write_pair_scores`), and the table over all of them
    computed from that file as read back (`table_from_scores`; names and settings from the first
    evaluation's table `tables[0]`). Returns (the file, the table)."""
    scores_path = write_pair_scores(path, pool_scores(parts))
    first = tables[0]
    table = table_from_scores(
        read_scores(scores_path),
        {row_id: row["name"] for row_id, row in first.rows.items()},
        title=title,
        protocol=first.protocol,
        usm_floor=first.usm_floor,
        m=first.m,
        discrepancy_weight=first.discrepancy_weight,
        given_predicted_usm={
            row_id for row_id, row in first.rows.items() if "versus_predicted_usm" in row["cc"]
        },
    )
    return scores_path, table


def observers_better(observer_differences: list[float], metric: str) -> int:
    """How many observers' mean difference is in the metric's better direction."""
    sign = 1.0 if metrics.HIGHER_IS_BETTER[metric] else -1.0
    return int(sum(sign * d > 0 for d in observer_differences))


def score(
    evaluation: EvaluationSet, prediction: np.ndarray, grid: tuple[int, int] | None = None
) -> dict[str, np.ndarray]:
    """The five metrics of (P, H, W) predicted PSMs against the pairs' ground truth, and their
    information gain over the ground-truth USM ("information_gain"), per pair."""
    grid = tuple(grid or evaluation.usm.shape[-2:])
    fixations = (
        evaluation.fixation_x,
        evaluation.fixation_y,
        evaluation.fixation_mask,
        evaluation.image_size,
    )
    values = metrics.saliency_metrics(prediction, evaluation.psm, *fixations, grid=grid)
    values = {k: np.asarray(v) for k, v in values.items()}
    values[INFORMATION_GAIN] = np.asarray(
        metrics.information_gain(prediction, evaluation.pair_usm, *fixations, grid=grid)
    )
    return values


@dataclasses.dataclass(frozen=True)
class Table:
    """One protocol's table.

    Attributes:
      title: its heading.
      protocol, usm_floor, m, pairs, discrepancy_weight: what it was computed with and on.
      rows: row id -> {"name": display name, metric: {"mean": float, "significant": bool,
        "versus_usm": `versus_reference` against the ground-truth USM}, "information_gain": bits
        per fixation}, in table order; a row given the universal model's USM
        (`methods.Row.given_predicted_usm`) also has, per metric, "versus_predicted_usm"
        (`versus_reference` against the universal model's own map); the embedding network's row
        also "versus_mean_embedding" (against the mean-embedding control) and "versus_strongest"
        (against the strongest other row, the asterisk's comparison; its id under "row").
      predicted_usm_cc: the mean per-image CC between the universal model's USM and the
        ground-truth USM (None without a universal model).
      people: the observers the table scores.
      significance: what the asterisk tests: "people" (Wilcoxon over observers) or "pairs"
        (Mann-Whitney over pairs, with fewer than `people.MIN_PEOPLE_FOR_WILCOXON` observers).
    """

    title: str
    protocol: str
    usm_floor: float
    m: int
    pairs: int
    rows: dict[str, dict]
    discrepancy_weight: float = 1.0  # tables written before the weight existed used the papers' 1
    predicted_usm_cc: float | None = None
    people: int | None = None  # None: a table written before the statistics over people
    significance: str = "pairs"

    def mean(self, row_id: str, metric: str) -> float:
        return self.rows[row_id][metric]["mean"]

    @classmethod
    def read(cls, path: str | Path) -> Table:
        """A table written by `write_json`."""
        return cls(**json.loads(Path(path).read_text()))

    def write_json(self, output_dir: str | Path) -> Path:
        """Writes `<output_dir>/<protocol>.json`; returns its path."""
        path = Path(output_dir) / f"{self.protocol}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(dataclasses.asdict(self), indent=2))
        return path


CONTROL_COMPARISONS = {
    methods.EMBEDDING_MEAN: "versus_mean_embedding",
    methods.NO_EMBEDDING: "versus_no_embedding",
}
"""The controls the embedding network's row is compared with, and the key of each comparison."""

REAL_USE_COMPETITORS = (methods.PREDICTED_USM, methods.PRETRAINED_USM, methods.CENTRE_BIAS)
"""The rows without a personalised model that a new image allows: the universal models' USMs and
the centre bias (a training statistic). The other baselines read the test image's ground-truth
USM, which real use does not have."""


def strongest_other(
    scores: dict[str, dict[str, np.ndarray]],
    row_id: str,
    metric: str,
    given_predicted_usm: set[str] | frozenset[str] = frozenset(),
):
    """The row with the best mean `metric` other than `row_id` and the controls (which test the
    embedding network rather than compete with it), among the rows that could stand in its place:
    for a row given the universal model's USM (real use, `given_predicted_usm`), only the rows a
    new image allows too (`REAL_USE_COMPETITORS` and the other rows given that USM), not the rows
    that read the test image's ground-truth USM; None when there is none."""
    sign = 1.0 if metrics.HIGHER_IS_BETTER[metric] else -1.0
    others = [other for other in scores if other not in (row_id, *methods.CONTROLS)]
    if row_id in given_predicted_usm:
        others = [o for o in others if o in given_predicted_usm or o in REAL_USE_COMPETITORS]
    return max(others, key=lambda o: sign * np.nanmean(scores[o][metric]), default=None)


def strongest_alike(
    scores: dict[str, dict[str, np.ndarray]],
    row_id: str,
    metric: str,
    given_predicted_usm: set[str] | frozenset[str] = frozenset(),
):
    """The baseline trained alike (`methods.TRAINED_ALIKE`) with the best mean `metric`, among
    those given the same kind of USM as `row_id` (the predicted one in real use); None when
    none was evaluated."""
    sign = 1.0 if metrics.HIGHER_IS_BETTER[metric] else -1.0
    real_use = row_id in given_predicted_usm
    alike = [
        other
        for other in methods.TRAINED_ALIKE
        if other in scores and (other in given_predicted_usm) == real_use
    ]
    return max(alike, key=lambda o: sign * np.nanmean(scores[o][metric]), default=None)


def table(
    evaluation: EvaluationSet,
    rows: list[methods.Row],
    pair_scores: PairScores,
    *,
    usm_floor: float,
    m: int,
    discrepancy_weight: float,
) -> Table:
    """Means per row and metric, with the asterisks, every row against the ground-truth USM
    over pairs and over people (module docstring).

    Args:
      evaluation: the pairs the rows were scored on.
      rows: the rows (`methods.predict_rows`), in table order.
      pair_scores: their per-pair scores as the scores file holds them (`read_scores`).
      usm_floor, m, discrepancy_weight: recorded in the table.
    """
    predicted_usm_cc = None
    predicted = [row for row in rows if row.id == methods.PREDICTED_USM]
    if predicted:
        first = np.unique(evaluation.image, return_index=True)[1]  # one pair per image
        predicted_usm_cc = float(
            np.mean(metrics.cc(predicted[0].psm[first], evaluation.pair_usm[first]))
        )
    return table_from_scores(
        pair_scores,
        {row.id: row.name for row in rows},
        title=f"{evaluation.dataset}, {evaluation.protocol} set",
        protocol=evaluation.protocol,
        usm_floor=usm_floor,
        m=m,
        discrepancy_weight=discrepancy_weight,
        given_predicted_usm={row.id for row in rows if row.given_predicted_usm},
        predicted_usm_cc=predicted_usm_cc,
    )


def table_from_scores(
    pair_scores: PairScores,
    names: dict[str, str],
    *,
    title: str,
    protocol: str,
    usm_floor: float,
    m: int,
    discrepancy_weight: float,
    given_predicted_usm: set[str] | frozenset[str] = frozenset(),
    predicted_usm_cc: float | None = None,
) -> Table:
    """`table` from per-pair scores alone (e.g. the pooled scores of several folds).

    Args:
      pair_scores: every row's per-pair scores (`read_scores`, `pool_scores`); the ground-truth
        USM's row among them.
      names: row id -> display name, in table order (rows without scores are left out).
      title: the table's heading, before "(P (image, observer) pairs, n people)".
      protocol, usm_floor, m, discrepancy_weight, predicted_usm_cc: recorded in the table.
      given_predicted_usm: the rows given the universal model's USM (compared with it too).

    Returns:
      The table; the embedding network's row also holds, per metric, "versus_strongest"
      (`versus_reference` against the strongest other row, controls aside, whose id is under
      "row"), the comparison its asterisk tests; the controls' comparisons
      (`CONTROL_COMPARISONS`); and "versus_alike", against the strongest baseline trained alike
      (`strongest_alike`, its id under "row") where one was evaluated.
    """
    scores = pair_scores.rows
    people = people_lib.People(pair_scores.observer_ids, pair_scores.image_ids)
    by_people = people.n >= people_lib.MIN_PEOPLE_FOR_WILCOXON
    cells = {}
    for row_id, name in names.items():
        if row_id not in scores:
            continue
        values = scores[row_id]
        cells[row_id] = {"name": name}
        usm_scores = scores[methods.GT_USM]
        for metric in METRICS:
            cell = {"mean": float(np.nanmean(values[metric])), "significant": False}
            cell["versus_usm"] = versus_reference(
                values[metric], usm_scores[metric], metric, people
            )
            strongest = (
                strongest_other(scores, row_id, metric, given_predicted_usm)
                if row_id == methods.OURS
                else None
            )
            if strongest is not None:
                versus = versus_reference(values[metric], scores[strongest][metric], metric, people)
                cell["versus_strongest"] = {"row": strongest, **versus}
                if by_people:
                    sign = 1.0 if metrics.HIGHER_IS_BETTER[metric] else -1.0
                    better = sign * np.nanmean(versus["people"]["differences"]) > 0
                    cell["significant"] = bool(better and versus["people"]["p"] < 0.05)
                else:
                    comparison = metrics.compare(values, scores[strongest], [metric])[metric]
                    cell["significant"] = bool(comparison["significant"])
            for control, key in CONTROL_COMPARISONS.items():
                if row_id == methods.OURS and control in scores:
                    cell[key] = versus_reference(
                        values[metric], scores[control][metric], metric, people
                    )
            alike = (
                strongest_alike(scores, row_id, metric, given_predicted_usm)
                if row_id == methods.OURS
                else None
            )
            if alike is not None:
                versus = versus_reference(values[metric], scores[alike][metric], metric, people)
                cell["versus_alike"] = {"row": alike, **versus}
            if row_id in given_predicted_usm and methods.PREDICTED_USM in scores:
                cell["versus_predicted_usm"] = versus_reference(
                    values[metric], scores[methods.PREDICTED_USM][metric], metric, people
                )
            cells[row_id][metric] = cell
        gain = values.get(INFORMATION_GAIN)
        cells[row_id][INFORMATION_GAIN] = float(np.nanmean(gain)) if gain is not None else np.nan
    pairs = len(pair_scores.image_ids)
    return Table(
        title=f"{title} ({pairs} (image, observer) pairs, {people.n} people)",
        protocol=protocol,
        usm_floor=float(usm_floor),
        m=int(m),
        pairs=pairs,
        rows=cells,
        discrepancy_weight=float(discrepancy_weight),
        predicted_usm_cc=predicted_usm_cc,
        people=people.n,
        significance="people" if by_people else "pairs",
    )
