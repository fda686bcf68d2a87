"""Options shared by the dataset config files: USM source, protocol, schedule."""

from __future__ import annotations

OPTIONS = ("predicted", "open", "closed", "quick", "tiny", "paper")


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
        config.num_steps = {"embedding": 300}.get(config.model, 600)
        config.batch_size = 32
        config.m = 8
        config.embedding_pool_size = 20
        config.checkpoint_every = 200
    return config
