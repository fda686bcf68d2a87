"""OSIE (700 images, 15 observers: 9 train / 3 validation / 3 test), from the real release.

    python launch/train_embedding.py --config=psm_jax/configs/osie.py:embedding \
        --workdir=runs/osie/embedding
    python launch/train_psm_network.py --config=psm_jax/configs/osie.py:psm_network \
        --config.encoder_workdir=runs/osie/embedding --workdir=runs/osie/psm_network
    python launch/train_multi_task.py --config=psm_jax/configs/osie.py:multi_task \
        --workdir=runs/osie/multi_task
    python launch/train_per_observer.py --config=psm_jax/configs/osie.py:per_observer \
        --workdir=runs/osie/per_observer
    python launch/train_universal.py --config=psm_jax/configs/osie.py:universal \
        --workdir=runs/osie/universal

Options after the model (comma-separated): "predicted" (train on USMs predicted by a universal
network, exported to a folder: `--config.external_usm_dir=...`), "open" (open-set evaluation
protocol; training is the same), "quick" (the synthetic configs' short schedules, for a first look
on a CPU). The release is read from ../shared/datasets/osie (`--config.manual_dir` to change).
"""

from psm_jax.configs import base, experiments


def get_config(argument: str = "psm_network"):
    model, options = base.parse_options(argument)
    config = base.get_config(model)
    config.dataset = "osie_personal"
    config.manual_dir = "../shared/datasets/osie"
    return experiments.apply_options(config, options)
