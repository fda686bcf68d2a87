"""Markdown of what the evaluators computed: the tables, the studies' sections, report.md.

Nothing here computes a score: `psm_jax.evaluation.scoring` and the evaluators
(`psm_jax.evaluation.evaluators`) do, and this module only writes their results, so that the
main job and `launch/evaluate.py` write the same report from the same results.

report.md, in order: where it came from (`provenance_markdown`: code, command, machine, date, wall
time), what was scored and how (the composition, m), what was trained (the dataset's summary and
each model's schedule), what the results say (sentences generated from the numbers), how to read
it (`reading_guide_markdown`: every metric with its direction, every row present), then per
protocol its table, every row against the ground-truth USM, the PSM network's ReLU activity
(closed set) and the example grid; precision@1 versus m with the t-SNE; the
embedding-versus-preference alignment (synthetic data).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from psm_jax import disk, metrics
from psm_jax.evaluation import methods
from psm_jax.evaluation.scoring import INFORMATION_GAIN, METRICS, Table, observers_better

HEADERS = {"cc": "CC", "sim": "SIM", "auc_judd": "AUC-Judd", "nss": "NSS", "kld": "KLD"}
NAMES = {**HEADERS, INFORMATION_GAIN: "IG", "precision_at_1": "precision@1"}
"""Every metric the report shows, by its short name (`metrics.DEFINITIONS` says what each is)."""


def heading(metric: str) -> str:
    """The metric's short name with its direction: "CC ↑" (higher is better), "KLD ↓"."""
    return f"{NAMES[metric]} {'↑' if metrics.HIGHER_IS_BETTER[metric] else '↓'}"


def table_markdown(table: Table, directions: bool = True) -> str:
    """The table as markdown: one row per method, an asterisk where significant, and what the
    asterisk tested. `directions`: each metric's header says whether higher or lower is better
    ("CC ↑"; False: the bare names, as the README's recorded tables were rendered)."""
    header = (
        "| Method | "
        + " | ".join(heading(m) if directions else HEADERS[m] for m in METRICS)
        + " |\n|---|"
        + "---|" * len(METRICS)
        + "\n"
    )
    lines = [
        f"| {row['name']} | "
        + " | ".join(f"{row[m]['mean']:.3f}{'*' if row[m]['significant'] else ''}" for m in METRICS)
        + " |"
        for row in table.rows.values()
    ]
    return f"### {table.title}\n\n" + header + "\n".join(lines) + "\n\n" + _asterisk(table) + "\n"


def _asterisk(table: Table) -> str:
    if table.significance == "people":
        return (
            "\\* the embedding network beats the strongest other row (controls aside; given the "
            "universal model's USM, among the rows a new image allows) over people: "
            f"Wilcoxon signed-rank test of the {table.people} observers' mean differences, "
            "p < 0.05."
        )
    if table.people is None:
        return (
            "\\* the embedding network beats the strongest other row with a Mann-Whitney p < 0.05 "
            "over pairs (the papers' test, which treats pairs as independent; a table computed "
            "before the statistics over people)."
        )
    return (
        "\\* the embedding network beats the strongest other row (controls aside) with a "
        f"Mann-Whitney p < 0.05 over pairs (the papers' test; with {table.people} observers no "
        "test over people is used for it, and pairs are not independent)."
    )


