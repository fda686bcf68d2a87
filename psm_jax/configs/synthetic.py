"""Synthetic default dataset (no download): quick configs the main job and the tests use.

    python launch/train_embedding.py --config=psm_jax/configs/synthetic.py:embedding \
        --workdir=runs/synthetic/embedding
    python launch/train_psm_network.py --config=psm_jax/configs/synthetic.py:psm_network \
        --config.encoder_workdir=runs/synthetic/embedding --workdir=runs/synthetic/psm_network
    python launch/train_multi_task.py --config=psm_jax/configs/synthetic.py:multi_task \
        --workdir=runs/synthetic/multi_task
    python launch/train_per_observer.py --config=psm_jax/configs/synthetic.py:per_observer \
        --workdir=runs/synthetic/per_observer
    python launch/train_universal.py --config=psm_jax/configs/synthetic.py:universal \
        --workdir=runs/synthetic/universal

Options after the model: "tiny" (the 30-image dataset and a few steps, for tests), "paper" (the
papers' step counts and batch sizes instead of the quick ones), "predicted" and "open" as in
psm_jax/configs/osie.py.
"""

from psm_jax.configs import base, experiments


def get_config(argument: str = "psm_network"):
    model, options = base.parse_options(argument)
    config = base.get_config(model)
    config.dataset = "synthetic_personal_saliency"
    if "paper" not in options:
        # Quick schedules that fit the main job into about 10 minutes on a 2-core CPU (ours).
        # The PSM network: 1,200 steps of 16 cost what 600 of 32 did and, measured on the
        # validation images over two seeds, beat the USM on CC, SIM and KLD where 600 of 32 lost
        # KLD (benchmarks/RESULTS.md).
        config.batch_size = {"universal": 32}.get(model, 16)
        if model == "embedding":
            # Sets of m = 8 pairs: at 200 steps, m = 4 left the embeddings almost collapsed (mean
            # cosine 0.98, precision@1 0.52 for unseen observers at m = 32; m = 8: 0.84). The PSM
            # network's embedding pool keeps m = 32, the m the evaluation embeds observers with.
            config.m = 8
        config.embedding_pool_size = 20
        config.num_steps = {"embedding": 200, "psm_network": 1200, "universal": 300}.get(model, 200)
        config.checkpoint_every = 100
        config.log_every = 20
        config.eval_batches = 4
        config.architecture = "strohm"  # per_observer: the cheaper of the two on a CPU
        experiments.quick_optimiser(config)
    if "tiny" in options:
        config.dataset = "synthetic_personal_saliency/tiny"
        config.batch_size = 8
        config.m = 3
        config.embedding_pool_size = 4
        config.num_steps = 6
        config.checkpoint_every = 3
        config.log_every = 2
        config.eval_batches = 2
        config.network = {
            "embedding": {"widths": (4, 8, 8, 8), "embedding_size": 8},
            "psm_network": {
                "trunk_widths": (4, 8, 8),
                "dynamic_width": 8,
                "head_width": 8,
                "embedding_size": 8,
                "hypernetwork_hidden": 16,
            },
            "multi_task": {"trunk_widths": (4, 8, 8, 8), "head_widths": (8, 8, 4)},
            "per_observer": {"trunk_widths": (4, 8, 8), "dynamic_width": 8, "head_width": 8},
            "universal": {"widths": (4, 8, 8, 8)},
        }[model]
    return experiments.apply_options(config, options & {"predicted", "open", "closed"})
