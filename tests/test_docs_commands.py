"""Every command of README.md and docs/*.md runs as written from a fresh clone.

The commands are the fenced shell blocks (```sh) of the documents in `DOCUMENTS`, in that order,
continuation lines joined and comments dropped. The slow test clones the repository's HEAD into an
empty folder (no ../shared beside it, as a user's clone) and runs them there one after another:
each must exit 0, except
- a command with a `path/to/...` placeholder (`NEEDS_DOWNLOAD`): it needs data the user downloads,
  so it must stop with exit status 1, no traceback, and a message naming what to get and where;
- a server (`SERVERS`): it must print its address, then it is stopped;
- the few commands in `SKIPPED`, each with the reason it cannot run on a CPU-only test machine.

PSM_JAX_DOCS_TEST_DEMO=tiny (set only for this test, by hand) replaces `make demo` with the tiny
main job written where the demo writes, for a quick check of the other commands.
"""

import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from conftest import ROOT

DOCUMENTS = (
    "README.md",
    "docs/data.md",
    "docs/training.md",
    "docs/evaluation.md",
    "docs/bad_input.md",
    "docs/development.md",
)
"""The documents whose commands run, in the order they run (the README's demo comes first)."""

NOT_RUN = {
    "docs/results_log.md": "the dated history: each command as it was run then, with its paths",
    "docs/results.md": "recorded tables: each names the command of its run, with that run's paths",
}
"""Documents whose commands are a record, not instructions."""

SHELL_BLOCK = re.compile(r"^```(?:sh|bash|shell)\n(.*?)^```", re.S | re.M)

SKIPPED = {
    "make cuda && make demo": "needs an NVIDIA GPU with CUDA 12 (JAX's CUDA wheels); on a CPU "
    "machine benchmarks/gpu_check.sh runs instead",
    "make test": "the fast tests: CI runs them, this test included, on a fresh clone (.ci/run)",
    "make test-all": "every test, this one included: running it here would recurse; CI runs it "
    "on a fresh clone (.ci/run)",
    "make bench-twin": "downloads torch (hundreds of MB) to time a PyTorch twin: a benchmark of "
    "the project, not a step of using it",
}
"""Commands of the documents that this test does not run, and why."""

NEEDS_DOWNLOAD = {
    "--dataset=osie_personal": "predicting-human-gaze-beyond-pixels",
    "main.py:osie_personal": "predicting-human-gaze-beyond-pixels",
    "--dataset=individual_differences": "fixations.csv",
}
"""A placeholder command's dataset -> what its message must name (the download or the layout)."""

PLACEHOLDER = "path/to/"

SERVERS = {"tensorboard --logdir": "http://"}
"""A server's command -> what it prints once it serves; it is stopped then."""

TINY_DEMO = (
    "make .venv/.core && .venv/bin/python launch/main.py "
    "--config=psm_jax/configs/main.py:synthetic_personal_saliency/tiny "
    "--workdir=runs/synthetic_personal_saliency"
)


def shell_commands(markdown: str) -> list[str]:
    """The commands of the fenced shell blocks of `markdown`: continuation lines (ending in `\\`)
    joined, comments (`# ...` outside quotes) and blank lines dropped."""
    commands = []
    for block in SHELL_BLOCK.findall(markdown):
        current = ""
        for line in block.splitlines():
            line = _without_comment(line).strip()
            if line.endswith("\\"):
                current += line[:-1].strip() + " "
                continue
            current += line
            if current.strip():
                commands.append(current.strip())
            current = ""
        if current.strip():
            commands.append(current.strip())
    return commands


def _without_comment(line: str) -> str:
    """`line` up to a `#` that starts a shell comment (at the start or after a blank, outside
    quotes)."""
    quote = None
    for i, char in enumerate(line):
        if quote:
            quote = None if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char == "#" and (i == 0 or line[i - 1].isspace()):
            return line[:i]
    return line


def document_commands() -> list[tuple[str, str]]:
    """(document, command) for every command of `DOCUMENTS`, in order."""
    return [
        (name, command)
        for name in DOCUMENTS
        for command in shell_commands((ROOT / name).read_text())
    ]


def kind(command: str) -> str:
    """How the slow test runs `command`: "skip", "download", "server" or "run"."""
    if command in SKIPPED:
        return "skip"
    if PLACEHOLDER in command:
        return "download"
    if any(server in command for server in SERVERS):
        return "server"
    return "run"


def test_shell_commands_joins_continuations_and_drops_comments():
    markdown = (
        "text\n```sh\nmake demo   # the main job\n\n.venv/bin/python a.py --x=1 \\\n"
        "    --y='# not a comment'\n# a comment line\n```\n"
        "```python\nprint(1)\n```\n    make indented  # not fenced\n```bash\nls\n```\n"
    )
    assert shell_commands(markdown) == [
        "make demo",
        ".venv/bin/python a.py --x=1 --y='# not a comment'",
        "ls",
    ]


