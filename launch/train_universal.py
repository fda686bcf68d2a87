"""Trains the universal saliency network (image -> USM).

    python launch/train_universal.py --config=psm_jax/configs/synthetic.py:universal \
        --workdir=runs/universal

Other datasets and options: the docstrings of psm_jax/configs/*.py.
"""

from psm_jax.train import cli

if __name__ == "__main__":
    cli.main("universal")