def versus_usm_markdown(table: Table) -> str:
    """Each row against the ground-truth USM: over pairs (the difference and the paired
    Wilcoxon p per metric, and the information gain in bits per fixation), then over people
    (`people_markdown`)."""
    header = (
        "| Method | "
        + " | ".join(f"{HEADERS[m]} diff. (p)" for m in METRICS)
        + " | IG (bits/fix.) |\n|---|"
        + "---|" * (len(METRICS) + 1)
        + "\n"
    )
    lines = []
    for row_id, row in table.rows.items():
        if row_id == methods.GT_USM:
            continue
        cells = [
            f"{row[m]['versus_usm']['difference']:+.3f} ({_p(row[m]['versus_usm']['p'])})"
            for m in METRICS
        ]
        lines.append(
            f"| {row['name']} | " + " | ".join(cells) + f" | {row[INFORMATION_GAIN]:+.3f} |"
        )
    text = (
        f"#### Against the ground-truth USM ({table.protocol} set), over pairs: paired Wilcoxon "
        "p on the same pairs, which treats every (image, observer) pair as independent\n\n"
        + header
        + "\n".join(lines)
        + "\n"
    )
    people = people_markdown(table, "versus_usm", "the ground-truth USM")
    return text + ("\n" + people if people else "")


def people_markdown(table: Table, key: str, reference: str) -> str:
    """Each row's statistics over people against `reference` (the cells' `key`): the mean
    difference with its 95% bootstrap interval over observers and images, the people better on
    average (k of n) and the test over people (W: Wilcoxon signed-rank; S: the exact sign test,
    below 6 people). "" for a table without them."""
    rows = {
        row_id: row
        for row_id, row in table.rows.items()
        if row_id != methods.GT_USM and "people" in row["cc"].get(key, {})
    }
    if not rows:
        return ""
    header = (
        "| Method | "
        + " | ".join(f"{HEADERS[m]} diff. [95% interval] k/n (p)" for m in METRICS)
        + " |\n|---|"
        + "---|" * len(METRICS)
        + "\n"
    )
    lines = []
    for row in rows.values():
        cells = []
        for metric in METRICS:
            versus = row[metric][key]
            against = f" vs {versus['row']}" if "row" in versus else ""
            cells.append(f"{versus['difference']:+.3f} {_people_cell(versus['people'])}{against}")
        lines.append(f"| {row['name']} | " + " | ".join(cells) + " |")
    return (
        f"#### Against {reference} ({table.protocol} set), over people: each observer's mean "
        "difference; k of n people better; W = Wilcoxon signed-rank over people, S = exact sign "
        "test (fewer than 6 people: no test over 5 people or fewer reaches p < 0.05); the "
        "interval resamples observers and images\n\n" + header + "\n".join(lines) + "\n"
    )


def _people_cell(people: dict) -> str:
    low, high = people["interval"]
    test = {"wilcoxon": "W", "sign": "S"}.get(people["test"], "")
    return f"[{low:+.3f}, {high:+.3f}] {people['better']}/{people['n']} ({test} {_p(people['p'])})"


def strongest_markdown(table: Table) -> str:
    """The embedding network against the strongest other row (controls aside) per metric, over
    pairs and over people, as `people_markdown` writes them; "" without that comparison."""
    row = table.rows.get(methods.OURS, {})
    if "versus_strongest" not in row.get("cc", {}):
        return ""
    names = {row_id: other["name"] for row_id, other in table.rows.items()}
    lines = []
    for metric in METRICS:
        versus = row[metric]["versus_strongest"]
        lines.append(
            f"| {HEADERS[metric]} | {names.get(versus['row'], versus['row'])} | "
            f"{versus['difference']:+.3f} ({_p(versus['p'])}) | {_people_cell(versus['people'])} |"
        )
    return (
        f"#### {row['name']} against the strongest other row (controls aside) per metric "
        f"({table.protocol} set): over pairs the difference (paired Wilcoxon p), over people the "
        "95% interval resampling observers and images, k of n people better and the test over "
        "people (W = Wilcoxon signed-rank, S = exact sign test)\n\n"
        "| Metric | Strongest other row | Diff. (p over pairs) | Over people [95% interval] k/n "
        "(p) |\n|---|---|---|---|\n" + "\n".join(lines) + "\n"
    )


