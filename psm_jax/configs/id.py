"""ID (de Haas et al.: the 700 OSIE images, 102 observers: 80 / 10 / 12).

    python launch/train_embedding.py --config=psm_jax/configs/id.py:embedding \
        --config.manual_dir=/path/to/release --workdir=runs/id/embedding
    python launch/train_psm_network.py --config=psm_jax/configs/id.py:psm_network \
        --config.manual_dir=/path/to/release --config.encoder_workdir=runs/id/embedding \
        --workdir=runs/id/psm_network
    python launch/train_psm_network.py --config=psm_jax/configs/id.py:psm_network,predicted \
        --config.manual_dir=/path/to/release --config.encoder_workdir=runs/id/embedding \
        --workdir=runs/id/psm_network_predicted_usm
    python launch/train_multi_task.py --config=psm_jax/configs/id.py:multi_task \
        --config.manual_dir=/path/to/release --workdir=runs/id/multi_task
    python launch/train_per_observer.py --config=psm_jax/configs/id.py:per_observer \
        --config.architecture=strohm --config.manual_dir=/path/to/release \
        --workdir=runs/id/per_observer
    python launch/train_universal.py --config=psm_jax/configs/id.py:universal \
        --config.manual_dir=/path/to/release --workdir=runs/id/universal

The release (`--config.manual_dir`): a folder with fixations.csv (or .parquet) and stimuli/ (see
tfds_builders/individual_differences).
Closed set and open set (Strohm et al., Tables 1-4) share the trained models: add "open" to mark a
run's evaluation protocol. "predicted" trains on USMs predicted by the universal network (exported
to runs/individual_differences/predicted_usm) instead of the ground-truth USM.
"""

from psm_jax.configs import base, experiments


def get_config(argument: str = "psm_network"):
    model, options = base.parse_options(argument)
    config = base.get_config(model)
    config.dataset = "individual_differences"
    return experiments.apply_options(config, options)
