"""XLA:CPU options psm-jax sets by default, where they were measured (benchmarks/RESULTS.md).

`psm_jax/__init__.py` calls `apply()` when the package is imported, before JAX starts a backend,
so every launcher, test and library user gets them: XLA flags, and the C allocator's settings
for XLA:CPU's buffers (below). XLA reads `XLA_FLAGS` once, when the first
backend starts; an unknown flag aborts the process, so a flag is added only for the jaxlib
versions it was measured on. It is never added when:
  - `PSM_JAX_XLA_DEFAULTS=0` is set (opt out);
  - `XLA_FLAGS` already names the flag (the user's value wins);
  - the installed jaxlib is not one it was measured on (then nothing changes and `applied()`
    says so).
If something started a JAX backend before `psm_jax` was imported, the flags are in XLA_FLAGS but
that process runs without them (XLA has already read the variable).

The flags:
  --xla_cpu_experimental_ynn_fusion_type=dot
      XLA:CPU runs its matrix products (and the convolutions it lowers to them) through YNNPACK.
      Measured against the PyTorch twin on the 2-core VM (RESULTS.md, "XLA:CPU's YNNPACK
      fusions"): train steps 1.35-1.7x, inference at batch 64 ~1.25x, the encoder's forward pass
      within the spread of the runs without it (perhaps 5-10% slower); adding the "eltwise" and
      "reduce" fusions made that forward pass 15-20% slower, so they are not set. CPU only.

The allocator (glibc's malloc, Linux only; `MALLOC_SETTINGS`, set with `mallopt` when the package
is imported): XLA:CPU allocates every buffer of every call with malloc, and glibc serves
allocations above its mmap threshold (128 KiB, rising with use up to 32 MiB) with fresh mmaps and
returns freed memory above 128 KiB at the top of the heap to the system. So each call's
multi-megabyte activations are paged in anew: the synthetic main job took 63 million minor page
faults and 214 s of system time out of 1,150 s of CPU time. With the mmap threshold at its 32 MiB
maximum, trimming only above 2 GiB and a 256 MiB top pad, buffers are reused from the heap:
the main job's universal-network stage and evaluation took 147-155 s against 179 s with these
values as environment variables, and 119-133 s against 129-145 s with this `mallopt` on import
(two runs each, alternating, 2026-12-03), page faults down by a third to a half, peak RSS within
15%. They do not depend on the jaxlib version, so they are set whatever jaxlib is installed.
Skipped when:
  - `PSM_JAX_XLA_DEFAULTS=0` is set (opt out, as for the flags);
  - the C library is not glibc (no `mallopt`);
  - the user set the setting themselves (`MALLOC_MMAP_THRESHOLD_`, `MALLOC_TRIM_THRESHOLD_`,
    `MALLOC_TOP_PAD_` or `GLIBC_TUNABLES` with `glibc.malloc.`): theirs wins.
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
    "trim_threshold": (-1, "MALLOC_TRIM_THRESHOLD_", 2**31 - 1),  # mallopt takes an int
    "top_pad": (-2, "MALLOC_TOP_PAD_", 256 * 1024 * 1024),
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


def malloc_settings(environ=os.environ) -> dict[str, int]:
    """{name: value} of `MALLOC_SETTINGS` that `apply()` sets given `environ` (module docstring;
    whether the C library is glibc is checked when they are set)."""
    if _opted_out(environ) or not sys.platform.startswith("linux"):
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
