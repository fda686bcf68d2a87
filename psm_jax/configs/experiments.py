"""Options shared by the dataset config files: the USM source and the quick CPU schedules."""

from __future__ import annotations

from psm_jax import registry

OPTIONS = ("predicted", "quick")

QUICK_REAL = {
    "num_steps": {
        "embedding": 300,
        "psm_network": 1200,
        "multi_task": 300,
        "per_observer": 300,
        "universal": 600,
    },
    "batch_size": {
        "embedding": 32,
        "psm_network": 16,
        "multi_task": 16,
        "per_observer": 16,
        "universal": 32,
    },
    "checkpoint_every": 200,
    "universal": {
        "num_steps": 1500,
        "learning_rate": 3e-3,
        "network": {"backbone": "efficientnet_lite0", "input_size": (384, 512)},
    },
}
"""The "quick" option of the real datasets' configs (OSIE, PS, ID): the multi-task CNN and the
per-observer networks cost 4-8x the PSM network per example on a CPU, so they get fewer, smaller
steps (and the cheaper MultiCNN architecture); a quick OSIE main job takes about 15 minutes. The
universal model is the readout of EfficientNet-Lite0's features at 384x512, Adam 3e-3 for 1,500
steps of 32 (`quick_schedule`)."""


def quick_optimiser(config):
    """The discrepancy models' optimiser for the quick schedules (ours): Adam 1e-3, mean MSE.

    The papers' SGD (0.02 for the PSM network; Xu's 3e-4 on the Caffe Euclidean loss, which
    diverges at larger rates) moves the discrepancy networks too little in a few hundred steps: the
    gradients of a mean squared error on targets of std ~0.07 are tiny. In 600 steps the PSM network
    then learned no personal component (validation MSE = predicting zero); with Adam it does
    (docs/results_log.md). The three discrepancy models get the same recipe, so the comparison
    stays fair. Other models are left as they are.

    The PSM network outputs a log density ratio, composed as USM x exp(2 D) and trained on that
    map's KLD (`config.composition="log_ratio"`, ours; `--config.composition=additive` gives the
    papers' discrepancy back). On the closed-set validation images, against the papers' additive
    form at the evaluation's weight 0.5 (same encoder each): CC / SIM / KLD gains over the USM
    +0.054 / +0.036 / -0.074 -> +0.113 / +0.098 / -0.165 (seed 0), +0.046 / +0.035 / -0.056 ->
    +0.098 / +0.090 / -0.142 (seed1), and on OSIE, where the additive network learned nothing
    (+0.000 on each), +0.015 / +0.018 / -0.033, above the best baseline without learning
    (docs/results_log.md, 2026-12-03).
    """
    if config.model in ("psm_network", "multi_task", "per_observer"):
        config.optimizer = "adam"
        config.learning_rate = 1e-3
        config.weight_decay = 0.0
        config.lr_halving_epochs = 0
        config.loss_reduction = "mean"
    if config.model == "psm_network":
        config.composition = "log_ratio"
    return config


