"""XLA:CPU options psm-jax sets by default, where they were measured (docs/results_log.md).

Nothing sets them on import: the launchers (`launch/runner.py`), the benchmarks and the test
suite's conftest call `apply()` before JAX starts a backend, and a program of the user's may do
the same; a library or notebook that only imports psm_jax keeps its process as it was. `apply()`
sets XLA flags and the C allocator's settings for XLA:CPU's buffers (below). XLA reads
`XLA_FLAGS` once, when the first backend starts; an unknown flag aborts the process, so a flag is
added only for the jaxlib versions it was measured on. It is never added when:
  - `PSM_JAX_XLA_DEFAULTS=0` is set (opt out);
  - `XLA_FLAGS` already names the flag (the user's value wins);
  - the installed jaxlib is not one it was measured on (then nothing changes and `applied()`
    says so).
If something started a JAX backend before `apply()` was called, the flags are in XLA_FLAGS but
that process runs without them (XLA has already read the variable).

The flags:
  --xla_cpu_experimental_ynn_fusion_type=dot
      XLA:CPU runs its matrix products (and the convolutions it lowers to them) through YNNPACK.
      Measured against the PyTorch twin on the 2-core VM (docs/results_log.md, "XLA:CPU's YNNPACK
      fusions"): train steps 1.35-1.7x, inference at batch 64 ~1.25x, the encoder's forward pass
      within the spread of the runs without it (perhaps 5-10% slower); adding the "eltwise" and
      "reduce" fusions made that forward pass 15-20% slower, so they are not set. CPU only.

The allocator (glibc's malloc, Linux only; `MALLOC_SETTINGS`, set with `mallopt` by `apply()`):
XLA:CPU allocates every buffer of every call with malloc, and so does Eigen for
the packed patches of the convolutions XLA runs through it (1.4 GB per call of the encoder's
first layer at 2,048 pairs, measured before that layer's forward pass took the space-to-depth
form), often on XLA's worker threads. With glibc's defaults, allocations
above the mmap threshold (128 KiB, rising with use up to 32 MiB) are fresh mmaps, freed memory
above 128 KiB at the top of the heap goes back to the system, and each thread gets its own
arena, whose heaps are at most 64 MiB, so larger buffers there are always mmapped. Each call's
activations are then paged in anew: the synthetic main job took 63 million minor page faults and
214 s of system time out of 1,150 s of CPU time. The settings: no mmaps (`mmap_max=0`: every
buffer from the heap), one arena for all threads (`arena_max=1`, so worker threads' buffers are
heap buffers too), no trimming (`trim_threshold=-1`: freed memory stays with the process for
the next call) and a 256 MiB top pad; `mmap_threshold` at its 32 MiB maximum matters only if
the user re-enables mmaps. Measured (docs/results_log.md, "The allocator: no mmaps, one
arena", 2-core AVX-512 VM): the encoder's forward pass over 2,048 pairs 1.15-1.27 s against
2.0-2.5 s with the earlier settings (mmap threshold, trim at 2 GiB, top pad only; some calls still
take 3.3-3.8 s); the synthetic main job 489 s against 522 s, system time 47 s against 171 s,
peak RSS 3.8 GB against 5.0 GB (one run each). The price, from the single arena: small calls
are slower (batch-1 inference 1.5-1.7 ms against 1.2 ms, the evaluation stage 86 s against
80-82 s; `MALLOC_ARENA_MAX=16` restores glibc's arenas), and memory freed by the process is not
returned to the system before it exits. They do not depend on the jaxlib version, so they are
set whatever jaxlib is installed.
Skipped when:
  - `PSM_JAX_XLA_DEFAULTS=0` is set (opt out, as for the flags);
  - JAX will run on an accelerator (`accelerator_expected`: `JAX_PLATFORMS` names another
    platform first, or, unset, the CUDA plugin is installed and an NVIDIA device is present, or
    libtpu is installed): the model's buffers then live on the device, the settings buy nothing
    and their measured price (small host calls slower, one arena for the data pipeline's threads)
    remains. The XLA flag is harmless there (XLA:GPU ignores --xla_cpu_* flags) and stays;
  - the C library is not glibc (no `mallopt`);
  - the user set the setting themselves (`MALLOC_MMAP_THRESHOLD_`, `MALLOC_TRIM_THRESHOLD_`,
    `MALLOC_TOP_PAD_`, `MALLOC_MMAP_MAX_`, `MALLOC_ARENA_MAX` or `GLIBC_TUNABLES` with
    `glibc.malloc.`): theirs wins.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import importlib.metadata
import os
import sys

OPT_OUT = "PSM_JAX_XLA_DEFAULTS"
MEASURED_JAXLIB = ("0.10.2",)
FLAGS = {"--xla_cpu_experimental_ynn_fusion_type": "dot"}

MALLOC_SETTINGS = {
    # name: (mallopt parameter number in glibc's malloc.h, the environment variable, value)
    "mmap_threshold": (-3, "MALLOC_MMAP_THRESHOLD_", 32 * 1024 * 1024),
    "trim_threshold": (-1, "MALLOC_TRIM_THRESHOLD_", -1),  # -1: never trim (mallopt(3))
    "top_pad": (-2, "MALLOC_TOP_PAD_", 256 * 1024 * 1024),
    "mmap_max": (-4, "MALLOC_MMAP_MAX_", 0),
    "arena_max": (-8, "MALLOC_ARENA_MAX", 1),
}

_applied: list[str] = []
_malloc_applied: list[str] = []


def _jaxlib_version() -> str | None:
    try:
        return importlib.metadata.version("jaxlib")
    except importlib.metadata.PackageNotFoundError:
        return None


def apply(environ=os.environ) -> list[str]:
    """Adds the default flags to `environ["XLA_FLAGS"]` where allowed (see the module docstring);
    returns the flags it added. When `environ` is `os.environ`, also sets the allocator's
    settings in this process (`malloc_applied()` lists them)."""
    if _opted_out(environ):
        return []
    if environ is os.environ:
        _malloc_applied[:] = _apply_malloc(environ)
    if _jaxlib_version() not in MEASURED_JAXLIB:
        return []
    current = environ.get("XLA_FLAGS", "")
    added = [f"{name}={value}" for name, value in FLAGS.items() if name not in current]
    if added:
        environ["XLA_FLAGS"] = " ".join([current, *added]).strip()
    if environ is os.environ:
        _applied[:] = added
    return added


def applied() -> list[str]:
    """The flags `apply()` added to this process's XLA_FLAGS (empty: none)."""
    return list(_applied)


