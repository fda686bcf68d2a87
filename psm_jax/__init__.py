"""psm-jax: personalised saliency prediction (PSM = USM + discrepancy) in JAX/Flax."""

from psm_jax import xla_defaults

xla_defaults.apply()  # before JAX starts a backend; PSM_JAX_XLA_DEFAULTS=0 opts out

__version__ = "0.1.0"
