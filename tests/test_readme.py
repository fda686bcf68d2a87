"""The README's commands run as written after `make demo` (on the tiny dataset), the main job
repeats itself exactly, and `launch/evaluate.py` writes its report again from the workdirs."""

import re
import shutil
import subprocess
import sys

import numpy as np
import pytest
from conftest import ROOT, TINY

from psm_jax import personalise, registry
from psm_jax.data import pipeline
from psm_jax.evaluation.report import without_provenance


def readme_commands() -> list[str]:
    """Every `.venv/bin/python launch/...` command of the README's code blocks, continuation
    lines joined."""
    commands, current = [], None
    for line in (ROOT / "README.md").read_text().splitlines():
        text = line.strip()
        if current is not None:
            current += " " + text.rstrip("\\").strip()
            if not text.endswith("\\"):
                commands.append(current)
                current = None
        elif line.startswith("    .venv/bin/python launch/"):
            current = text.rstrip("\\").strip()
            if not text.endswith("\\"):
                commands.append(current)
                current = None
    return commands


def _as_tiny(command: str) -> str:
    """The command on the tiny dataset: training configs get the tiny option (the evaluation
    starts from the config the tiny main job evaluated with)."""
    command = re.sub(r"(psm_jax/configs/synthetic\.py:\w+)", r"\1,tiny", command)
    return command.replace(".venv/bin/python", sys.executable, 1)


def test_the_readme_has_the_commands_a_newcomer_needs():
    scripts = {re.search(r"launch/(\w+)\.py", c).group(1) for c in readme_commands()}
    assert {"build_dataset", "train", "evaluate", "enroll", "predict"} <= scripts


@pytest.mark.slow
def test_every_readme_command_runs_as_written_after_the_demo(tiny_main_job, tmp_path):
    """A copy of a demo run's folder (data/ and runs/ as `make demo` writes them), with the code
    beside it; each command runs there as written (training configs on the tiny dataset), except
    those that need the OSIE release from ../shared."""
    sandbox = tmp_path / "clone"
    shutil.copytree(tiny_main_job["root"], sandbox, symlinks=True)
    for name in ("launch", "psm_jax", "tfds_builders"):
        (sandbox / name).symlink_to(ROOT / name)
    ran = []
    for command in readme_commands():
        if "../shared" in command:
            continue
        result = subprocess.run(
            _as_tiny(command), shell=True, cwd=sandbox, capture_output=True, text=True
        )
        assert result.returncode == 0, f"{command}\n{result.stderr[-3000:]}"
        ran.append(command)
    assert any("launch/enroll.py" in c for c in ran) and any("launch/predict.py" in c for c in ran)
    assert (sandbox / "alice.npy").exists() and (sandbox / "alice_photo.png").exists()


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


@pytest.mark.parametrize("script", ["enroll", "predict"])
def test_the_readme_names_the_example_study(script):
    command = next(c for c in readme_commands() if f"launch/{script}.py" in c)
    assert "runs/synthetic_personal_saliency/example_study/" in command


def test_the_readme_tables_are_the_recorded_runs():
    """Every generated block of the README equals its rendering from studies/results (the
    JSON tables of the run it names): no figure in them was typed by hand."""
    sys.path.insert(0, str(ROOT / "studies"))
    import readme_tables

    text = (ROOT / "README.md").read_text()
    names = re.findall(r"<!-- BEGIN generated:(\w+) -->", text)
    assert "synthetic" in names
    for name in names:
        block = readme_tables.block_pattern(name).search(text).group(2)
        assert block == readme_tables.render(name), f"README block {name} was edited by hand"
