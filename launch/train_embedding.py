"""Trains the user-embedding encoder (Strohm et al.), triplet loss.

    python launch/train_embedding.py --config=psm_jax/configs/synthetic.py:embedding \
        --workdir=runs/embedding

Other datasets and options: the docstrings of psm_jax/configs/*.py.
"""

from psm_jax.train import cli

if __name__ == "__main__":
    cli.main("embedding")
