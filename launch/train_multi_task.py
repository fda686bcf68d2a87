"""Trains the multi-task CNN (Xu et al.).

    python launch/train_multi_task.py --config=psm_jax/configs/synthetic.py:multi_task \
        --workdir=runs/multi_task

Other datasets and options: the docstrings of psm_jax/configs/*.py.
"""

from psm_jax.train import cli

if __name__ == "__main__":
    cli.main("multi_task")
