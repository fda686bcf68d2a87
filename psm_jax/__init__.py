"""psm-jax: personalised saliency prediction (PSM = USM + discrepancy) in JAX/Flax.

Importing psm_jax changes nothing in the process: the XLA:CPU flags and allocator settings that
psm-jax measured (`psm_jax.xla_defaults`) are applied by its launchers and benchmarks, before JAX
starts a backend. A program of your own gets them with `psm_jax.xla_defaults.apply()` called
first thing (the launchers' opt-out, `PSM_JAX_XLA_DEFAULTS=0`, holds there too).
"""

__version__ = "0.1.0"
