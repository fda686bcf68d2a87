"""The main job the README's first command runs: dataset -> trained models -> report.

Stages, each resumable (a finished stage's workdir is reused, an interrupted one resumes from its
last checkpoint):
  1. build the dataset (the synthetic default unless told otherwise);
  2-6. train every model of the registry (`psm_jax.registry.MODELS`): the user-embedding encoder,
     the PSM network on the encoder's embedding pool, the multi-task CNN, the per-observer
     networks and the universal network; with the config's `usm_source="predicted"` (the
     default) the universal model trains first and writes its USM of every image to
     `<workdir>/predicted_usm`, which the four others then train on (what a new person's images
     have; `psm_jax.configs.main`);
  then the controls the config names (`psm_jax.configs.main`, `controls`: the no-embedding
     control, the multi-task CNN and per-observer networks trained alike the PSM network), from
     the trained models' configs;
  7. evaluate: the evaluators of the evaluation config (`psm_jax.evaluation.evaluators`: the
     closed- and open-set tables, example grids, the PSM network's activity, precision@1 versus
     m with a t-SNE, the preference alignment), then `<workdir>/report.md` (what was trained, what
     the results say, the tables and studies; `launch/evaluate.py --workdir` writes the same
     from the trained workdirs) and `<workdir>/example_study/` (a new viewer to enrol,
     `write_example_study`).

The main job only sequences these stages; its config is `psm_jax.configs.main` (one training
config per model and the evaluation config). Each model is restored once
(`psm_jax.inference.restore`): the encoder right after its training, since the PSM network's
embedding pool needs it, the universal model likewise where its USMs are written, the others for
the evaluation.
"""

from __future__ import annotations

import time
from pathlib import Path

import ml_collections

from psm_jax import inference, registry
from psm_jax.configs import main as main_configs
from psm_jax.data import datasets, pipeline
from psm_jax.data.releases import table as table_lib
from psm_jax.evaluation import evaluators, methods, report
from psm_jax.train import checkpoint, loop


class _Stages:
    """Prints numbered stage headers and each stage's time."""

    def __init__(self, total: int):
        self.total, self.number = total, 0
        self.start = self.stage_start = time.perf_counter()

    def begin(self, what: str) -> None:
        self.number += 1
        print(f"[{self.number}/{self.total}] {what}", flush=True)

    def done(self, what: str) -> None:
        now = time.perf_counter()
        print(
            f"      {what} in {now - self.stage_start:.0f} s ({now - self.start:.0f} s so far)",
            flush=True,
        )
        self.stage_start = now

    @property
    def seconds(self) -> float:
        return time.perf_counter() - self.start