def pooled_markdown(table: Table) -> str:
    """A table of pooled scores (`scoring.pool_scores`: the folds of
    `studies/observer_folds.py`): the means, every row against the ground-truth USM, the
    embedding network against the mean-embedding control and against the strongest other
    row."""
    sections = [
        table_markdown(table),
        versus_usm_markdown(table),
        real_use_markdown(table),
        people_markdown(table, "versus_mean_embedding", "the mean-embedding control"),
        people_markdown(table, "versus_no_embedding", "the no-embedding control"),
        people_markdown(table, "versus_alike", "the strongest baseline trained alike"),
        strongest_markdown(table),
    ]
    return "\n".join(section for section in sections if section)


def real_use_markdown(table: Table) -> str:
    """The real-use rows (given the predicted USM) against the universal model's own map: the
    difference, the paired Wilcoxon p over pairs and how many observers are better on average,
    per metric; with the CC between the predicted and the ground-truth USMs. "" without them."""
    rows = {
        row_id: row
        for row_id, row in table.rows.items()
        if "versus_predicted_usm" in row.get("cc", {})
    }
    if not rows and table.predicted_usm_cc is None:
        return ""
    text = (
        f"#### Real use: against the universal model's own map ({table.protocol} set)\n\n"
        "Every personalised model given the universal model's USM of the test image instead of "
        "the ground truth (the embedding network's observers embedded from pairs with "
        "predicted USMs too), against that predicted USM alone: the difference of the means, "
        "the paired Wilcoxon p over pairs, and the people better on average (k of n).\n\n"
    )
    if table.predicted_usm_cc is not None:
        text += (
            "Mean per-image CC between the predicted and the ground-truth USMs: "
            f"{table.predicted_usm_cc:.3f}.\n\n"
        )
    if rows:
        text += (
            "| Method | "
            + " | ".join(f"{HEADERS[m]} diff. (pairs p) [people]" for m in ("cc", "sim", "kld"))
            + " |\n|---|---|---|---|\n"
        )
        for row in rows.values():
            cells = []
            for metric in ("cc", "sim", "kld"):
                versus = row[metric]["versus_predicted_usm"]
                count = _people_count(versus, metric)
                cells.append(f"{versus['difference']:+.3f} ({_p(versus['p'])}) [{count}]")
            text += f"| {row['name']} | " + " | ".join(cells) + " |\n"
        people = people_markdown(table, "versus_predicted_usm", "the universal model's own map")
        if people:
            text += "\n" + people
    return text


def _people_count(versus: dict, metric: str) -> str:
    """ "k of n" people better, with the test over people where the table has one (tables written
    before it kept only the observers' differences)."""
    people = versus.get("people")
    if people is None:
        differences = versus["observer_differences"]
        return f"{observers_better(differences, metric)} of {len(differences)}"
    test = {"wilcoxon": "Wilcoxon", "sign": "sign test"}.get(people["test"], people["test"])
    return f"{people['better']} of {people['n']}, {test} over people {_p_clause(people['p'])}"


def write_table(table: Table, output_dir: str | Path) -> Path:
    """Writes `<protocol>.json` (`Table.write_json`) and `<protocol>.md` (the table, every row
    against the ground-truth USM, the real-use rows against the predicted USM) into
    `output_dir`; returns the .md path."""
    table.write_json(output_dir)
    path = Path(output_dir) / f"{table.protocol}.md"
    real_use = real_use_markdown(table)
    path.write_text(
        table_markdown(table)
        + "\n"
        + versus_usm_markdown(table)
        + ("\n" + real_use if real_use else "")
    )
    return path


def _p(value: float) -> str:
    if value == 0.0:  # below the smallest float64
        return "<1e-300"
    return f"{value:.2g}" if value >= 1e-3 else f"{value:.0e}"


