"""What every launcher shares (launch/runner.py): bad input ends in one message, not a traceback."""

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
        (
            "export_usm.py",
            ["--workdir=/nonexistent/run", "--output_dir=/tmp/x"],
            "config.json not found: is /nonexistent/run a psm-jax training workdir?",
        ),
        (
            "build_dataset.py",
            ["--dataset=osie_personal", "--manual_dir=/nonexistent/osie", "--data_dir=/tmp/x"],
            "the release folder /nonexistent/osie (--manual_dir) does not exist",
        ),
        (
            "main.py",
            ["--override=embedding", "--data_dir=/nonexistent/data"],
            "--override: An override is 'name:key=value,...', got 'embedding'.",
        ),
        (  # checked before any dataset is built or model trained
            "main.py",
            ["--override=embedding:network.input_mapp=psm", "--data_dir=/nonexistent/data"],
            "Bad override of embedding:",
        ),
    ],
)
def test_bad_input_ends_in_a_message_not_a_traceback(script, flags, message):
    result = _launch(script, *flags)
    assert result.returncode == 1
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert "--verbose shows the traceback" in result.stderr


def test_verbose_shows_the_traceback():
    result = _launch("export_usm.py", "--workdir=/nonexistent/run", "--output_dir=/x", "--verbose")
    assert result.returncode == 1
    assert "Traceback" in result.stderr and "FileNotFoundError" in result.stderr


def test_every_launcher_lists_verbose_and_its_key_flags_in_help():
    for script in ("main.py", "evaluate.py", "predict.py", "enroll.py", "train.py"):
        result = _launch(script, "--help")
        assert "--[no]verbose" in result.stdout, script
    help_text = _launch("main.py", "--help").stdout
    assert "--usm_floor" in help_text and "--discrepancy_weight" in help_text
