"""Trains the per-observer networks (MultiConvNets / MultiCNN: --config.architecture=xu|strohm).

    python launch/train_per_observer.py --config=psm_jax/configs/synthetic.py:per_observer \
        --workdir=runs/per_observer

Other datasets and options: the docstrings of psm_jax/configs/*.py.
"""

from psm_jax.train import cli

if __name__ == "__main__":
    cli.main("per_observer")
