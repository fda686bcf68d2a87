"""Scores, tables and reports: per-pair metrics, row means with the papers' significance marks,
markdown and JSON tables, the example figures, and the main job's report.md.

A table row is the mean of the five reported metrics (`psm_jax.metrics.saliency_metrics`) over the
protocol's pairs. An asterisk marks a metric where the embedding network (the `embedding` row)
beats the strongest other row with a Mann-Whitney p < 0.05, as in the papers. Every table records
the USM floor, the discrepancy weight and the m it was computed with.

Beside the papers' asterisk, every row is compared with the ground-truth USM, the question the
papers ask (does personalising beat the population map?): the difference of the means and the
paired Wilcoxon signed-rank p on the same pairs, per metric, and the information gain over the
USM in bits per fixation (`psm_jax.metrics.information_gain`; 0 for the USM itself).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np

from psm_jax import figures, metrics
from psm_jax.evaluation import methods
from psm_jax.evaluation.pairs import EvaluationSet

METRICS = ("cc", "sim", "auc_judd", "nss", "kld")
HEADERS = {"cc": "CC", "sim": "SIM", "auc_judd": "AUC-Judd", "nss": "NSS", "kld": "KLD"}
INFORMATION_GAIN = "information_gain"


def versus_usm(values: np.ndarray, usm_values: np.ndarray) -> dict[str, float]:
    """A row's per-pair scores against the ground-truth USM's on the same pairs: the difference
    of the means and the two-sided paired Wilcoxon p (pairs where either is NaN left out)."""
    finite = np.isfinite(values) & np.isfinite(usm_values)
    return {
        "difference": float(np.mean(values[finite]) - np.mean(usm_values[finite])),
        "p": metrics.wilcoxon_p(values[finite], usm_values[finite]),
    }


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
        order.
    """

    title: str
    protocol: str
    usm_floor: float
    m: int
    pairs: int
    rows: dict[str, dict]
    discrepancy_weight: float = 1.0  # tables written before the weight existed used the papers' 1

    def mean(self, row_id: str, metric: str) -> float:
        return self.rows[row_id][metric]["mean"]

    def markdown(self) -> str:
        """The table as markdown: one row per method, an asterisk where significant."""
        header = (
            "| Method | "
            + " | ".join(HEADERS[m] for m in METRICS)
            + " |\n|---|"
            + "---|" * len(METRICS)
            + "\n"
        )
        lines = [
            f"| {row['name']} | "
            + " | ".join(
                f"{row[m]['mean']:.3f}{'*' if row[m]['significant'] else ''}" for m in METRICS
            )
            + " |"
            for row in self.rows.values()
        ]
        return f"### {self.title}\n\n" + header + "\n".join(lines) + "\n"

    def versus_usm_markdown(self) -> str:
        """Each row against the ground-truth USM: the difference and the paired Wilcoxon p per
        metric, and the information gain in bits per fixation."""
        header = (
            "| Method | "
            + " | ".join(f"{HEADERS[m]} diff. (p)" for m in METRICS)
            + " | IG (bits/fix.) |\n|---|"
            + "---|" * (len(METRICS) + 1)
            + "\n"
        )
        lines = []
        for row_id, row in self.rows.items():
            if row_id == methods.GT_USM:
                continue
            cells = [
                f"{row[m]['versus_usm']['difference']:+.3f} ({_p(row[m]['versus_usm']['p'])})"
                for m in METRICS
            ]
            lines.append(
                f"| {row['name']} | " + " | ".join(cells) + f" | {row[INFORMATION_GAIN]:+.3f} |"
            )
        return (
            f"#### Against the ground-truth USM ({self.protocol} set; paired Wilcoxon p, same "
            "pairs)\n\n" + header + "\n".join(lines) + "\n"
        )

    @classmethod
    def read(cls, path: str | Path) -> Table:
        """A table written by `write` (its .json)."""
        return cls(**json.loads(Path(path).read_text()))

    def write(self, output_dir: str | Path) -> Path:
        """Writes `<protocol>.md` and `<protocol>.json` into `output_dir`; returns the .md path."""
        output_dir = Path(output_dir)
        output_dir.mkdir(parents=True, exist_ok=True)
        (output_dir / f"{self.protocol}.json").write_text(
            json.dumps(dataclasses.asdict(self), indent=2)
        )
        path = output_dir / f"{self.protocol}.md"
        path.write_text(self.markdown() + "\n" + self.versus_usm_markdown())
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
        gain = values.get(INFORMATION_GAIN)
        cells[row.id][INFORMATION_GAIN] = float(np.nanmean(gain)) if gain is not None else np.nan
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
    )


