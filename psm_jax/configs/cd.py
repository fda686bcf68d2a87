r"""The combined dataset (CD) of Strohm et al.: the embedding encoder trained on the PS and the ID
training observers together (labels kept distinct), batches mixed in proportion to observers.

    .venv/bin/python launch/train.py --config=psm_jax/configs/cd.py:embedding \
        --config.manual_dir=/path/to/ps_release \
        --config.combine_manual_dirs=/path/to/id_folder --workdir=runs/cd/embedding

The PSM networks of each dataset then take this encoder
(`--config.encoder_workdir=runs/cd/embedding`) with psm_jax/configs/ps.py or
individual_differences.py.
"""

from psm_jax.configs import base, experiments


def get_config(argument: str = "embedding"):
    model, options = base.parse_options(argument)
    if model != "embedding":
        raise ValueError(
            "The combined dataset trains the embedding encoder only (model 'embedding')."
        )
    config = base.get_config(model)
    config.dataset = "personalized_saliency"
    config.combine_with = "individual_differences"
    return experiments.apply_options(config, options)
