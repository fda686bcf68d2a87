"""The XLA flags and allocator settings psm-jax applies in its launchers: only where measured,
never over the user's, never on import."""

import os
import platform
import subprocess
import sys
from pathlib import Path

import pytest

from psm_jax import xla_defaults


def _measured(monkeypatch, version="0.10.2"):
    monkeypatch.setattr(xla_defaults, "_jaxlib_version", lambda: version)


def test_adds_the_flags_to_what_is_there(monkeypatch):
    _measured(monkeypatch)
    environ = {"XLA_FLAGS": "--xla_force_host_platform_device_count=4"}
    added = xla_defaults.apply(environ)
    assert added == ["--xla_cpu_experimental_ynn_fusion_type=dot"]
    assert environ["XLA_FLAGS"] == (
        "--xla_force_host_platform_device_count=4 --xla_cpu_experimental_ynn_fusion_type=dot"
    )
    assert xla_defaults.apply({}) == added


def test_leaves_the_users_value_an_opt_out_and_unmeasured_jaxlib_alone(monkeypatch):
    _measured(monkeypatch)
    mine = {"XLA_FLAGS": "--xla_cpu_experimental_ynn_fusion_type=dot,reduce"}
    assert xla_defaults.apply(mine) == []
    assert mine["XLA_FLAGS"] == "--xla_cpu_experimental_ynn_fusion_type=dot,reduce"
    for value in ("0", "false", "off"):
        opted_out = {xla_defaults.OPT_OUT: value}
        assert xla_defaults.apply(opted_out) == [] and "XLA_FLAGS" not in opted_out
    _measured(monkeypatch, "99.0")
    unmeasured = {}
    assert xla_defaults.apply(unmeasured) == [] and unmeasured == {}


def test_importing_psm_jax_changes_nothing_in_the_process():
    # The check, in a fresh process: no XLA_FLAGS, no allocator setting.
    script = (
        "import os, psm_jax, psm_jax.main_job; from psm_jax import xla_defaults;"
        "print(os.environ.get('XLA_FLAGS')); print(xla_defaults.malloc_applied())"
    )
    environ = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", xla_defaults.OPT_OUT)}
    result = subprocess.run(
        [sys.executable, "-c", script], env=environ, capture_output=True, text=True, check=True
    )
    assert result.stdout.split() == ["None", "[]"]


_LAUNCHER_SCRIPT = """
import os, sys
sys.path.insert(0, {launch!r})
import runner
import jax.numpy as jnp
from psm_jax import xla_defaults

def main(argv):
    print(float(jnp.dot(jnp.ones((4, 4)), jnp.ones(4))[0]))
    print(xla_defaults.applied() == [
        f for f in os.environ.get("XLA_FLAGS", "").split() if f.startswith("--xla_cpu_experimental")
    ])
    print(os.environ.get("XLA_FLAGS"))
    print(len(xla_defaults.malloc_applied()))

runner.run(main)
"""


def test_the_launchers_apply_them_before_jax_starts_and_jax_accepts_them():
    # A fresh process running a launcher's main (launch/runner.py): the flags are set before
    # JAX starts its CPU backend, which accepts them (an unknown flag would abort the process).
    launch = str(Path(__file__).resolve().parents[1] / "launch")
    environ = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", xla_defaults.OPT_OUT)}
    result = subprocess.run(
        [sys.executable, "-c", _LAUNCHER_SCRIPT.format(launch=launch)],
        env=environ,
        capture_output=True,
        text=True,
        check=True,
    )
    lines = result.stdout.splitlines()
    assert lines[:2] == ["4.0", "True"]
    if xla_defaults._jaxlib_version() in xla_defaults.MEASURED_JAXLIB:
        assert "--xla_cpu_experimental_ynn_fusion_type=dot" in lines[2]
    if platform.libc_ver()[0] == "glibc":
        assert lines[3] == str(len(xla_defaults.MALLOC_SETTINGS))


def test_allocator_settings_leave_the_users_own_and_the_opt_out_alone():
    everything = set(xla_defaults.MALLOC_SETTINGS)
    assert set(xla_defaults.malloc_settings({})) == everything
    mine = {"MALLOC_MMAP_THRESHOLD_": "131072"}
    assert set(xla_defaults.malloc_settings(mine)) == everything - {"mmap_threshold"}
    assert xla_defaults.malloc_settings({"GLIBC_TUNABLES": "glibc.malloc.top_pad=0"}) == {}
    assert xla_defaults.malloc_settings({xla_defaults.OPT_OUT: "0"}) == {}
    for _, _, value in xla_defaults.MALLOC_SETTINGS.values():
        assert -(2**31) <= value < 2**31  # mallopt takes a C int