def test_every_document_is_run_or_said_why_not():
    docs = {f"docs/{path.name}" for path in (ROOT / "docs").glob("*.md")}
    assert docs == set(DOCUMENTS[1:]) | set(NOT_RUN)


def test_the_readme_is_short():
    assert len((ROOT / "README.md").read_text().splitlines()) <= 200


def test_the_readme_has_the_commands_a_newcomer_needs():
    readme = shell_commands((ROOT / "README.md").read_text())
    assert readme[:2] == ["make demo", "make test"]
    joined = "\n".join(readme)
    for needed in (
        "launch/enroll.py",
        "launch/predict.py",
        "--dataset=osie_personal",
        "make cuda",
        "benchmarks/gpu_check.sh",
        "tensorboard --logdir",
    ):
        assert needed in joined, needed


@pytest.mark.parametrize("script", ["enroll", "predict"])
def test_the_readme_names_the_example_study(script):
    command = next(
        c for c in shell_commands((ROOT / "README.md").read_text()) if f"launch/{script}.py" in c
    )
    assert "runs/synthetic_personal_saliency/example_study/" in command


def test_the_commands_call_python_one_way_and_need_no_developer_folder():
    for document, command in document_commands():
        for word in re.findall(r"(?:^|[\s;&|(])(\S*(?:python3?|pip3?))(?=\s)", command):
            assert word in (".venv/bin/python", ".venv/bin/pip"), f"{document}: {command}"
        assert "shared" not in command and "/tmp" not in command, f"{document}: {command}"
    for name in DOCUMENTS:
        assert "../shared" not in (ROOT / name).read_text(), name


def test_every_skip_and_placeholder_is_accounted_for():
    """A skipped command that left the documents is a stale skip; a placeholder command must be
    one whose message the slow test knows."""
    commands = [command for _, command in document_commands()]
    assert set(SKIPPED) <= set(commands)
    for command in commands:
        if kind(command) == "download":
            assert any(key in command for key in NEEDS_DOWNLOAD), command


def _environment() -> dict:
    """The test's environment without what would tie a command to this checkout."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.pop("PSM_JAX_QUICK_COMPILE", None)
    return env


def _serve(command: str, cwd: Path, env: dict, address: str, timeout_s: float = 180) -> str:
    """Starts a server, waits until it prints `address`, stops it; returns its output."""
    log = cwd.parent / "server.log"
    with log.open("w") as sink:
        process = subprocess.Popen(
            command,
            shell=True,
            cwd=cwd,
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout_s
        try:
            while time.monotonic() < deadline and process.poll() is None:
                if address in log.read_text(errors="replace"):
                    break
                time.sleep(0.5)
        finally:
            if process.poll() is None:
                os.killpg(process.pid, 15)
                process.wait(timeout=30)
    return log.read_text(errors="replace")


@pytest.mark.slow
def test_every_command_of_the_docs_runs_as_written_in_a_fresh_clone(tmp_path):
    clone = tmp_path / "psm-jax"
    subprocess.run(["git", "clone", "--quiet", str(ROOT), str(clone)], check=True)
    assert not (clone.parent / "shared").exists()
    env = _environment()
    tiny = os.environ.get("PSM_JAX_DOCS_TEST_DEMO") == "tiny"
    failures, timings = [], []
    try:
        _run_all(clone, env, tiny, failures, timings)
    finally:
        (tmp_path / "timings.txt").write_text("\n".join(timings) + "\n")
    assert not failures, "\n\n".join(failures)
    shutil.rmtree(clone / ".venv", ignore_errors=True)  # the clone's install, hundreds of MB


def _run_all(clone: Path, env: dict, tiny: bool, failures: list, timings: list) -> None:
    """Runs every command of the documents in `clone`, in order: failures and timings appended."""
    for document, command in document_commands():
        how = kind(command)
        if how == "skip":
            timings.append(f"skipped  {document}: {command} ({SKIPPED[command]})")
            continue
        start = time.monotonic()
        if how == "server":
            address = next(v for k, v in SERVERS.items() if k in command)
            output = _serve(command, clone, env, address)
            ok = address in output
        else:
            ran = TINY_DEMO if tiny and command == "make demo" else command
            result = subprocess.run(
                ran, shell=True, cwd=clone, env=env, capture_output=True, text=True
            )
            output = result.stdout + result.stderr
            if how == "download":
                needed = next(v for k, v in NEEDS_DOWNLOAD.items() if k in command)
                ok = (
                    result.returncode == 1
                    and "Traceback" not in output
                    and needed in output
                    and PLACEHOLDER in output
                )
            else:
                ok = result.returncode == 0
            output = f"exit status {result.returncode}\n{output}"
        timings.append(f"{time.monotonic() - start:7.0f} s  {document}: {command}")
        print(("ok      " if ok else "FAILED  ") + timings[-1], flush=True)  # shown with -s
        if not ok:
            failures.append(f"{document}: {command}\n{output[-3000:]}")
