"""The fields every training config has, with the papers' optimiser settings per model.

Models (`config.model`) and the paper settings they default to:
  embedding     Strohm et al.: Adam 1e-3, batch 256 sets of m pairs, triplet margin 0.05,
                semi-hard mining, dropout 0.5, 32-d embeddings.
  psm_network   Strohm et al.: SGD 0.02, momentum 0.9, weight decay 5e-4, batch 32, learning rate
                halved every 25 epochs; embeddings drawn from a pool of 100 per training observer,
                computed by the trained encoder (`encoder_workdir`) from random m-pair sets.
  multi_task    Xu et al.: SGD 3e-4, momentum 0.9, weight decay 5e-4, batch 40, 40k iterations,
                left-right flips, Caffe-style Euclidean loss.
  per_observer  the per-observer baselines (MultiConvNets / MultiCNN), trained like their
                architecture's paper model (`architecture` = "xu" or "strohm").
  universal     the universal saliency network (image -> USM), SGD like the PSM network.

Where the papers are silent (total steps of the embedding and PSM networks), the defaults are ours
and marked as such.
"""

from __future__ import annotations

import math

import ml_collections

from psm_jax import registry


def get_config(model: str = "psm_network") -> ml_collections.ConfigDict:
    """The paper-default config of `model` on the synthetic dataset."""
    registry.get(model)  # a ValueError naming the known models
    config = ml_collections.ConfigDict()
    config.model = model
    # Data.
    config.dataset = "synthetic_personal_saliency"
    config.data_dir = "data/tfds"
    config.manual_dir = ""  # the release folder (OSIE, PS, ID); "" for the synthetic dataset
    config.usm = "ground_truth"  # or "external": maps from external_usm_dir (a USM model's output)
    config.external_usm_dir = ""
    config.combine_with = ""  # embedding: more datasets (comma-separated) mixed in (CD)
    config.combine_manual_dirs = ""  # their release folders, comma-separated, same order
    config.num_workers = 0  # grain worker processes
    # Run.
    config.seed = 0
    config.prng_impl = "rbg"  # model-init RNG; XLA:CPU compiles threefry draws ~7x slower
    config.log_every = 50
    config.checkpoint_every = 1000
    config.eval_batches = 8  # validation batches for the best-checkpoint loss
    config.keep_best = 1
    # A trained workdir of the same model and network to start from (fine-tuning, e.g. a universal
    # network trained on another dataset: the papers' "fine-tuned" universal row); "": from scratch.
    config.init_from = ""
    # Resume a workdir's checkpoints although this config differs from theirs in more than the
    # schedule (psm_jax.train.checkpoint.RESUMABLE_FIELDS); the old config.json is kept beside.
    config.allow_config_change = False
    # Optimiser (SGD unless optimizer == "adam").
    config.optimizer = "sgd"
    config.learning_rate = 0.02
    config.momentum = 0.9
    config.weight_decay = 5e-4
    config.lr_halving_epochs = 0  # 0: constant learning rate
    config.num_steps = 10_000
    config.batch_size = 32
    config.flip = False  # left-right flip augmentation
    config.loss_reduction = "mean"  # or "caffe_euclidean" (Xu et al.)
    config.composed_kld_weight = 0.0  # psm_network, ours: + w * KLD of the composed PSM
    # psm_network: how its output makes a PSM. "additive" (the papers'): clip(USM + D, ., 1),
    # trained on the discrepancy PSM - USM by deep-supervised MSE; "log_ratio" (ours):
    # USM x exp(s D), D a log density ratio in units of s = log_ratio_scale, trained on the KLD of
    # that map (`psm_jax.losses.log_ratio_kld`).
    config.composition = "additive"
    config.log_ratio_scale = 2.0
    # Models.
    config.network = ml_collections.ConfigDict()  # fields of the model's architecture config
    config.architecture = "xu"  # per_observer: "xu" or "strohm"
    config.m = 32  # pairs per embedding set
    config.sets_per_observer = 2  # sets per observer per window (positives for the triplet loss)
    # True: an observer's sets in a window may share images (psm-jax before 2026-11-30, kept to
    # measure it); False: they never do, as Strohm et al.'s Eq. 1 draws the positive from other
    # images than the anchor (psm_jax.data.pipeline.embedding_dataset).
    config.overlapping_sets = False
    # The encoder's loss: "triplet" (Strohm et al.'s cosine triplet margin loss, with `margin` and
    # `mining`) or "supervised_contrastive" (ours, Khosla et al. 2020, with `temperature`): its
    # collapsed state (every embedding alike) is no minimum (docs/results_log.md).
    config.embedding_loss = "triplet"
    config.margin = 0.05
    config.mining = "semi_hard"
    config.temperature = 0.1
    config.encoder_workdir = ""  # psm_network: the trained embedding encoder's workdir
    config.embedding_pool_size = 100
    # psm_network: what conditions the dynamic layer. "encoder" (the method): each observer's
    # embeddings from the trained encoder; "none" (issue 37's no-embedding control, ours): one
    # fixed unit vector for everybody, so the same architecture, composition, loss and budget
    # learn a universal refiner of the USM (the encoder_workdir only gives the embedding size).
    config.embedding_input = "encoder"
    # The discrepancy models' ground-truth USM (their regression stream): "train" (the training
    # observers' mean PSM, for every observer) or "leave_one_out" (ours, issue 37: for a training
    # observer, the other training observers' mean, so that the map a closed-set observer is
    # scored against is not 1/n of their USM). Not with external (predicted) USMs.
    config.usm_mode = "train"
    # Recorded at training from the dataset, so that a trained model restores from its workdir
    # alone (psm_jax.train.checkpoint.restore_model): 0 / () until then.
    config.num_observers = 0  # training observers (the per-observer models' observer axis)
    config.working_size = ()  # (H, W) of the images and maps the model was trained on
    if model == "embedding":
        config.optimizer = "adam"
        config.learning_rate = 1e-3
        config.weight_decay = 0.0
        config.batch_size = 256
        config.num_steps = 20_000  # ours: the paper gives no total
    elif model == "psm_network":
        config.lr_halving_epochs = 25
        config.num_steps = 50_000  # ours: the paper gives no total
    elif model in ("multi_task", "per_observer"):
        config.learning_rate = 3e-4
        config.batch_size = 40
        config.num_steps = 40_000
        config.flip = True
        config.loss_reduction = "caffe_euclidean"
    elif model == "universal":
        config.num_steps = 20_000  # ours
    return config


