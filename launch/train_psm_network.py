"""Trains the personalised saliency network (Strohm et al.); needs --config.encoder_workdir.

    python launch/train_psm_network.py --config=psm_jax/configs/synthetic.py:psm_network \
        --workdir=runs/psm_network

Other datasets and options: the docstrings of psm_jax/configs/*.py.
"""

from psm_jax.train import cli

if __name__ == "__main__":
    cli.main("psm_network")