def precision_markdown(
    precision: dict[int, float],
    predicted_usm: dict[int, float] | None = None,
    usms: str = "ground-truth USMs",
    details: dict[int, dict] | None = None,
) -> str:
    """Precision@1 versus m, the sets' pairs with `usms` (what the encoder read: its training's
    USMs); `predicted_usm`: the same people enrolled on the universal model's USMs of their
    images (real use), a second row; `details`: per m the sets per observer, the people and the
    chance (`psm_jax.evaluation.embeddings.precision_at_1_versus_m`), rows beneath."""
    people = {d["people"] for d in (details or {}).values()}
    heading = "### Precision@1 of unseen (test) observers' embeddings versus m"
    if details:
        heading += (
            f" ({', '.join(str(p) for p in sorted(people))} people; each person's sets share no "
            "image)"
        )
    lines = [
        heading + "\n",
        "| m | " + " | ".join(str(m) for m in precision) + " |",
        "|---|" + "---|" * len(precision),
        f"| precision@1 ({usms}{', real use' if usms == 'predicted USMs' else ''}) | "
        + " | ".join(f"{p:.3f}" for p in precision.values())
        + " |",
    ]
    if predicted_usm:
        lines.append(
            "| precision@1 (predicted USMs, real use) | "
            + " | ".join(f"{predicted_usm[m]:.3f}" for m in precision)
            + " |"
        )
    if details:
        lines.append(
            "| sets per person | "
            + " | ".join(str(details[m]["sets_per_observer"]) for m in precision)
            + " |"
        )
        lines.append(
            "| chance | " + " | ".join(f"{details[m]['chance']:.3f}" for m in precision) + " |"
        )
    return "\n".join(lines) + "\n"


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
        ours.append("our USM floor; the papers clip at 0: usm_floor=0 in the evaluation config")
    if discrepancy_weight != 1:
        ours.append("our discrepancy weight; the papers': discrepancy_weight=1")
    notes = f" ({'; '.join(ours)})" if ours else ""
    text = f"Predicted PSM = clip(USM + {weighted}predicted discrepancy, {floor}, 1){notes}"
    if log_ratio_scale is not None:
        text += (
            "; the embedding network's (trained with --config.composition=log_ratio, ours): "
            f"USM x exp({log_ratio_scale:g} x its output), peak 1, as trained"
        )
    return text


def write_report(
    path: str | Path,
    results: dict,
    *,
    dataset: str,
    usm_floor: float,
    discrepancy_weight: float,
    m: int,
    dataset_summary: str,
    runs: dict[str, dict],
    log_ratio_scale: float | None = None,
    wall_time: str = "",
    provenance: dict[str, str] | None = None,
) -> Path:
    """report.md from an evaluation's results (`psm_jax.evaluation.evaluators.Evaluation.results`).

    Args:
      path: where report.md goes; figures are linked relative to it (they lie in its
        `report/` folder, beside the tables).
      results: the evaluators' results.
      dataset, usm_floor, discrepancy_weight, m: what was scored and how.
      dataset_summary, runs: what was trained (`training_markdown`).
      log_ratio_scale: the PSM network's s when it composes in log space (`composition`).
      wall_time: a sentence on how long it took (e.g. "Main job wall time: 480 s.").
      provenance: where the report came from (`psm_jax.evaluation.provenance.record`).
    """
    path = Path(path)
    tables = results.get("tables", {})
    sections = [
        training_markdown(dataset_summary, runs),
        findings_markdown(
            tables,
            results.get("precision_at_1", {}),
            details=results.get("precision_details", {}),
            activity=results.get("activity"),
            m=m,
        ),
        reading_guide_markdown(tables, precision="precision_at_1" in results),
    ]
    figure_dir = "report"
    for protocol, table in tables.items():
        sections += [table_markdown(table), versus_usm_markdown(table)]
        real_use = real_use_markdown(table)
        if real_use:
            sections.append(real_use)
        if protocol == "closed" and results.get("activity"):
            sections.append(activity_markdown(results["activity"], results["activity_pairs"]))
        example = results.get("examples", {}).get(protocol)
        if example is not None:
            sections.append(
                f"![{protocol}-set examples]({figure_dir}/{Path(example).name})\n\n"
                f"Example maps ({protocol} set): each row one test image (its id at the left), "
                "each pair of columns one observer's ground-truth and predicted PSM.\n"
            )
    if "precision_at_1" in results:
        sections.append(
            precision_markdown(
                results["precision_at_1"],
                results.get("precision_at_1_predicted_usm"),
                results.get("precision_usms", "ground-truth USMs"),
                results.get("precision_details"),
            )
        )
    if "tsne" in results:
        name = Path(results["tsne"]).name
        sections.append(f"![t-SNE of unseen observers' embeddings]({figure_dir}/{name})\n")
    if results.get("preference_alignment"):
        sections.append(alignment_markdown(results["preference_alignment"]))
    text = (
        f"# psm-jax report: {dataset}\n\n"
        + provenance_markdown(provenance or {}, wall_time)
        + "\n"
        + composition(usm_floor, discrepancy_weight, log_ratio_scale)
        + "; means over (test image, observer) pairs; evaluated observers embedded from "
        f"m = {m} pairs of their own training images. Every row's per-pair scores: "
        "report/<protocol>_scores.csv. What each metric and row is: "
        "[How to read this report](#how-to-read-this-report).\n\n" + "\n".join(sections)
    )
    with disk.writing(path, what_to_do="write it on another disk"):
        path.write_text(text)
    return path


