"""Where a report came from: the code (version and git commit), the command, the machine, the date.

`record()` gathers them once per report (`psm_jax.evaluation.evaluators.write_report`);
`psm_jax.evaluation.report.provenance_markdown` writes them at the top of report.md. Nothing here
may fail a run: a value that cannot be read (no git, an installed copy outside a checkout, no
/proc/cpuinfo) is "unknown".
"""

from __future__ import annotations

import datetime
import os
import platform
import shlex
import subprocess
import sys
from pathlib import Path

import psm_jax

UNKNOWN = "unknown"


def commit(path: str | Path | None = None) -> str:
    """The short git commit of the checkout holding `path` (default: this package's code), with
    " + uncommitted changes" when a tracked file differs from it (untracked files, such as a
    run's outputs, do not count); "unknown" outside a git checkout or without git.

    The package's own folder must be tracked by that checkout: a copy installed into a virtual
    environment that happens to lie inside some repository is not that repository's code.
    """
    folder = Path(path) if path is not None else Path(psm_jax.__file__).resolve().parent

    def git(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            ["git", "-C", str(folder), *args], capture_output=True, text=True, timeout=10
        )

    try:
        head = git("rev-parse", "--short", "HEAD")
        if head.returncode != 0 or git("ls-files", "--error-unmatch", ".").returncode != 0:
            return UNKNOWN
        changed = git("status", "--porcelain", "--untracked-files=no", "--", ".")
    except (OSError, subprocess.SubprocessError):  # no git, or it hung
        return UNKNOWN
    dirty = changed.returncode == 0 and changed.stdout.strip()
    return head.stdout.strip() + (" + uncommitted changes" if dirty else "")


def command() -> str:
    """The command line as run (`sys.argv`), shell-quoted so that it can be pasted back."""
    return shlex.join(sys.argv) if sys.argv and sys.argv[0] else UNKNOWN


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or UNKNOWN


def machine() -> str:
    """The platform, the CPU model and count, Python, JAX, its backend and devices."""
    import jax  # the backend is started by now: the evaluation ran on it

    devices = jax.devices()
    kinds = sorted({device.device_kind for device in devices})
    return (
        f"{platform.platform()}; {_cpu_model()}, {os.cpu_count()} CPUs; Python "
        f"{platform.python_version()}; JAX {jax.__version__}, {jax.default_backend()} backend, "
        f"{len(devices)} device{'s' if len(devices) != 1 else ''} ({', '.join(kinds)})"
    )


def record() -> dict[str, str]:
    """The report's provenance: {"version", "commit", "command", "machine", "date"}."""
    return {
        "version": psm_jax.__version__,
        "commit": commit(),
        "command": command(),
        "machine": machine(),
        "date": datetime.datetime.now().astimezone().isoformat(sep=" ", timespec="seconds"),
    }