def malloc_applied() -> list[str]:
    """The allocator settings `apply()` set in this process ("name=value"; empty: none)."""
    return list(_malloc_applied)


def _opted_out(environ) -> bool:
    return environ.get(OPT_OUT, "1").strip().lower() in ("0", "false", "no", "off")


ACCELERATOR_PLUGINS = {
    # distribution: a device file that shows the hardware is there (None: the package suffices)
    "jax-cuda12-plugin": "/dev/nvidiactl",
    "jax-cuda13-plugin": "/dev/nvidiactl",
    "libtpu": None,
}


def _installed(distribution: str) -> bool:
    try:
        importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


def _device_present(path: str) -> bool:
    return os.path.exists(path)


def accelerator_expected(environ=os.environ) -> bool:
    """Whether JAX will run on an accelerator, guessed before it starts a backend: the first
    platform of `JAX_PLATFORMS` when set ("cpu" or not), else whether an accelerator plugin of
    `ACCELERATOR_PLUGINS` is installed with its device present (`make cuda` on an NVIDIA
    machine)."""
    platforms = environ.get("JAX_PLATFORMS", "").strip()
    if platforms:
        return platforms.split(",")[0].strip().lower() != "cpu"
    return any(
        _installed(name) and (device is None or _device_present(device))
        for name, device in ACCELERATOR_PLUGINS.items()
    )


def malloc_settings(environ=os.environ) -> dict[str, int]:
    """{name: value} of `MALLOC_SETTINGS` that `apply()` sets given `environ` (module docstring;
    whether the C library is glibc is checked when they are set)."""
    if _opted_out(environ) or not sys.platform.startswith("linux"):
        return {}
    if accelerator_expected(environ):
        return {}
    if "glibc.malloc." in environ.get("GLIBC_TUNABLES", ""):
        return {}
    return {
        name: value
        for name, (_, variable, value) in MALLOC_SETTINGS.items()
        if variable not in environ
    }


def _apply_malloc(environ) -> list[str]:
    settings = malloc_settings(environ)
    if not settings:
        return []
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (musl has no mallopt): leave the allocator be
        return []
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    done = []
    for name, value in settings.items():
        if mallopt(MALLOC_SETTINGS[name][0], value) == 1:  # 1: success
            done.append(f"{name}={value}")
    return done
