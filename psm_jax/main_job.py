"""The main job the README's first command runs: dataset -> trained models -> report.

Stages, each resumable (a finished stage's workdir is reused, an interrupted one resumes from its
last checkpoint):
  1. build the dataset (the synthetic default unless told otherwise);
  2. train the user-embedding encoder (Strohm et al.);
  3. train the personalised saliency network on the encoder's embedding pool;
  4. train the baselines: the multi-task CNN (Xu et al.) and the per-observer networks;
  5. train the universal saliency network (the predicted-USM row);
  6. evaluate closed and open set and the unseen observers' embedding precision@1 versus m, draw
     example grids and a t-SNE of embeddings, and write `<workdir>/report.md`.

Schedules are the quick ones of `psm_jax/configs/synthetic.py` (or the "quick" option of the other
datasets' configs), sized for a 2-core CPU; the papers' schedules are the config defaults.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from psm_jax import evaluate, figures
from psm_jax.configs import id as id_config
from psm_jax.configs import osie, ps, synthetic
from psm_jax.data import datasets, pipeline
from psm_jax.train import loop

DEFAULT_DATASET = "synthetic_personal_saliency"
MODELS = ("embedding", "psm_network", "multi_task", "per_observer", "universal")


def config_for(dataset: str, model: str):
    """The main job's config of `model` on `dataset` (quick schedules)."""
    name = dataset.split("/")[0]
    if name == "synthetic_personal_saliency":
        config = synthetic.get_config(model + (",tiny" if dataset.endswith("/tiny") else ""))
        config.dataset = dataset  # e.g. synthetic_personal_saliency/seed1
        return config
    modules = {
        "osie_personal": osie,
        "personalized_saliency": ps,
        "individual_differences": id_config,
    }
    if name not in modules:
        raise ValueError(f"The main job does not know dataset {dataset!r}.")
    return modules[name].get_config(model + ",quick")


