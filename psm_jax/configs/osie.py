r"""OSIE (700 images, 15 observers: 9 train / 3 validation / 3 test), from the real release.

    .venv/bin/python launch/train.py --config=psm_jax/configs/osie.py:embedding \
        --workdir=runs/osie_personal/embedding
    .venv/bin/python launch/train.py --config=psm_jax/configs/osie.py:psm_network \
        --config.encoder_workdir=runs/osie_personal/embedding \
        --workdir=runs/osie_personal/psm_network

and likewise `:multi_task`, `:per_observer` (`--config.architecture=xu|strohm`) and `:universal`,
each into runs/osie_personal/<model>.

Options after the model (comma-separated): "predicted" (train on USMs predicted by a universal
network, exported to a folder: `--config.external_usm_dir=...`), "quick" (short CPU schedules,
`experiments.QUICK_REAL`: what `launch/main.py --dataset=osie_personal` trains; the README gives
its tables). Closed and open set (Strohm et al.) share the trained models: the protocol is chosen
when evaluating (`launch/evaluate.py --config.protocols`). The release is read from
`--config.manual_dir` (where you put the OSIE download: README, "OSIE").
"""

from psm_jax.configs import base, experiments


def get_config(argument: str = "psm_network"):
    model, options = base.parse_options(argument)
    config = base.get_config(model)
    config.dataset = "osie_personal"
    config.manual_dir = ""  # the OSIE release's folder: --config.manual_dir
    return experiments.apply_options(config, options)