PROVENANCE_FIELDS = {
    "Code": "version",
    "Command": "command",
    "Machine": "machine",
    "Date": "date",
}
"""The provenance lines at the top of report.md: label -> key of
`psm_jax.evaluation.provenance.record`."""


def provenance_markdown(provenance: dict[str, str], wall_time: str = "") -> str:
    """Where a report came from, one bullet each: the code (psm-jax's version and git commit),
    the command as run, the machine, the date, and `wall_time` (a sentence); "unknown" for what
    `provenance` lacks."""
    lines = []
    for label, key in PROVENANCE_FIELDS.items():
        value = provenance.get(key, "unknown")
        if key == "version":
            value = f"psm-jax {value}, commit {provenance.get('commit', 'unknown')}"
        elif key == "command" and value != "unknown":
            value = f"`{value}`"
        lines.append(f"- {label}: {value}")
    if wall_time:
        lines.append(f"- {wall_time}")
    return "\n".join(lines) + "\n"


_PROVENANCE_BLOCK = re.compile(r"\A(# [^\n]*\n\n)(?:- [^\n]*\n)+\n")


def without_provenance(text: str) -> str:
    """report.md without its provenance lines (which differ between any two runs): two runs'
    reports compare equal on the rest when their results are the same."""
    return _PROVENANCE_BLOCK.sub(r"\1", text, count=1)


