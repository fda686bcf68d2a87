"""Scores and tables: per-pair metrics, row means with the papers' significance marks, every row
against the ground-truth USM. Numbers only; `psm_jax.evaluation.report` writes them as markdown.

A table row is the mean of the five reported metrics (`psm_jax.metrics.saliency_metrics`) over the
protocol's pairs. The papers' asterisk marks a metric where the embedding network (the `embedding`
row) beats the strongest other row with a Mann-Whitney p < 0.05. Beside it, every row is compared
with the ground-truth USM, the question the papers ask (does personalising beat the population
map?): the difference of the means and the paired Wilcoxon signed-rank p on the same pairs, per
metric, and the information gain over the USM in bits per fixation
(`psm_jax.metrics.information_gain`; 0 for the USM itself). Every table records the USM floor, the
discrepancy weight and the m it was computed with.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np

from psm_jax import metrics
from psm_jax.evaluation import methods
from psm_jax.evaluation.pairs import EvaluationSet

METRICS = ("cc", "sim", "auc_judd", "nss", "kld")
INFORMATION_GAIN = "information_gain"


def versus_usm(values: np.ndarray, usm_values: np.ndarray) -> dict[str, float]:
    """A row's per-pair scores against the ground-truth USM's on the same pairs: the difference
    of the means and the two-sided paired Wilcoxon p (pairs where either is NaN left out)."""
    finite = np.isfinite(values) & np.isfinite(usm_values)
    return {
        "difference": float(np.mean(values[finite]) - np.mean(usm_values[finite])),
        "p": metrics.wilcoxon_p(values[finite], usm_values[finite]),
    }


def versus_reference(
    values: np.ndarray, reference: np.ndarray, observer: np.ndarray
) -> dict[str, float | list[float]]:
    """A row's per-pair scores against another row's on the same pairs (`versus_usm`), with each
    observer's mean difference ("observer_differences", in observer order), so that a reader can
    count the people it helps."""
    finite = np.isfinite(values) & np.isfinite(reference)
    result = versus_usm(values, reference)
    result["observer_differences"] = [
        float(np.mean(values[own] - reference[own]))
        for own in ((observer == o) & finite for o in np.unique(observer))
        if own.any()
    ]
    return result


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
        "versus_usm": {"difference", "p"}}, "information_gain": bits per fixation}, in table
        order; a row given the universal model's USM (`methods.Row.given_predicted_usm`) also
        has, per metric,
        "versus_predicted_usm" (`versus_reference` against the universal model's own map).
      predicted_usm_cc: the mean per-image CC between the universal model's USM and the
        ground-truth USM (None without a universal model).
    """

    title: str
    protocol: str
    usm_floor: float
    m: int
    pairs: int
    rows: dict[str, dict]
    discrepancy_weight: float = 1.0  # tables written before the weight existed used the papers' 1
    predicted_usm_cc: float | None = None

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
    scores: dict[str, dict[str, np.ndarray]],
    *,
    usm_floor: float,
    m: int,
    discrepancy_weight: float,
) -> Table:
    """Means per row and metric, with the asterisks (module docstring).

    Args:
      evaluation: the pairs the rows were scored on.
      rows: the rows (`methods.predict_rows`), in table order.
      scores: row id -> metric -> (P,) per-pair scores (`score`).
      usm_floor, m, discrepancy_weight: recorded in the table.
    """
    cells = {}
    for row in rows:
        values = scores[row.id]
        # The papers' asterisk compares methods; the shuffled-embedding control is not one.
        others = {
            other: s
            for other, s in scores.items()
            if other not in (row.id, methods.EMBEDDING_SHUFFLED)
        }
        cells[row.id] = {"name": row.name}
        usm_scores = scores[methods.GT_USM]
        for metric in METRICS:
            significant = False
            if row.id == methods.OURS and others:
                sign = 1.0 if metrics.HIGHER_IS_BETTER[metric] else -1.0
                strongest = max(others, key=lambda o: sign * np.nanmean(others[o][metric]))
                comparison = metrics.compare(values, others[strongest], [metric])[metric]
                significant = bool(comparison["significant"])
            cells[row.id][metric] = {
                "mean": float(np.nanmean(values[metric])),
                "significant": significant,
                "versus_usm": versus_usm(values[metric], usm_scores[metric]),
            }
            if row.given_predicted_usm and methods.PREDICTED_USM in scores:
                cells[row.id][metric]["versus_predicted_usm"] = versus_reference(
                    values[metric], scores[methods.PREDICTED_USM][metric], evaluation.observer
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
        f"({len(evaluation.image)} (image, observer) pairs)"
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
    )
