r"""ID (de Haas et al.: the 700 OSIE images, 102 observers: 80 / 10 / 12).

    .venv/bin/python launch/train.py --config=psm_jax/configs/individual_differences.py:embedding \
        --config.manual_dir=/path/to/release \
        --workdir=runs/individual_differences/embedding
    .venv/bin/python launch/train.py \
        --config=psm_jax/configs/individual_differences.py:psm_network \
        --config.manual_dir=/path/to/release \
        --config.encoder_workdir=runs/individual_differences/embedding \
        --workdir=runs/individual_differences/psm_network

and likewise `:multi_task`, `:per_observer` (`--config.architecture=xu|strohm`) and `:universal`,
each into runs/individual_differences/<model>.

The release (`--config.manual_dir`): a folder with fixations.csv (or .parquet) and stimuli/ (see
tfds_builders/individual_differences).
Closed set and open set (Strohm et al., Tables 1-4) share the trained models: the protocol is chosen
when evaluating (`launch/evaluate.py --protocol`). "quick": short CPU schedules
(`experiments.QUICK_REAL`). "predicted" trains on USMs predicted by the universal network (exported
to runs/individual_differences/predicted_usm) instead of the ground-truth USM.
"""

from psm_jax.configs import base, experiments


def get_config(argument: str = "psm_network"):
    model, options = base.parse_options(argument)
    config = base.get_config(model)
    config.dataset = "individual_differences"
    return experiments.apply_options(config, options)