def evaluate(
    evaluation: EvaluationSet,
    models: methods.Models,
    *,
    usm_floor: float,
    m: int,
    discrepancy_weight: float,
    grid: tuple[int, int] | None = None,
) -> tuple[Table, list[methods.Row], dict[str, dict[str, np.ndarray]]]:
    """Predicts and scores every row of one protocol: (table, rows, per-pair scores by row id)."""
    rows = methods.predict_rows(
        evaluation, models, usm_floor=usm_floor, m=m, discrepancy_weight=discrepancy_weight
    )
    scores = {row.id: score(evaluation, row.psm, grid) for row in rows}
    recorded = {"usm_floor": usm_floor, "m": m, "discrepancy_weight": discrepancy_weight}
    return table(evaluation, rows, scores, **recorded), rows, scores


def _p(value: float) -> str:
    if value == 0.0:  # below the smallest float64
        return "<1e-300"
    return f"{value:.2g}" if value >= 1e-3 else f"{value:.0e}"


def example_figure(
    evaluation: EvaluationSet, predicted: np.ndarray, path: str | Path, images: int = 3
) -> bool:
    """Image, USM, ground-truth and predicted PSM of the first two observers on up to `images`
    test images that both viewed (Xu Fig. 7 / Strohm Fig. 4). False if no such image exists."""
    observers = np.unique(evaluation.observer)[:2]
    both = [
        i
        for i in np.unique(evaluation.image)
        if all(((evaluation.image == i) & (evaluation.observer == o)).any() for o in observers)
    ][:images]
    if not both:
        return False

    def pair(i, o):
        return int(np.flatnonzero((evaluation.image == i) & (evaluation.observer == o))[0])

    ground_truth = np.stack([[evaluation.psm[pair(i, o)] for o in observers] for i in both])
    prediction = np.stack([[predicted[pair(i, o)] for o in observers] for i in both])
    figures.example_grid(
        evaluation.images[both],
        evaluation.usm[both],
        ground_truth,
        prediction,
        [evaluation.observer_ids[o] for o in observers],
        path,
        title=(
            f"{evaluation.dataset}, {evaluation.protocol} set ({evaluation.group} observers), "
            f"{evaluation.split} images: each observer's ground-truth PSM and the embedding "
            "network's prediction"
        ),
    )
    return True


def precision_markdown(precision: dict[int, float]) -> str:
    return (
        "### Precision@1 of unseen (test) observers' embeddings versus m\n\n"
        "| m | " + " | ".join(str(m) for m in precision) + " |\n"
        "|---|" + "---|" * len(precision) + "\n"
        "| precision@1 | " + " | ".join(f"{p:.3f}" for p in precision.values()) + " |\n"
    )


def alignment_markdown(alignment: dict[str, dict[str, float]]) -> str:
    return (
        "### Embedding distances versus the simulated observers' preference distances\n\n"
        "| Observers | pairs | Spearman r | Mantel p |\n|---|---|---|---|\n"
        + "".join(
            f"| {group} | {a['pairs']:.0f} | {a['spearman']:.3f} | {a['p_value']:.3f} |\n"
            for group, a in alignment.items()
        )
    )


