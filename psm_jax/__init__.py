"""psm-jax: personalised saliency prediction (PSM = USM + discrepancy) in JAX/Flax."""

__version__ = "0.1.0"
