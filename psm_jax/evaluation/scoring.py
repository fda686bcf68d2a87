"""Scores and tables: per-pair metrics, the per-pair scores file, row means with significance
marks, every row against the ground-truth USM over pairs and over people. Numbers only;
`psm_jax.evaluation.report` writes them as markdown.

Every row's per-pair scores are written to `<protocol>_scores.csv` (`write_scores`: one line per
(row, image, observer), columns `SCORE_COLUMNS`) and the table is computed from that file as read
back (`read_scores`), so anyone can recompute a table or another statistic from it.

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
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    image_ids = [evaluation.image_ids[i] for i in evaluation.image]
    observer_ids = [evaluation.observer_ids[o] for o in evaluation.observer]
    temporary = path.with_name(path.name + ".tmp")
    with temporary.open("w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(SCORE_COLUMNS)
        for row_id, values in scores.items():
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
        also "versus_mean_embedding" (against the mean-embedding control).
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
    scores = pair_scores.rows
    people = people_lib.People(pair_scores.observer_ids, pair_scores.image_ids)
    by_people = people.n >= people_lib.MIN_PEOPLE_FOR_WILCOXON
    cells = {}
    for row in rows:
        values = scores[row.id]
        # The asterisk compares methods; the controls are not ones.
        others = {
            other: s for other, s in scores.items() if other not in (row.id, *methods.CONTROLS)
        }
        cells[row.id] = {"name": row.name}
        usm_scores = scores[methods.GT_USM]
        for metric in METRICS:
            significant = False
            if row.id == methods.OURS and others:
                sign = 1.0 if metrics.HIGHER_IS_BETTER[metric] else -1.0
                strongest = max(others, key=lambda o: sign * np.nanmean(others[o][metric]))
                if by_people:
                    versus = people.versus(values[metric], others[strongest][metric], metric)
                    better = sign * np.nanmean(versus["differences"]) > 0
                    significant = bool(better and versus["p"] < 0.05)
                else:
                    comparison = metrics.compare(values, others[strongest], [metric])[metric]
                    significant = bool(comparison["significant"])
            cells[row.id][metric] = {
                "mean": float(np.nanmean(values[metric])),
                "significant": significant,
                "versus_usm": versus_reference(values[metric], usm_scores[metric], metric, people),
            }
            if row.id == methods.OURS and methods.EMBEDDING_MEAN in scores:
                cells[row.id][metric]["versus_mean_embedding"] = versus_reference(
                    values[metric], scores[methods.EMBEDDING_MEAN][metric], metric, people
                )
            if row.given_predicted_usm and methods.PREDICTED_USM in scores:
                cells[row.id][metric]["versus_predicted_usm"] = versus_reference(
                    values[metric], scores[methods.PREDICTED_USM][metric], metric, people
                )
        gain = values.get(INFORMATION_GAIN)
        cells[row.id][INFORMATION_GAIN] = float(np.nanmean(gain)) if gain is not None else np.nan
    predicted_usm_cc = None
    predicted = [row for row in rows if row.id == methods.PREDICTED_USM]
    if predicted:
        first = np.unique(evaluation.image, return_index=True)[1]  # one pair per image
        predicted_usm_cc = float(
            np.mean(metrics.cc(predicted[0].psm[first], evaluation.pair_usm[first]))
        )
    title = (
        f"{evaluation.dataset}, {evaluation.protocol} set "
        f"({len(evaluation.image)} (image, observer) pairs, {people.n} people)"
    )
    return Table(
        title=title,
        protocol=evaluation.protocol,
        usm_floor=float(usm_floor),
        m=int(m),
        pairs=len(evaluation.image),
        rows=cells,
        discrepancy_weight=float(discrepancy_weight),
        predicted_usm_cc=predicted_usm_cc,
        people=people.n,
        significance="people" if by_people else "pairs",
    )