def activity_markdown(activity: dict[str, float], pairs: int) -> str:
    """The PSM network's ReLU layers: live units and channels (`registry.relu_activity`)."""
    layers = [k.split("/", 1)[1] for k in activity if k.startswith("live_units/")]
    return (
        f"### ReLU activity of the PSM network ({pairs} closed-set test pairs)\n\n"
        "A layer whose units never fire passes no gradient (dying ReLU); `dynamic` is the layer "
        "whose kernels the embedding generates.\n\n"
        "| Layer | " + " | ".join(layers) + " |\n|---|" + "---|" * len(layers) + "\n"
        "| live units | "
        + " | ".join(f"{100 * activity[f'live_units/{n}']:.1f}%" for n in layers)
        + " |\n| live channels | "
        + " | ".join(f"{100 * activity[f'live_channels/{n}']:.0f}%" for n in layers)
        + " |\n"
    )


def composition(
    usm_floor: float, discrepancy_weight: float, log_ratio_scale: float | None = None
) -> str:
    """The predicted-PSM composition a report scored, in words; `log_ratio_scale`: the PSM
    network's s when it was trained with the "log_ratio" composition (ours)."""
    weighted = "" if discrepancy_weight == 1 else f"{discrepancy_weight:g} x "
    floor = "0" if usm_floor == 0 else f"{usm_floor:g} x USM"
    ours = []
    if usm_floor != 0:
        ours.append("our USM floor; the papers clip at 0: --usm_floor=0")
    if discrepancy_weight != 1:
        ours.append("our discrepancy weight; the papers': --discrepancy_weight=1")
    notes = f" ({'; '.join(ours)})" if ours else ""
    text = f"Predicted PSM = clip(USM + {weighted}predicted discrepancy, {floor}, 1){notes}"
    if log_ratio_scale is not None:
        text += (
            "; the embedding network's (trained with --config.composition=log_ratio, ours): "
            f"USM x exp({log_ratio_scale:g} x its output), peak 1, as trained"
        )
    return text


def write_main_report(
    path: str | Path,
    *,
    dataset: str,
    usm_floor: float,
    m: int,
    seconds: float,
    sections: list[str],
    discrepancy_weight: float,
    log_ratio_scale: float | None = None,
) -> Path:
    """The main job's report.md: what was scored and how, then the sections in order."""
    path = Path(path)
    path.write_text(
        f"# psm-jax report: {dataset}\n\n"
        + composition(usm_floor, discrepancy_weight, log_ratio_scale)
        + "; means over (test image, "
        f"observer) pairs; * = the embedding network beats the strongest other row (Mann-Whitney "
        f"p < 0.05); embeddings of evaluated observers from m = {m} pairs of their own training "
        "images. Rows marked (ours) are baselines without learning, from the same data the "
        "embedding gets. Each table is followed by every row against the ground-truth USM: the "
        "difference of the means with the paired Wilcoxon p, and the information gain in bits "
        "per fixation (each map made a density as 99% its distribution + 1% uniform). "
        f"Main job wall time: {seconds:.0f} s.\n\n" + "\n".join(sections)
    )
    return path


