r"""Synthetic default dataset (no download): quick configs the main job and the tests use.

    .venv/bin/python launch/train.py --config=psm_jax/configs/synthetic.py:embedding \
        --workdir=runs/synthetic_personal_saliency/embedding
    .venv/bin/python launch/train.py --config=psm_jax/configs/synthetic.py:psm_network \
        --config.encoder_workdir=runs/synthetic_personal_saliency/embedding \
        --workdir=runs/synthetic_personal_saliency/psm_network
    .venv/bin/python launch/train.py --config=psm_jax/configs/synthetic.py:multi_task \
        --workdir=runs/synthetic_personal_saliency/multi_task
    .venv/bin/python launch/train.py --config=psm_jax/configs/synthetic.py:per_observer \
        --workdir=runs/synthetic_personal_saliency/per_observer
    .venv/bin/python launch/train.py --config=psm_jax/configs/synthetic.py:universal \
        --workdir=runs/synthetic_personal_saliency/universal

These are the main job's models and workdirs (`launch/main.py`, `make demo`); its report shows the
results to expect (README, "Results"; docs/results.md). Options after the model: "tiny" (the
30-image dataset and a few steps, for tests), "paper" (the papers' step counts and batch sizes
instead of the quick ones), "predicted" as in psm_jax/configs/osie.py.
`--config.dataset=synthetic_personal_saliency/seed1` trains on a fresh generator draw.
"""

from psm_jax.configs import base, experiments

DRAWS = (
    "synthetic_personal_saliency",
    "synthetic_personal_saliency/seed1",
    "synthetic_personal_saliency/seed2",
)
"""The generator draws every claim is checked on (seed 0, the default, and two fresh seeds)."""

QUICK_SYNTHETIC = {
    "num_steps": {
        "embedding": 200,
        "psm_network": 1200,
        "multi_task": 200,
        "per_observer": 200,
        "universal": 300,
    },
    "batch_size": {
        "embedding": 16,
        "psm_network": 16,
        "multi_task": 16,
        "per_observer": 16,
        "universal": 32,
    },
    "checkpoint_every": 100,
    "log_every": 20,
    "eval_batches": 4,
    "universal": {
        "num_steps": 600,
        "learning_rate": 3e-3,
        "network": {"backbone": "efficientnet_lite0", "input_size": (240, 320)},
    },
}
"""Quick schedules that fit the main job into about 10 minutes on a 2-core CPU (ours). The PSM
network: 1,200 steps of 16 cost what 600 of 32 did and, measured on the validation images over two
seeds, beat the USM on CC, SIM and KLD where 600 of 32 lost KLD (docs/results_log.md)."""

TINY_NETWORKS = {
    "embedding": {"widths": (4, 8, 8, 8), "embedding_size": 8},
    "psm_network": {
        "trunk_widths": (4, 8, 8),
        "dynamic_width": 8,
        "head_width": 8,
        "embedding_size": 8,
        "hypernetwork_hidden": 16,
    },
    "multi_task": {"trunk_widths": (4, 8, 8, 8), "head_widths": (8, 8, 4)},
    "per_observer": {"trunk_widths": (4, 8, 8), "dynamic_width": 8, "head_width": 8},
    "universal": {
        "backbone": "",
        "widths": (4, 8, 8, 8),
        "input_size": (64, 96),
        "readout_widths": (8,),
        "centre_bias_grid": (3, 4),
    },
}
"""The tiny option's networks: for tests only. The universal model is the small network trained
from scratch (compiling the backbone for each of the main job's batch shapes cost the fast tests
about a minute); `--config.network.backbone=efficientnet_lite0` reads the backbone at 64x96 with
the tiny readout (tests/test_launchers.py, tests/test_universal.py)."""


def get_config(argument: str = "psm_network"):
    model, options = base.parse_options(argument)
    config = base.get_config(model)
    config.dataset = "synthetic_personal_saliency"
    unknown = options - {"tiny", "paper", "predicted"}
    if unknown:
        experiments.apply_options(config, unknown, known=("tiny", "paper", "predicted"))
    if "paper" not in options:
        experiments.quick_schedule(config, **QUICK_SYNTHETIC)
    if "tiny" in options:
        config.dataset = "synthetic_personal_saliency/tiny"
        config.batch_size = 8
        config.m = 3
        config.embedding_pool_size = 4
        config.num_steps = 6
        config.checkpoint_every = 3
        config.log_every = 2
        config.eval_batches = 2
        config.network.update(TINY_NETWORKS[model])
    return experiments.apply_options(config, options & {"predicted"})