def reading_guide_markdown(tables: dict[str, Table], precision: bool = False) -> str:
    """ "How to read this report": every metric the report shows, what it measures and whether
    higher or lower is better (`metrics.DEFINITIONS`), the marks in the tables, and every row
    present in `tables` (`methods.ROW_GLOSSARY`); `precision`: the report has precision@1."""
    shown = [*METRICS, INFORMATION_GAIN] + (["precision_at_1"] if precision else [])
    lines = [
        "## How to read this report\n",
        "Each map metric scores one predicted map against one person on one test image (their "
        "ground-truth PSM for CC, SIM and KLD; their fixations for AUC-Judd, NSS and IG); the "
        "tables give the mean over the (test image, observer) pairs. ↑: higher is better; ↓: "
        "lower is better.\n",
    ]
    for metric in shown:
        lines.append(f"- **{heading(metric)}**: {metrics.DEFINITIONS[metric]}.")
    lines += [
        "",
        "A \"diff.\" is the row's mean minus the reference's (the ground-truth USM unless the "
        "heading names another): positive is better for every metric but KLD, where negative is "
        "better. p: the test's p-value; k/n: k of n people better on average. An asterisk marks "
        "where the embedding network beats the strongest other row (the note under each table "
        "says which test: over people where there are 6 or more, else the papers' Mann-Whitney "
        'over pairs). "(ours)": a row this project adds (a baseline without learning or a '
        'control), not in the papers; "w/ GT USM": the model given the test image\'s '
        'ground-truth USM, as in the papers; "w/ predicted USM": given the universal '
        "network's USM instead, as for a new image (real use).\n",
        "The closed set is the training observers on test images; the open set, observers no "
        'model was trained on ("their own data" below: their training images in the closed '
        "set, their m enrolment pairs in the open set). The rows:\n",
    ]
    names: dict[str, str] = {}
    for table in tables.values():
        for row_id, row in table.rows.items():
            names.setdefault(row_id, row["name"])
    for row_id, name in names.items():
        what = methods.ROW_GLOSSARY.get(row_id, "")
        lines.append(f"- {name} (`{row_id}`)" + (f": {what}." if what else "."))
    return "\n".join(lines) + "\n"


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
        if model == "per_observer" and config.get("architecture"):
            # the only model the field chooses for (the multi-task CNN is Xu et al.'s whatever
            # it says)
            other.append(methods.ARCHITECTURE_NAMES.get(config.architecture, config.architecture))
        if config.get("usm") == "external":
            other.append("trained on predicted USMs")
        if model == "universal" and (config.get("network") or {}).get("backbone"):
            network = config.network
            height, width = network.input_size
            other.append(f"readout of frozen {network.backbone} at {height}x{width}")
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
    """CC, SIM and KLD of a row against the ground-truth USM: better or worse by the test over
    people where there are 6 people or more, else by the pairs' (labelled so); k of n always."""
    parts = []
    for metric in ("cc", "sim", "kld"):
        parts.append(_clause(table.rows[row_id][metric]["versus_usm"], metric))
    return "; ".join(parts)


def _clause(versus: dict, metric: str) -> str:
    """ "<metric> better/worse/no different (difference, p <test>; k of n people better)": by
    the Wilcoxon test over people where the table has 6 people or more, else by the pairs'
    test, labelled as such, with the exact sign test over people beside it."""
    difference = versus["difference"]
    better = (difference > 0) == metrics.HIGHER_IS_BETTER[metric]
    people = versus.get("people")
    if people is not None and people["test"] == "wilcoxon":
        p, label = people["p"], "Wilcoxon over people"
        count = f"; {people['better']} of {people['n']} people better"
    else:
        p, label = versus["p"], "over pairs, which are not independent"
        count = ""
        if people is not None:
            count = (
                f"; {people['better']} of {people['n']} people better, sign test over people "
                f"{_p_clause(people['p'])}"
            )
    word = ("better" if better else "worse") if p < 0.05 else "no different"
    return f"{HEADERS[metric]} {word} ({difference:+.3f}, {_p_clause(p)} {label}{count})"


def _real_use_clause(row: dict) -> str:
    """A row's CC, SIM and KLD against the universal model's own map (`_clause`)."""
    return "; ".join(_clause(row[m]["versus_predicted_usm"], m) for m in ("cc", "sim", "kld"))


