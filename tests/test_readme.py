"""The demo's example study, the main job repeating itself exactly, `launch/evaluate.py` writing
its report again from the workdirs, and docs/results.md's tables equal to the recorded runs. (The
README's and docs' commands: tests/test_docs_commands.py.)"""

import re
import subprocess
import sys

import numpy as np
import pytest
from conftest import ROOT, TINY

from psm_jax import personalise, registry
from psm_jax.data import pipeline
from psm_jax.evaluation.report import without_provenance


def test_the_example_study_reproduces_the_datasets_maps(tiny_main_job):
    """The demo's example viewer (a test observer), read back as a user's study, gives the maps
    stored in the dataset for that person."""
    root = tiny_main_job["root"]
    study = root / "runs" / "synthetic_personal_saliency" / "example_study"
    source, metadata = pipeline.open_split(TINY, "train", str(root / "data" / "tfds"))
    sigma = metadata.raw["psm"]["sigma_native_px_range"][0]
    images, psms, names = personalise.read_viewer(
        study / "images", study / "viewer.csv", sigma_px=sigma
    )
    assert len(names) == 3  # the tiny evaluation's m
    observer = int(metadata.observers("test")[0])
    by_name = {pipeline.image_id(source[i]): source[i] for i in range(len(source))}
    for psm, name in zip(psms, names, strict=True):
        stored = by_name[name]["psm"][observer].astype(np.float32)
        np.testing.assert_allclose(psm, stored, atol=2e-3)  # float16 storage, 2-decimal CSV


@pytest.mark.slow
def test_two_main_jobs_give_the_same_report(tiny_main_job, tmp_path):
    """The second run goes through launch/main.py: the launcher's config file and flags give the
    same job."""
    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "launch" / "main.py"),
            f"--config={ROOT / 'psm_jax' / 'configs' / 'main.py'}:{TINY}",
            f"--config.data_dir={tiny_main_job['root'] / 'data' / 'tfds'}",
            f"--workdir={tmp_path / 'again'}",
        ],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    first = without_provenance(tiny_main_job["result"]["report"].read_text())
    second = without_provenance((tmp_path / "again" / "report.md").read_text())
    assert first == second
    for name in ("closed.json", "open.json"):
        a = tiny_main_job["result"]["report"].parent / "report" / name
        assert a.read_text() == (tmp_path / "again" / "report" / name).read_text()


def _evaluate(run, output, *extra):
    """launch/evaluate.py on a main job's workdir `run`, report into `output`: its report.md."""
    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "launch" / "evaluate.py"),
            f"--workdir={run}",
            f"--output_dir={output}",
            *extra,
        ],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return (output / "report.md").read_text()


def test_the_evaluation_writes_the_main_jobs_report_again_from_its_workdirs(
    tiny_main_job, tmp_path
):
    """What launch/evaluate.py runs, in this process: the main job's models restored from their
    workdirs and evaluated with the config it saved give the same report.md (but for its
    provenance: the command, the date, the wall time) and the same tables."""
    import json

    import ml_collections

    from psm_jax.evaluation import evaluators, methods

    run = tiny_main_job["root"] / "runs" / "synthetic_personal_saliency"
    models = methods.Models.restore({name: str(run / name) for name in registry.MODELS})
    saved = run / "report" / evaluators.CONFIG_FILE
    config = ml_collections.ConfigDict(json.loads(saved.read_text()))
    evaluation = evaluators.evaluate(models, config, tmp_path / "report", progress=None)
    path = evaluators.write_report(
        tmp_path / "report.md",
        evaluation,
        models,
        config,
        wall_time=f"Evaluation wall time: {evaluation.seconds:.0f} s.",
    )
    assert without_provenance(path.read_text()) == without_provenance(
        (run / "report.md").read_text()
    )
    for name in ("closed.json", "open.json"):
        assert (tmp_path / "report" / name).read_text() == (run / "report" / name).read_text()


@pytest.mark.slow
def test_evaluate_writes_the_main_jobs_report_again_from_its_workdirs(tiny_main_job, tmp_path):
    """launch/evaluate.py on a main job's workdir: the same report.md (but for its provenance)
    and the same tables, from the trained workdirs and the evaluation config the main
    job saved."""
    run = tiny_main_job["root"] / "runs" / "synthetic_personal_saliency"
    again = _evaluate(run, tmp_path / "again")
    assert without_provenance(again) == without_provenance((run / "report.md").read_text())
    for name in ("closed.json", "open.json"):
        assert (tmp_path / "again" / "report" / name).read_text() == (
            run / "report" / name
        ).read_text()


@pytest.mark.slow
def test_evaluate_takes_config_fields_on_top_of_the_main_jobs(tiny_main_job, tmp_path):
    run = tiny_main_job["root"] / "runs" / "synthetic_personal_saliency"
    papers = _evaluate(
        run, tmp_path / "papers", "--config.usm_floor=0", "--config.protocols=('open',)"
    )
    assert "Predicted PSM = clip(USM + 0.5 x predicted discrepancy, 0, 1)" in papers
    assert "open set" in papers and "closed set (" not in papers


def test_the_result_tables_are_the_recorded_runs():
    """Every generated block of docs/results.md equals its rendering from studies/results (the
    JSON tables of the run it names): no figure in them was typed by hand."""
    sys.path.insert(0, str(ROOT / "studies"))
    import readme_tables

    text = readme_tables.DOCUMENT.read_text()
    names = re.findall(r"<!-- BEGIN generated:(\w+) -->", text)
    assert {"synthetic", "synthetic_real_use", "osie", "osie_real_use"} <= set(names)
    for name in names:
        block = readme_tables.block_pattern(name).search(text).group(2)
        assert block == readme_tables.render(name), f"block {name} was edited by hand"