def test_allocator_settings_are_skipped_where_jax_runs_on_an_accelerator(monkeypatch):
    everything = set(xla_defaults.MALLOC_SETTINGS)
    installed = set()
    monkeypatch.setattr(xla_defaults, "_installed", lambda name: name in installed)
    monkeypatch.setattr(xla_defaults, "_device_present", lambda path: path == "/dev/nvidiactl")
    assert set(xla_defaults.malloc_settings({})) == everything  # no plugin: the CPU
    installed.add("jax-cuda12-plugin")  # `make cuda` on a machine with an NVIDIA device
    assert xla_defaults.accelerator_expected({})
    assert xla_defaults.malloc_settings({}) == {}
    # JAX_PLATFORMS decides when set: the CPU first keeps the settings, a GPU first drops them.
    assert set(xla_defaults.malloc_settings({"JAX_PLATFORMS": "cpu"})) == everything
    installed.clear()
    assert xla_defaults.malloc_settings({"JAX_PLATFORMS": "cuda,cpu"}) == {}
    # The plugin without the device (installed on a CPU machine): the CPU's settings.
    installed.add("jax-cuda12-plugin")
    monkeypatch.setattr(xla_defaults, "_device_present", lambda path: False)
    assert set(xla_defaults.malloc_settings({})) == everything


def _run_without_allocator_settings(script: str, **extra) -> str:
    """Runs `script` in a fresh interpreter whose environment holds none of the user's allocator
    variables and no opt-out (plus `extra`); returns its stdout."""
    environ = {
        k: v
        for k, v in os.environ.items()
        if k != xla_defaults.OPT_OUT and not k.startswith("MALLOC_") and k != "GLIBC_TUNABLES"
    }
    result = subprocess.run(
        [sys.executable, "-c", script],
        env={**environ, **extra},
        capture_output=True,
        text=True,
        check=True,
    )
    return result.stdout.strip()


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="the settings are glibc's")
def test_apply_sets_the_allocator_in_that_process():
    # glibc accepts every value (mallopt returns 1 for each), and the user's variable wins.
    script = (
        "from psm_jax import xla_defaults; xla_defaults.apply(); "
        "print(xla_defaults.malloc_applied())"
    )

    def applied(**extra):
        return _run_without_allocator_settings(script, **extra)

    assert applied() == str(
        [f"{name}={value}" for name, (_, _, value) in xla_defaults.MALLOC_SETTINGS.items()]
    )
    assert "top_pad" not in applied(MALLOC_TOP_PAD_="0")
    assert applied(**{xla_defaults.OPT_OUT: "0"}) == "[]"


_REUSE_SCRIPT = """
import ctypes, resource, threading
from psm_jax import xla_defaults
xla_defaults.apply()

libc = ctypes.CDLL("libc.so.6")
libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, (ctypes.c_size_t,)
libc.free.argtypes = (ctypes.c_void_p,)
size = 256 * 1024 * 1024
faults = []

def work():
    # A worker thread (as XLA's and Eigen's are) allocating, touching and freeing a 256 MB
    # buffer with malloc, four times: the page faults of every round after the first.
    for _ in range(4):
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        buffer = libc.malloc(size)
        ctypes.memset(buffer, 1, size)
        libc.free(buffer)
        faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)

thread = threading.Thread(target=work)
thread.start()
thread.join()
print(sum(faults[1:]))
"""


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="the settings are glibc's")
def test_the_allocator_reuses_a_worker_threads_large_buffers():
    # What the settings are for: a large buffer freed in a thread is not paged in again on the
    # next call. With glibc's defaults each round maps 256 MB anew: ~65,000 faults of 4 KiB, or
    # at least 128 of 2 MiB where the kernel backs anonymous memory with huge pages.

    def faults(**extra):
        return int(_run_without_allocator_settings(_REUSE_SCRIPT, **extra).splitlines()[-1])

    with_settings, without = faults(), faults(**{xla_defaults.OPT_OUT: "0"})
    assert without >= 3 * 128  # three rounds of fresh pages, even as huge pages
    assert with_settings < without / 10
