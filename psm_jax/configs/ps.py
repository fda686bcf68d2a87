r"""PS (Xu et al.: 1,600 images, 30 observers: 20 train / 5 validation / 5 test).

    .venv/bin/python launch/train.py --config=psm_jax/configs/ps.py:embedding \
        --config.manual_dir=/path/to/release \
        --workdir=runs/personalized_saliency/embedding
    .venv/bin/python launch/train.py --config=psm_jax/configs/ps.py:psm_network \
        --config.manual_dir=/path/to/release \
        --config.encoder_workdir=runs/personalized_saliency/embedding \
        --workdir=runs/personalized_saliency/psm_network

and likewise `:multi_task`, `:per_observer` (`--config.architecture=xu|strohm`) and `:universal`,
each into runs/personalized_saliency/<model>.

The release (`--config.manual_dir`): the PS release (images + fixData/ImfixData_Sub_k.mat).
Closed set and open set (Strohm et al., Tables 1-4) share the trained models: the protocol is chosen
when evaluating (`launch/evaluate.py --protocol`). "quick": short CPU schedules
(`experiments.QUICK_REAL`). "predicted" trains on USMs predicted by the universal network (exported
to runs/personalized_saliency/predicted_usm) instead of the ground-truth USM.
"""

from psm_jax.configs import base, experiments


def get_config(argument: str = "psm_network"):
    model, options = base.parse_options(argument)
    config = base.get_config(model)
    config.dataset = "personalized_saliency"
    return experiments.apply_options(config, options)
