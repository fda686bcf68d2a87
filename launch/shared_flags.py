"""Flags several launchers share (absl flags are defined in launch/ only).

A launcher that uses one calls `flags.adopt_module_key_flags(shared_flags)`, so it shows in its
--help.
"""

from absl import flags

from psm_jax.configs import evaluation

USM_FLOOR = flags.DEFINE_float(
    "usm_floor",
    evaluation.get_config().usm_floor,
    "Predicted PSM = clip(USM + discrepancy, usm_floor x USM, 1); 0 = the papers' composition "
    "(ours: 0.3; why: psm_jax/configs/evaluation.py).",
    lower_bound=0.0,
    upper_bound=1.0,
)
DISCREPANCY_WEIGHT = flags.DEFINE_float(
    "discrepancy_weight",
    evaluation.get_config().discrepancy_weight,
    "Predicted PSM = clip(USM + discrepancy_weight x discrepancy, usm_floor x USM, 1); 1 = the "
    "papers' composition (why ours differs: psm_jax/configs/evaluation.py). Networks trained with "
    "--config.composition=log_ratio are composed as trained: USM x exp(s x output).",
    lower_bound=0.0,
    upper_bound=2.0,
)