def parse_options(argument: str | None) -> tuple[str, set[str]]:
    """ "model,option,option" -> (model, {options})."""
    parts = [part.strip() for part in (argument or "psm_network").split(",") if part.strip()]
    return parts[0], set(parts[1:])


_WHOLE_AT_LEAST = {
    "num_steps": 1,
    "batch_size": 1,
    "log_every": 1,
    "checkpoint_every": 1,
    "eval_batches": 1,
    "keep_best": 1,
    "m": 1,
    "sets_per_observer": 1,
    "embedding_pool_size": 1,
    "num_workers": 0,
    "seed": 0,
}
_FINITE_AT_LEAST = {
    "learning_rate": 0.0,
    "weight_decay": 0.0,
    "lr_halving_epochs": 0.0,
    "composed_kld_weight": 0.0,
    "margin": 0.0,
}
_FINITE_IN = {"momentum": (0.0, 1.0)}
_FINITE_ABOVE_ZERO = ("temperature", "log_ratio_scale")


def check_numbers(config: ml_collections.ConfigDict) -> None:
    """A ValueError naming the `--config.<field>` flag and its accepted range when a number of the
    training config is out of range: counts and intervals (steps, batch size, logging and
    checkpoint intervals, ...) must be whole numbers >= 1 (a 0 divides by zero or trains nothing),
    rates and weights finite numbers >= 0 (a NaN learning rate trains NaNs). Fields the config
    lacks are not checked."""

    def refuse(field, wanted):
        raise ValueError(f"--config.{field}={config[field]}: must be {wanted}.")

    for field, least in _WHOLE_AT_LEAST.items():
        value = config.get(field)
        if value is None:
            continue
        if isinstance(value, bool) or not float(value).is_integer() or value < least:
            refuse(field, f"a whole number >= {least}")
    for field, least in _FINITE_AT_LEAST.items():
        value = config.get(field)
        if value is not None and not (math.isfinite(value) and value >= least):
            refuse(field, f"a finite number >= {least:g}")
    for field, (low, high) in _FINITE_IN.items():
        value = config.get(field)
        if value is not None and not (math.isfinite(value) and low <= value <= high):
            refuse(field, f"a finite number in [{low:g}, {high:g}]")
    for field in _FINITE_ABOVE_ZERO:
        value = config.get(field)
        if value is not None and not (math.isfinite(value) and value > 0):
            refuse(field, "a finite number > 0")
