"""XLA:CPU options psm-jax sets by default, where they were measured (benchmarks/RESULTS.md).

`psm_jax/__init__.py` calls `apply()` when the package is imported, before JAX starts a backend,
so every launcher, test and library user gets them. XLA reads `XLA_FLAGS` once, when the first
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
"""

from __future__ import annotations

import importlib.metadata
import os

OPT_OUT = "PSM_JAX_XLA_DEFAULTS"
MEASURED_JAXLIB = ("0.10.2",)
FLAGS = {"--xla_cpu_experimental_ynn_fusion_type": "dot"}

_applied: list[str] = []


def _jaxlib_version() -> str | None:
    try:
        return importlib.metadata.version("jaxlib")
    except importlib.metadata.PackageNotFoundError:
        return None


def apply(environ=os.environ) -> list[str]:
    """Adds the default flags to `environ["XLA_FLAGS"]` where allowed (see the module docstring);
    returns the flags it added."""
    if environ.get(OPT_OUT, "1").strip().lower() in ("0", "false", "no", "off"):
        return []
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