def findings_markdown(
    tables: dict[str, Table],
    precision: dict[int, float],
    details: dict[int, dict],
    activity: dict[str, float] | None,
    *,
    m: int,
) -> str:
    """What the run's results say, in sentences generated from them (not pasted): does the
    embedding network beat the ground-truth USM per protocol, did the encoder tell unseen people
    apart at the evaluation's `m` (the m the tables embed people from), is the PSM network's
    embedding-generated layer alive; and the caveats."""
    lines = ["## What the results say\n"]
    for protocol, table in tables.items():
        if methods.OURS not in table.rows:
            continue
        ours = table.rows[methods.OURS]
        gain = ours[INFORMATION_GAIN]
        real_use = "versus_predicted_usm" in ours["cc"]  # trained on predicted USMs
        if real_use:
            lines.append(
                f"- {protocol.capitalize()} set (real use): the embedding network, trained and "
                "enrolled on the universal model's USMs and given its USM of each test image, "
                f"against that USM alone: {_real_use_clause(ours)}. Against the ground-truth "
                f"USM, which a new image does not have: {_verdict(table, methods.OURS)}."
            )
        else:
            lines.append(
                f"- {protocol.capitalize()} set: the embedding network against the ground-truth "
                f"USM: {_verdict(table, methods.OURS)}; information gain {gain:+.3f} bits/fixation."
            )
        excluded = {methods.OURS, methods.GT_USM, *methods.CONTROLS}
        if real_use:
            excluded.add(methods.PREDICTED_USM)
        beaten = [
            row["name"]
            for row_id, row in table.rows.items()
            if row_id not in excluded
            # only rows given the same USM compare: the ground truth's, or the universal model's
            and ("versus_predicted_usm" in row["cc"]) == real_use
            and row["kld"]["mean"] < ours["kld"]["mean"]
        ]
        if beaten:
            lines.append(f"  Rows with a lower KLD than the embedding network: {', '.join(beaten)}")
        control = table.rows.get(methods.EMBEDDING_SHUFFLED)
        if control is not None:
            lines.append(
                "  Given another observer's embedding instead (control), it scores CC "
                f"{control['cc']['mean']:.3f} / KLD {control['kld']['mean']:.3f} against "
                f"{ours['cc']['mean']:.3f} / {ours['kld']['mean']:.3f} with the person's own."
            )
        if "versus_mean_embedding" in ours["cc"]:
            versus_mean = "; ".join(
                _clause(ours[m]["versus_mean_embedding"], m) for m in ("cc", "sim", "kld")
            )
            lines.append(
                "  Against the same network given the training observers' mean embedding "
                f"(control: what is personal in the gain): {versus_mean}."
            )
        if "versus_no_embedding" in ours["cc"]:
            versus_none = "; ".join(
                _clause(ours[m]["versus_no_embedding"], m) for m in ("cc", "sim", "kld")
            )
            lines.append(
                "  Against the same recipe trained with no embedding (control: a universal "
                f"refiner of the USM): {versus_none}."
            )
        if "versus_alike" in ours["cc"]:
            versus_alike = "; ".join(
                f"{_clause(ours[m]['versus_alike'], m)} (vs {ours[m]['versus_alike']['row']})"
                for m in ("cc", "sim", "kld")
            )
            lines.append(
                "  Against the strongest baseline trained alike (the multi-task CNN or the "
                f"per-observer networks with its composition, loss and examples): {versus_alike}."
            )
        enrolled = table.rows.get(methods.EMBEDDING_PREDICTED)
        if enrolled is not None:
            lines.append(
                "  Real use, given the universal model's USM and enrolled on predicted USMs, "
                f"against that USM alone: {_real_use_clause(enrolled)}."
            )
    if precision:
        scored = precision.get(m, float("nan"))
        chance = details.get(m, {}).get("chance", float("nan"))
        people = details.get(m, {}).get("people")
        sets = details.get(m, {}).get("sets_per_observer")
        who = f"{people} unseen (test) observers" if people else "unseen (test) observers"
        if np.isfinite(scored):
            lines.append(
                f"- The encoder on {who}: precision@1 {scored:.2f} at m = {m}, the evaluation's m"
                + (f", {sets} image-disjoint sets per person" if sets else "")
                + f" (chance {chance:.2f})"
                + ("; it does not tell these people apart." if scored < 2 * chance else ".")
                + " Other m: the table of precision@1 versus m."
            )
        else:
            lines.append(
                f"- The encoder on {who}: no precision@1 at the evaluation's m = {m} (fewer "
                "than two image-disjoint sets per person); other m: the table of precision@1 "
                "versus m."
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
        "synthetic draws: `studies/seed_sweep.py` and RESULTS.md. Another machine "
        "can give slightly different numbers (XLA:CPU reductions depend on the thread count); "
        "one machine repeats a run exactly.",
    ]
    return "\n".join(lines) + "\n"
