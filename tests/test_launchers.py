"""What every launcher shares (launch/runner.py): bad input ends in one message, not a traceback."""

import importlib.util
import subprocess
import sys

import pytest
from conftest import ROOT


def _launch(script, *flags):
    return subprocess.run(
        [sys.executable, str(ROOT / "launch" / script), *flags],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )


@pytest.mark.parametrize(
    "script, flags, message",
    [
        pytest.param(
            "export_usm.py",
            ["--workdir=/nonexistent/run", "--output_dir=/tmp/x"],
            "config.json not found: is /nonexistent/run a psm-jax training workdir?",
            marks=pytest.mark.slow,
        ),
        pytest.param(
            "build_dataset.py",
            ["--dataset=osie_personal", "--manual_dir=/nonexistent/osie", "--data_dir=/tmp/x"],
            "the release folder /nonexistent/osie (--manual_dir) does not exist",
            marks=pytest.mark.slow,
        ),
        (  # a field no config has, with ml_collections' guess
            "main.py",
            ["--config.models.embedding.num_step=5", "--config.data_dir=/nonexistent/data"],
            "--config.models.embedding.num_step: the config has no field 'num_step'. Did you "
            "mean --config.models.embedding.num_steps",
        ),
        pytest.param(  # a nested typo that ml_collections' own guess misses
            "train.py",
            [
                "--config=psm_jax/configs/synthetic.py:embedding",
                "--config.network.widht=3",
                "--workdir=/nonexistent/run",
            ],
            "--config.network.widht: the config has no field 'widht'. Did you mean "
            "--config.network.widths?",
            marks=pytest.mark.slow,
        ),
        pytest.param(  # checked before any dataset is built or model trained
            "main.py",
            [
                "--config.models.embedding.network.input_map=psmm",
                "--config.data_dir=/nonexistent/data",
            ],
            "--config.models.embedding: input_map must be one of",
            marks=pytest.mark.slow,
        ),
        pytest.param(
            "main.py",
            ["--config.dataset=osie_personal", "--config.data_dir=/nonexistent/data"],
            "pass --config=psm_jax/configs/main.py:osie_personal instead",
            marks=pytest.mark.slow,
        ),
        pytest.param(
            "evaluate.py",
            ["--workdir=/nonexistent/run"],
            "--workdir=/nonexistent/run does not exist",
            marks=pytest.mark.slow,
        ),
        pytest.param(
            "evaluate.py",
            ["--output_dir=/tmp/x", "--embedding=/nonexistent/run", "--config.usm_floor=2"],
            "--config.usm_floor must be in [0, 1], got 2",
            marks=pytest.mark.slow,
        ),
        pytest.param(  # checked before any file is read (it fitted a head in -3 steps, exit 0)
            "enroll.py",
            [
                "--method=multi_task_head",
                "--steps=-3",
                "--multi_task_workdir=/nonexistent/multi_task",
                "--images_dir=/nonexistent/images",
                "--fixations=/nonexistent/viewer.csv",
                "--output=/tmp/x",
            ],
            "--steps=-3: must be an integer, 1 or more.",
            marks=pytest.mark.slow,
        ),
        pytest.param(
            "predict.py",
            ["--config.usm_floor=nan", "--psm_network=/x", "--embedding=/x", "--image=/x"]
            + ["--output=/tmp/x"],
            "--config.usm_floor must be in [0, 1], got nan",
            marks=pytest.mark.slow,
        ),
    ],
)
def test_bad_input_ends_in_a_message_not_a_traceback(script, flags, message):
    result = _launch(script, *flags)
    assert result.returncode == 1
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert "--verbose shows the traceback" in result.stderr


@pytest.mark.slow
def test_verbose_shows_the_traceback():
    result = _launch("export_usm.py", "--workdir=/nonexistent/run", "--output_dir=/x", "--verbose")
    assert result.returncode == 1
    assert "Traceback" in result.stderr and "FileNotFoundError" in result.stderr


@pytest.mark.slow
def test_every_launcher_lists_verbose_and_its_key_flags_in_help():
    for script in sorted(p.name for p in (ROOT / "launch").glob("*.py")):
        if script == "runner.py":
            continue
        result = _launch(script, "--help")
        assert result.returncode == 0, (script, result.stderr[-2000:])
        assert "--[no]verbose" in result.stdout, script
    for script in ("main.py", "evaluate.py", "predict.py", "train.py"):
        help_text = _launch(script, "--help").stdout
        assert "  --config:" in help_text and "--config.<" in help_text, script
        assert "--config.<field>=<value> sets any field of the config: psm_jax/configs/" in (
            help_text
        ), script


def test_help_exits_0_and_marks_the_required_flags():
    result = _launch("export_usm.py", "--help")
    assert result.returncode == 0, result.stderr
    assert "--workdir: (required) The universal network's training workdir." in result.stdout
    assert "--batch_size: Images per forward pass." in result.stdout  # not required
    # The docstring's commands keep their line continuations (a raw docstring).
    assert "predicted_usm" in result.stdout and "/universal \\\n" in result.stdout