def run(
    dataset: str = DEFAULT_DATASET,
    *,
    data_dir: str = datasets.DEFAULT_DATA_DIR,
    manual_dir: str | None = None,
    workdir: str | None = None,
    m: int | None = None,
    usm_floor: float = evaluate.USM_FLOOR,
) -> dict:
    """Runs every stage; returns {"closed": rows, "open": rows, "report": path, "seconds": s}."""
    start = time.perf_counter()
    stage_start = [start]

    def done(what: str) -> None:
        now = time.perf_counter()
        print(
            f"      {what} in {now - stage_start[0]:.0f} s ({now - start:.0f} s so far)", flush=True
        )
        stage_start[0] = now

    workdir = Path(workdir or Path("runs") / dataset.replace("/", "_"))
    print(f"[1/6] Preparing {dataset} in {data_dir} (reused if already built)...", flush=True)
    builder = datasets.build_dataset(dataset, data_dir=data_dir, manual_dir=manual_dir)
    print(datasets.summarise(builder), flush=True)
    done("dataset ready")

    workdirs = {}
    stages = {"embedding": 2, "psm_network": 3, "multi_task": 4, "per_observer": 4, "universal": 5}
    for model in MODELS:
        config = config_for(dataset, model)
        config.data_dir = data_dir
        if manual_dir:
            config.manual_dir = manual_dir
        if model == "psm_network":
            config.encoder_workdir = str(workdirs["embedding"])
        workdirs[model] = workdir / model
        print(
            f"[{stages[model]}/6] Training {model} ({config.num_steps} steps, batch "
            f"{config.batch_size}) in {workdirs[model]} ...",
            flush=True,
        )
        loop.train_and_evaluate(config, workdirs[model])
        done(f"{model} trained")

    print("[6/6] Evaluating closed and open set...", flush=True)
    # Evaluated observers are embedded from m = 32 pairs (the default; the encoder takes any
    # m); the tiny dataset has too few training images for that and uses its training m.
    m = m or (config_for(dataset, "embedding").m if dataset.endswith("/tiny") else 32)
    sections, results = [], {}
    for protocol in ("closed", "open"):
        evaluation = evaluate.evaluation_set(dataset, data_dir, protocol)
        predictions: dict = {}
        scores = evaluate.evaluate(
            evaluation,
            data_dir,
            m=m,
            predictions_out=predictions,
            usm_floor=usm_floor,
            **{k: str(v) for k, v in workdirs.items()},
        )
        rows = evaluate.table(scores)
        title = f"{dataset}, {protocol} set ({len(evaluation.image)} (image, observer) pairs)"
        evaluate.write(rows, title, workdir / "report", protocol)
        sections.append(evaluate.markdown(rows, title))
        results[protocol] = rows
        ours = [name for name in predictions if name.startswith(evaluate.OURS)]
        grid_path = workdir / "report" / f"examples_{protocol}.png"
        if ours and _example_figure(evaluation, predictions[ours[0]], grid_path):
            sections.append(f"![{protocol}-set examples](report/{grid_path.name})\n")
    precision = evaluate.precision_at_1_versus_m(
        str(workdirs["embedding"]), dataset, data_dir, group="test"
    )
    sections.append(
        "### Precision@1 of unseen (test) observers' embeddings versus m\n\n"
        "| m | " + " | ".join(str(m) for m in precision) + " |\n"
        "|---|" + "---|" * len(precision) + "\n"
        "| precision@1 | " + " | ".join(f"{p:.3f}" for p in precision.values()) + " |\n"
    )
    results["precision_at_1"] = precision
    tsne_m = max((k for k, v in precision.items() if np.isfinite(v)), default=None)
    if tsne_m is not None:
        embeddings, labels = evaluate.set_embeddings(
            str(workdirs["embedding"]), dataset, data_dir, group="test", m=tsne_m
        )
        figures.embedding_plot(
            embeddings,
            labels,
            workdir / "report" / "embeddings_tsne.png",
            f"t-SNE of unseen observers' embeddings (m = {tsne_m})",
        )
        sections.append("![t-SNE of unseen observers' embeddings](report/embeddings_tsne.png)\n")
    alignment = _preference_alignment(str(workdirs["embedding"]), dataset, data_dir, m)
    if alignment:
        results["preference_alignment"] = alignment
        sections.append(
            "### Embedding distances versus the simulated observers' preference distances\n\n"
            "| Observers | pairs | Spearman r | Mantel p |\n|---|---|---|---|\n"
            + "".join(
                f"| {group} | {a['pairs']:.0f} | {a['spearman']:.3f} | {a['p_value']:.3f} |\n"
                for group, a in alignment.items()
            )
        )
    done("evaluated")
    seconds = time.perf_counter() - start
    report = workdir / "report.md"
    report.write_text(
        f"# psm-jax report: {dataset}\n\n"
        + (
            "Predicted PSM = clip(USM + predicted discrepancy, 0, 1)"
            if usm_floor == 0
            else f"Predicted PSM = clip(USM + predicted discrepancy, {usm_floor:g} x USM, 1) "
            "(our USM floor; the papers clip at 0: --usm_floor=0)"
        )
        + "; means over (test image, "
        f"observer) pairs; * = the embedding network beats the strongest other row (Mann-Whitney "
        f"p < 0.05); embeddings of evaluated observers from m = {m} pairs of their own training "
        f"images. Main job wall time: {seconds:.0f} s.\n\n" + "\n".join(sections)
    )
    print("\n".join(sections))
    print(f"Report: {report} ({seconds:.0f} s)")
    return {**results, "report": report, "seconds": seconds}


def _preference_alignment(encoder_workdir: str, dataset: str, data_dir: str, m: int) -> dict:
    """Synthetic datasets only (their generator records each observer's preferences): how well
    embedding distances track preference distances, for the training and the unseen observers."""
    _, metadata = pipeline.open_split(dataset, "train", data_dir)
    preferences = metadata.raw.get("release", {}).get("observer_preferences")
    if preferences is None:
        return {}
    preferences = np.asarray(preferences)
    alignment = {}
    for group in ("train", "test"):
        if len(metadata.observers(group)) < 3:  # fewer than 3 pairs: no rank correlation
            continue
        embeddings, labels = evaluate.set_embeddings(
            encoder_workdir, dataset, data_dir, group=group, m=m, sets_per_observer=5
        )
        alignment[group] = evaluate.preference_alignment(
            embeddings, labels, preferences[metadata.observers(group)]
        )
    return alignment


def _example_figure(evaluation, predicted, path: Path, images: int = 3) -> bool:
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
        [f"#{o}" for o in observers],
        path,
    )
    return True
