"""Options shared by the dataset config files: USM source, protocol, schedule."""

from __future__ import annotations

OPTIONS = ("predicted", "open", "closed", "quick", "tiny", "paper")


def quick_optimiser(config):
    """The discrepancy models' optimiser for the quick schedules (ours): Adam 1e-3, mean MSE.

    The papers' SGD (0.02 for the PSM network; Xu's 3e-4 on the Caffe Euclidean loss, which
    diverges at larger rates) moves the discrepancy networks too little in a few hundred steps: the
    gradients of a mean squared error on targets of std ~0.07 are tiny. In 600 steps the PSM network
    then learned no personal component (validation MSE = predicting zero); with Adam it does
    (benchmarks/RESULTS.md). The three discrepancy models get the same recipe, so the comparison
    stays fair. Other models are left as they are.
    """
    if config.model in ("psm_network", "multi_task", "per_observer"):
        config.optimizer = "adam"
        config.learning_rate = 1e-3
        config.weight_decay = 0.0
        config.lr_halving_epochs = 0
        config.loss_reduction = "mean"
    return config


def apply_options(config, options: set[str]):
    """Applies "predicted" / "open" / "closed" / "quick" to a dataset's config."""
    unknown = options - set(OPTIONS)
    if unknown:
        raise ValueError(f"Unknown config options {sorted(unknown)}; known: {OPTIONS}")
    if "predicted" in options:
        # The universal network's USMs, exported to one map per image (launch/export_usm.py).
        config.usm = "external"
        config.external_usm_dir = f"runs/{config.dataset.split('/')[0]}/predicted_usm"
    if "open" in options:
        config.protocol = "open"
    if "quick" in options:
        # The multi-task CNN and the per-observer networks cost 4-8x the PSM network per example on
        # a CPU: fewer, smaller steps (and the cheaper MultiCNN architecture), as in the synthetic
        # configs, keep a quick OSIE main job near 10 minutes.
        baseline = config.model in ("multi_task", "per_observer")
        config.num_steps = {"embedding": 300, "multi_task": 300, "per_observer": 300}.get(
            config.model, 1200 if config.model == "psm_network" else 600
        )
        # The PSM network: 1,200 steps of 16, as in the synthetic configs.
        config.batch_size = 16 if baseline or config.model == "psm_network" else 32
        config.architecture = "strohm"
        if config.model == "embedding":
            config.m = 8
        config.embedding_pool_size = 20
        config.checkpoint_every = 200
        quick_optimiser(config)
    return config