def quick_schedule(
    config,
    *,
    num_steps: dict[str, int],
    batch_size: dict[str, int],
    checkpoint_every: int,
    log_every: int | None = None,
    eval_batches: int | None = None,
    universal: dict | None = None,
):
    """A short CPU schedule (ours): the one recipe behind the synthetic configs' defaults and the
    real datasets' "quick" option, which differ only in their step counts and batch sizes, and in
    the universal model's settings (`universal`: its num_steps, learning_rate and network fields).

    Besides the given steps and batch sizes (per model): the encoder trains on sets of m = 8 (at
    200 steps, m = 4 left the embeddings almost collapsed, mean cosine 0.98; the PSM network's
    pool keeps m = 32, the m the evaluation embeds observers with), a pool of 20 embeddings per
    training observer, the MultiCNN architecture for the per-observer networks (the cheaper one on
    a CPU), and Adam for the discrepancy models (`quick_optimiser`). The encoder trains with the
    supervised contrastive loss instead of the papers' triplet loss: in 200 steps the triplet
    encoder sat on a near-collapsed plateau (every cosine ~0.93) and on one draw of three its
    best checkpoint was the collapsed one; chosen on validation observers over three draws
    (docs/results_log.md, 2026-12-01). `--config.embedding_loss=triplet` restores the papers'.
    And it reads each pair's departure from the USM (`network.input_map="discrepancy"`) and pools
    its features under that departure (`network.pooling="map"`) instead of the papers' PSM input
    and global average: precision@1 of unseen validation observers at m = 8 / 32 went from
    0.60 / 0.70, 0.52 / 0.78, 0.34 / 0.64 to 0.88 / 0.96, 0.86 / 1.00, 0.90 / 1.00 on the three
    draws (docs/results_log.md, 2026-12-01, evening). Enrolling a new person then needs the USMs
    of their images (`launch/enroll.py --universal`); `--config.network.input_map=psm
    --config.network.pooling=mean` restores the papers' encoder.

    The universal model (`universal`) is the readout of a frozen ImageNet backbone's features
    (`psm_jax.models.universal.ReadoutSaliencyNetwork`), trained with Adam: the small network
    trained from scratch stayed near the centre bias on OSIE (validation CC 0.361 against the
    observers' PSMs; the readout 0.612), chosen on OSIE's validation images among input sizes,
    feature strides, backbones, readout widths, learning rates and step counts
    (studies/universal_study.py, RESULTS.md). `--config.network.backbone=""` gives the small
    network back.
    """
    config.num_steps = num_steps[config.model]
    config.batch_size = batch_size[config.model]
    config.checkpoint_every = checkpoint_every
    if log_every is not None:
        config.log_every = log_every
    if eval_batches is not None:
        config.eval_batches = eval_batches
    if config.model == "embedding":
        config.m = 8
        config.embedding_loss = "supervised_contrastive"
        config.network.input_map = "discrepancy"
        config.network.pooling = "map"
    if config.model == "universal" and universal is not None:
        config.optimizer, config.weight_decay = "adam", 0.0
        config.num_steps = universal["num_steps"]
        config.learning_rate = universal["learning_rate"]
        config.network.update(universal["network"])
    config.embedding_pool_size = 20
    config.architecture = "strohm"
    return quick_optimiser(config)


def trained_alike(config, psm_network):
    """A copy of a multi-task CNN's or per-observer networks' `config` trained alike the PSM
    network's config `psm_network` (ours; issue 37): its log-ratio composition and scale, so
    trained on the composed map's KLD, its optimiser, learning rate and schedule, and as many
    training examples per observer (num_steps x batch_size, the examples drawn alike from every
    training observer's pairs), with its own architecture and batch size. The papers' forms (an
    additive discrepancy trained on MSE, the quick schedules' fewer steps) stay the models'
    configs; this one gives the rows "trained alike" beside them (`launch/main.py
    --config.controls`)."""
    import math

    import ml_collections

    if config.model not in ("multi_task", "per_observer"):
        raise ValueError(
            f"Only the multi-task CNN and per-observer networks train alike, not {config.model}."
        )
    alike = ml_collections.ConfigDict(config.to_dict())
    for field in (
        "optimizer",
        "learning_rate",
        "weight_decay",
        "lr_halving_epochs",
        "loss_reduction",
        "composition",
        "log_ratio_scale",
    ):
        alike[field] = psm_network[field]
    alike.composed_kld_weight = 0.0
    examples = psm_network.num_steps * psm_network.batch_size
    alike.num_steps = math.ceil(examples / alike.batch_size)
    return alike


def apply_options(config, options: set[str], known: tuple[str, ...] = OPTIONS):
    """Applies "predicted" and "quick" (`QUICK_REAL`) to a dataset's config, then fills its
    network with every architecture field (`psm_jax.registry.complete_network`): the last step of
    every config file, so that `--config.network.<field>` can set any of them.

    The evaluation protocol (closed / open set) is not a training option: every model trains the
    same way for both, and the evaluation config's `protocols` chooses it.
    """
    unknown = options - set(known)
    if unknown:
        hint = (
            " The protocol is an evaluation setting: the evaluation config's protocols "
            "(launch/evaluate.py --config.protocols=\"('open',)\")."
            if unknown & {"open", "closed"}
            else ""
        )
        raise ValueError(f"Unknown config options {sorted(unknown)}; known: {known}.{hint}")
    if "predicted" in options:
        # The universal network's USMs, exported to one map per image (launch/export_usm.py).
        config.usm = "external"
        config.external_usm_dir = f"runs/{config.dataset.split('/')[0]}/predicted_usm"
    if "quick" in options:
        quick_schedule(config, **QUICK_REAL)
    return registry.complete_network(config)