def run(config: ml_collections.ConfigDict, workdir: str | Path | None = None) -> dict:
    """Runs every stage.

    Args:
      config: the main job's config (`psm_jax.configs.main.get_config`): the dataset, one
        training config per model, the evaluation config. It is checked before anything is
        built or trained; a finished stage's workdir is reused as it is, so give a new workdir
        when the models' configs change.
      workdir: where the runs and the report go (default runs/<dataset>).

    Returns:
      The evaluation's results (`psm_jax.evaluation.evaluators.Evaluation.results`: "tables"
      {protocol: scoring.Table}, "precision_at_1" {m: p}, ...), with "report" (report.md's path)
      and "seconds".
    """
    main_configs.check(config)
    evaluators.check(config.evaluation)
    dataset, data_dir = config.dataset, config.data_dir
    manual_dir = config.manual_dir or None
    controls = main_configs.controls(config)
    stages = _Stages(total=len(config.models) + len(controls) + 2)
    workdir = Path(workdir or Path("runs") / dataset.replace("/", "_"))
    stages.begin(f"Preparing {dataset} in {data_dir} (reused if already built)...")
    builder = datasets.build_dataset(dataset, data_dir=data_dir, manual_dir=manual_dir)
    summary = datasets.summarise(builder)
    print(summary, flush=True)
    stages.done("dataset ready")

    workdirs, encoder, universal = {}, None, None
    predicted_usm_dir = workdir / "predicted_usm"
    order = list(registry.MODELS)  # the registry's order (a ConfigDict iterates sorted)
    if config.usm_source == "predicted":  # the universal model first: the others read its USMs
        order.remove("universal")
        order.insert(0, "universal")
    for model in order:
        if model not in config.models:
            continue
        model_config = ml_collections.ConfigDict(config.models[model].to_dict())  # resolved
        if model == "psm_network":
            model_config.encoder_workdir = str(workdirs["embedding"])
        if config.usm_source == "predicted" and model in main_configs.PERSONALISED:
            model_config.usm = "external"
            model_config.external_usm_dir = str(predicted_usm_dir)
        workdirs[model] = workdir / model
        stages.begin(
            f"Training {model} ({model_config.num_steps} steps, batch {model_config.batch_size}) "
            f"in {workdirs[model]} ..."
        )
        loop.train_and_evaluate(model_config, workdirs[model], encoder=encoder and encoder.model)
        if model == "embedding":
            encoder = inference.restore(workdirs[model], kind="embedding")
        if model == "universal" and config.usm_source == "predicted":
            print(f"      its USMs of every image -> {predicted_usm_dir}", flush=True)
            universal = inference.restore(workdirs[model], kind="universal")
            inference.export_usms(universal, predicted_usm_dir)
        stages.done(f"{model} trained")
    trained = {name: checkpoint.load_config(path) for name, path in workdirs.items() if controls}
    for control in controls:  # trained from the configs as the models were trained
        control_config = main_configs.control_config(control, trained)
        workdirs[control] = workdir / control
        stages.begin(
            f"Training the {control} control ({control_config.num_steps} steps, batch "
            f"{control_config.batch_size}) in {workdirs[control]} ..."
        )
        loop.train_and_evaluate(control_config, workdirs[control])
        stages.done(f"{control} trained")

    stages.begin("Evaluating...")
    models = methods.Models.restore(
        {name: str(path) for name, path in workdirs.items()},
        restored={
            name: model
            for name, model in (("embedding", encoder), ("universal", universal))
            if model is not None
        },
        compute_dtype=config.evaluation.compute_dtype or None,
    )
    evaluation = evaluators.evaluate(models, config.evaluation, workdir / "report")
    study = write_example_study(dataset, data_dir, workdir / "example_study", config.evaluation.m)
    stages.done("evaluated")
    print(
        f"      an example new viewer to enrol (README, 'Enrol and predict a new person'): {study}",
        flush=True,
    )
    path = evaluators.write_report(
        workdir / "report.md",
        evaluation,
        models,
        config.evaluation,
        wall_time=f"Main job wall time: {stages.seconds:.0f} s.",
    )
    # The console gets the two main tables; the report has everything (tests, figures, studies).
    tables = evaluation.results.get("tables", {})
    print("\n".join(report.table_markdown(table) for table in tables.values()))
    print(f"Report: {path} ({stages.seconds:.0f} s)")
    return {**evaluation.results, "report": path, "seconds": stages.seconds}


def write_example_study(dataset: str, data_dir: str, out: Path, m: int) -> Path:
    """A new viewer's study, as a user would bring one: `images/` (m training images they viewed,
    as stored) and `viewer.csv` (their fixations in the fixation-table layout,
    `psm_jax.data.releases.table`), plus `photo.jpg` (a test image) to predict for. The viewer is
    the first test observer, whom no model was trained on. README's enrol/predict commands run on
    it."""
    source, metadata = pipeline.open_split(dataset, "train", data_dir)
    observer = int(metadata.observers("test")[0])
    subject = str(metadata.observer_ids[observer])
    columns = {k: [] for k in ("subject", "image", "x", "y", "duration_ms", "trial")}
    (out / "images").mkdir(parents=True, exist_ok=True)
    count = 0
    for index in range(len(source)):
        record = source[index]
        if count == m:
            break
        if not record["psm_valid"][observer]:
            continue
        name = pipeline.image_id(record)
        (out / "images" / name).write_bytes(record["image"])
        fixations = record["fixations"]
        own = fixations["observer"] == observer
        columns["subject"] += [subject] * int(own.sum())
        columns["image"] += [name] * int(own.sum())
        for column, key in (("x", "x"), ("y", "y"), ("duration_ms", "duration_ms")):
            columns[column] += [float(v) for v in fixations[key][own]]
        columns["trial"] += [int(v) for v in fixations["viewing"][own]]
        count += 1
    table_lib.write_fixation_table(out / "viewer.csv", columns)
    test_source, _ = pipeline.open_split(dataset, "test", data_dir)
    (out / "photo.jpg").write_bytes(test_source[0]["image"])
    (out / "README.md").write_text(
        f"An example new viewer: observer {subject} of {dataset}, a test observer no model was "
        f"trained on; viewer.csv holds their fixations on the {count} images in images/ (training "
        "images of the dataset), photo.jpg is a test image. The repository README's enrol and "
        "predict commands run on this folder.\n"
    )
    return out