def test_a_python_without_the_packages_ends_in_one_line_saying_what_to_run():
    # -S: no site-packages, as a system Python outside the project's virtualenv.
    result = subprocess.run(
        [sys.executable, "-S", "launch/export_usm.py", "--workdir=x"],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "psm-jax's packages (absl," in result.stderr
    assert ".venv/bin/python launch/export_usm.py --workdir=x`" in result.stderr


@pytest.mark.slow
@pytest.mark.parametrize(
    "script",
    sorted(
        str(path.relative_to(ROOT))
        for folder in ("studies", "benchmarks")
        for path in (ROOT / folder).glob("*.py")
        if "app.run(" in path.read_text()
    ),
)
def test_every_study_and_benchmark_exits_0_on_help(script):
    result = subprocess.run(
        [sys.executable, script, "--help"], capture_output=True, text=True, cwd=ROOT
    )
    needs_torch = "import torch" in (ROOT / script).read_text()
    if needs_torch and importlib.util.find_spec("torch") is None:  # one line saying what to run
        assert result.returncode == 1 and result.stderr.count("\n") == 1, result.stderr
        assert "make bench-twin" in result.stderr
        return
    assert result.returncode == 0, result.stderr[-2000:]
    assert "--helpfull lists every flag" in result.stdout  # psm_jax.cli answered it


def test_the_train_and_export_launchers_smoke(tiny_data_dir, tmp_path):
    """launch/train.py trains the tiny universal model on the backbone's features for two steps,
    launch/export_usm.py writes its USM of every image."""
    trained = _launch(
        "train.py",
        "--config=psm_jax/configs/synthetic.py:universal,tiny",
        "--config.network.backbone=efficientnet_lite0",
        f"--config.data_dir={tiny_data_dir}",
        "--config.num_steps=2",
        "--config.checkpoint_every=2",
        f"--workdir={tmp_path / 'universal'}",
    )
    assert trained.returncode == 0, trained.stderr[-2000:]
    assert "universal trained in" in trained.stdout
    exported = _launch(
        "export_usm.py", f"--workdir={tmp_path / 'universal'}", f"--output_dir={tmp_path / 'usm'}"
    )
    assert exported.returncode == 0, exported.stderr[-2000:]
    assert len(list((tmp_path / "usm").glob("*.npy"))) == 30  # every image of the tiny dataset


@pytest.mark.slow
def test_the_consistency_launcher_scores_a_dataset(tiny_data_dir):
    from conftest import TINY

    scored = _launch("consistency.py", f"--dataset={TINY}", f"--data_dir={tiny_data_dir}")
    assert scored.returncode == 0, scored.stderr[-2000:]
    assert "inter-observer consistency (mean pairwise AUC-Judd)" in scored.stdout


def _field_names(config) -> set[str]:
    """Every field name of a config, at any depth."""
    names = set()
    for key, value in config.items():
        names.add(key)
        if hasattr(value, "items"):
            names |= _field_names(value)
    return names


def test_no_launcher_rewrites_argv_or_takes_a_config_field_as_its_own_flag():
    """One config dialect: every setting of a launcher's config is `--config.<path>`; no launcher
    defines a flag named after a field of the config it takes, nor rewrites its argv."""
    import ast

    from psm_jax.configs import evaluation, synthetic
    from psm_jax.configs import main as main_configs

    configs = {
        "main.py": main_configs.get_config(),
        "evaluate.py": evaluation.get_config(),
        "predict.py": evaluation.get_config(),
        "train.py": synthetic.get_config("psm_network"),
    }
    for path in (ROOT / "launch").glob("*.py"):
        source = path.read_text()
        assert "sys.argv" not in source or path.name == "runner.py", path.name
        if path.name not in configs:
            continue
        defined = {
            node.args[0].value
            for node in ast.walk(ast.parse(source))
            if isinstance(node, ast.Call)
            and getattr(node.func, "attr", "").startswith("DEFINE_")
            and node.args
            and isinstance(node.args[0], ast.Constant)
        }
        shared = defined & _field_names(configs[path.name])
        assert not shared, f"{path.name} defines flags for config fields {sorted(shared)}"


def test_the_closest_config_fields_are_named_at_the_level_the_flag_names(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "launch"))
    import runner

    from ml_collections import ConfigDict

    config = ConfigDict({"num_steps": 1, "network": {"widths": (8,), "depth": 2}, "seed": 0})
    assert (
        runner.closest_fields(config, "--config.num_step=5") == "Did you mean --config.num_steps?"
    )
    assert (
        runner.closest_fields(config, "--config.network.widht")
        == "Did you mean --config.network.widths?"
    )
    assert (
        runner.closest_fields(config, "--config.network.zzz") == "Its fields there: depth, widths."
    )
    assert runner.closest_fields(config, "--config.nothing.widht") == ""


def test_an_override_the_saved_evaluation_config_lacks_is_named(tmp_path, monkeypatch):
    """launch/evaluate.py re-evaluates a workdir with the config it was evaluated with: an
    override of a field that config lacks names the flag and the file, no KeyError."""
    monkeypatch.syspath_prepend(str(ROOT / "launch"))
    import json

    import evaluate
    from ml_collections import config_flags

    saved = tmp_path / "report" / "evaluation_config.json"
    saved.parent.mkdir()
    saved.write_text(json.dumps({"m": 3, "evals": {"tables": {}}}))
    monkeypatch.setattr(
        config_flags, "get_override_values", lambda flag: {"evals.precision.ms": (4,)}
    )
    monkeypatch.setattr(evaluate, "_CONFIG", type("Flag", (), {"value": None})())
    with pytest.raises(ValueError, match="--config.evals.precision.ms: .*evaluation_config.json"):
        evaluate.evaluation_config(str(tmp_path))
