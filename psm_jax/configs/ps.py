"""PS (Xu et al.: 1,600 images, 30 observers: 20 train / 5 validation / 5 test).

    python launch/train_embedding.py --config=psm_jax/configs/ps.py:embedding \
        --config.manual_dir=/path/to/release --workdir=runs/ps/embedding
    python launch/train_psm_network.py --config=psm_jax/configs/ps.py:psm_network \
        --config.manual_dir=/path/to/release --config.encoder_workdir=runs/ps/embedding \
        --workdir=runs/ps/psm_network
    python launch/train_psm_network.py --config=psm_jax/configs/ps.py:psm_network,predicted \
        --config.manual_dir=/path/to/release --config.encoder_workdir=runs/ps/embedding \
        --workdir=runs/ps/psm_network_predicted_usm
    python launch/train_multi_task.py --config=psm_jax/configs/ps.py:multi_task \
        --config.manual_dir=/path/to/release --workdir=runs/ps/multi_task
    python launch/train_per_observer.py --config=psm_jax/configs/ps.py:per_observer \
        --config.architecture=strohm --config.manual_dir=/path/to/release \
        --workdir=runs/ps/per_observer
    python launch/train_universal.py --config=psm_jax/configs/ps.py:universal \
        --config.manual_dir=/path/to/release --workdir=runs/ps/universal

The release (`--config.manual_dir`): the PS release (images + fixData/ImfixData_Sub_k.mat).
Closed set and open set (Strohm et al., Tables 1-4) share the trained models: add "open" to mark a
run's evaluation protocol. "predicted" trains on USMs predicted by the universal network (exported
to runs/personalized_saliency/predicted_usm) instead of the ground-truth USM.
"""

from psm_jax.configs import base, experiments


def get_config(argument: str = "psm_network"):
    model, options = base.parse_options(argument)
    config = base.get_config(model)
    config.dataset = "personalized_saliency"
    return experiments.apply_options(config, options)