def training_markdown(dataset_summary: str, runs: dict[str, dict]) -> str:
    """What was trained: the dataset (its summary: sizes, observer split, quality) and, per model,
    its schedule, optimiser, seed and best checkpoint.

    Args:
      dataset_summary: `psm_jax.data.datasets.summarise` of the built dataset.
      runs: model -> {"config": its training config, "step": restored step, "validation_loss"}.
    """
    lines = [
        "## What was trained\n",
        "```",
        dataset_summary,
        "```\n",
        "| Model | Steps | Batch | Optimiser | Learning rate | Seed | Other | Restored step "
        "(best validation loss) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for model, run in runs.items():
        config = run["config"]
        other = []
        if model == "embedding":
            if config.get("embedding_loss", "triplet") == "supervised_contrastive":
                objective = f"supervised contrastive loss, t = {config.get('temperature', 0.1)}"
            else:
                objective = f"triplet loss, margin {config.margin}, {config.mining} mining"
            network = config.get("network") or {}
            other.append(
                f"sets of m = {config.m}, {objective}, {network.get('input_map', 'psm')} input, "
                f"{network.get('pooling', 'mean')} pooling"
                + (", overlapping sets" if config.get("overlapping_sets") else "")
            )
        if model == "psm_network":
            pool = config.embedding_pool_size
            other.append(f"pool of {pool} embeddings per observer at m = {config.m}")
        if config.get("architecture") and model in ("per_observer", "multi_task"):
            other.append(f"{config.architecture} architecture")
        loss = run.get("validation_loss")
        restored = f"{run['step']}" + (f" ({loss:.5g})" if loss is not None else "")
        lines.append(
            f"| {model} | {config.num_steps} | {config.batch_size} | {config.optimizer} | "
            f"{config.learning_rate:g} | {config.seed} | {'; '.join(other) or '-'} | {restored} |"
        )
    return "\n".join(lines) + "\n"


def _p_clause(value: float) -> str:
    text = _p(value)
    return f"p {text}" if text.startswith("<") else f"p = {text}"


def _verdict(table: Table, row_id: str) -> str:
    parts = []
    for metric in ("cc", "sim", "kld"):
        versus = table.rows[row_id][metric]["versus_usm"]
        better = (versus["difference"] > 0) == metrics.HIGHER_IS_BETTER[metric]
        if versus["p"] < 0.05:
            word = "better" if better else "worse"
            difference = versus["difference"]
            parts.append(f"{HEADERS[metric]} {word} ({difference:+.3f}, {_p_clause(versus['p'])})")
        else:
            parts.append(f"{HEADERS[metric]} no different ({_p_clause(versus['p'])})")
    return "; ".join(parts)


def findings_markdown(
    tables: dict[str, Table],
    precision: dict[int, float],
    chance: float,
    activity: dict[str, float] | None,
) -> str:
    """What the run's results say, in sentences generated from them (not pasted): does the
    embedding network beat the ground-truth USM per protocol, did the encoder tell unseen people
    apart, is the PSM network's embedding-generated layer alive; and the caveats."""
    lines = ["## What the results say\n"]
    for protocol, table in tables.items():
        if methods.OURS not in table.rows:
            continue
        gain = table.rows[methods.OURS][INFORMATION_GAIN]
        lines.append(
            f"- {protocol.capitalize()} set: the embedding network against the ground-truth USM: "
            f"{_verdict(table, methods.OURS)}; information gain {gain:+.3f} bits/fixation."
        )
        beaten = [
            row["name"]
            for row_id, row in table.rows.items()
            if row_id not in (methods.OURS, methods.GT_USM, methods.EMBEDDING_SHUFFLED)
            and row["kld"]["mean"] < table.rows[methods.OURS]["kld"]["mean"]
        ]
        if beaten:
            lines.append(f"  Rows with a lower KLD than the embedding network: {', '.join(beaten)}")
        control = table.rows.get(methods.EMBEDDING_SHUFFLED)
        if control is not None:
            ours = table.rows[methods.OURS]
            lines.append(
                "  Given another observer's embedding instead (control), it scores CC "
                f"{control['cc']['mean']:.3f} / KLD {control['kld']['mean']:.3f} against "
                f"{ours['cc']['mean']:.3f} / {ours['kld']['mean']:.3f} with the person's own."
            )
    finite = {m: p for m, p in precision.items() if np.isfinite(p)}
    if finite:
        m = max(finite)
        lines.append(
            f"- The encoder on unseen (test) observers: precision@1 {finite[m]:.2f} at m = {m} "
            f"(chance {chance:.2f})"
            + ("; it does not tell these people apart." if finite[m] < 2 * chance else ".")
        )
    if activity and "live_units/dynamic" in activity:
        live = activity["live_units/dynamic"]
        lines.append(
            f"- The PSM network's embedding-generated layer has {100 * live:.1f}% live units"
            + (
                ": almost dead (dying ReLU), so its discrepancy barely depends on the person."
                if live < 0.01
                else "."
            )
        )
    lines += [
        "",
        "Caveats: one generator draw or one dataset, quick CPU schedules (no model trained to "
        "convergence), settings chosen on validation images. How the results vary across "
        "synthetic draws: `benchmarks/seed_sweep.py` and benchmarks/RESULTS.md. Another machine "
        "can give slightly different numbers (XLA:CPU reductions depend on the thread count); "
        "one machine repeats a run exactly.",
    ]
    return "\n".join(lines) + "\n"
