"""Shared fixtures: paths of the real data in ../shared and the committed dummy releases; the
process settings every test runs under."""

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# Compiling dominates the tests' time on XLA:CPU (training a tiny model for 6 steps: 18 s, of
# which 15 s compile). JAX's persistent compilation cache lets the launchers these tests start
# (which inherit the environment) reuse what this process compiled, and a later run reuse all of
# it: measured 18 s -> 3.9 s for that tiny training. The user's own JAX_COMPILATION_CACHE_DIR
# wins; .jax_cache/ is git-ignored, and deleting it only costs time.
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", str(ROOT / ".jax_cache"))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")
# `make test` (the fast tests) sets PSM_JAX_QUICK_COMPILE=1: XLA:CPU then compiles without LLVM's
# optimisations, which the tiny shapes of the tests do not need (training a tiny model: 15.5 s ->
# 11.5 s). `make test-all` (CI) compiles as the launchers do.
if os.environ.get("PSM_JAX_QUICK_COMPILE") == "1":
    QUICK_FLAGS = "--xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true"
    os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {QUICK_FLAGS}".strip()

import jax  # noqa: E402  (after the cache settings, which JAX reads on import)
import pytest  # noqa: E402

import tfds_builders  # noqa: E402
from psm_jax import xla_defaults  # noqa: E402

# As the launchers do (launch/runner.py): the measured XLA:CPU settings before JAX starts a
# backend, and the datasets registered with TFDS.
xla_defaults.apply()
tfds_builders.register()

# XLA:CPU on the project VM takes about 1 s to compile a threefry draw of each new shape, so
# initialising a model costs seconds per distinct parameter shape; 'rbg' keys compile about 7x
# faster. Tests check behaviour, not particular random values, so they use 'rbg' throughout.
jax.config.update("jax_default_prng_impl", "rbg")

SHARED = ROOT.parent / "shared" / "datasets"
OSIE_DIR = SHARED / "osie"
PS_FIX_DIR = SHARED / "ps_fixations" / "Data" / "fixData"
DUMMY = {
    name: ROOT / "tfds_builders" / name / "dummy_data"
    for name in ("osie_personal", "personalized_saliency", "individual_differences")
}

needs_osie = pytest.mark.skipif(
    not (OSIE_DIR / "data" / "eye" / "fixations.mat").exists(), reason=f"{OSIE_DIR} absent"
)
needs_ps_fixations = pytest.mark.skipif(not PS_FIX_DIR.exists(), reason=f"{PS_FIX_DIR} absent")


@pytest.fixture(scope="session")
def osie_data_dir(tmp_path_factory):
    """A data_dir holding osie_personal built once from the real release (skips when absent)."""
    if not (OSIE_DIR / "data" / "eye" / "fixations.mat").exists():
        pytest.skip(f"{OSIE_DIR} absent")
    from psm_jax.data import datasets

    data_dir = tmp_path_factory.mktemp("osie_tfds")
    datasets.build_dataset("osie_personal", data_dir=str(data_dir), manual_dir=str(OSIE_DIR))
    return str(data_dir)


TINY = "synthetic_personal_saliency/tiny"


def tiny_config(model: str, data_dir: str, **overrides):
    """The tiny synthetic config of `model` reading `data_dir`, with fields overridden."""
    from psm_jax.configs import synthetic

    config = synthetic.get_config(f"{model},tiny")
    config.data_dir = data_dir
    for key, value in overrides.items():
        setattr(config, key, value)
    return config


@pytest.fixture(scope="session")
def tiny_data_dir(tmp_path_factory):
    """A data_dir holding the tiny synthetic dataset, built once."""
    from psm_jax.data import datasets

    data_dir = tmp_path_factory.mktemp("tiny_tfds")
    datasets.build_dataset(TINY, data_dir=str(data_dir))
    return str(data_dir)


@pytest.fixture(scope="session")
def tiny_main_job(tmp_path_factory):
    """The main job run once on the tiny dataset, laid out as `make demo` lays out its own run
    (a folder holding data/tfds and runs/synthetic_personal_saliency): a dict with root, result,
    printed (its stdout) and restored (the workdirs restored, in order)."""
    import contextlib
    import io

    from psm_jax import main_job
    from psm_jax.configs import main as main_configs
    from psm_jax.train import checkpoint

    root = tmp_path_factory.mktemp("tiny_main_job")
    restored, original = [], checkpoint.restore_model

    def counting_restore(workdir, which="best", compute_dtype=None):
        restored.append(Path(workdir).name)
        return original(workdir, which, compute_dtype)

    printed = io.StringIO()
    with pytest.MonkeyPatch.context() as patch, contextlib.redirect_stdout(printed):
        patch.setattr(checkpoint, "restore_model", counting_restore)
        config = main_configs.get_config(TINY)
        config.data_dir = str(root / "data" / "tfds")
        result = main_job.run(config, root / "runs" / "synthetic_personal_saliency")
    return {"root": root, "result": result, "printed": printed.getvalue(), "restored": restored}


@pytest.fixture(scope="session")
def tiny_workdirs(tiny_main_job):
    """Every model of the registry trained on the tiny dataset (a few steps each), by the tiny
    main job: model name -> workdir. Tests read these; a test that trains writes its own."""
    from psm_jax import registry

    run = tiny_main_job["root"] / "runs" / "synthetic_personal_saliency"
    return {model: str(run / model) for model in registry.MODELS}
