"""Training losses: deep-supervised MSE on discrepancy maps, cosine triplet loss with online mining,
and (ours, an option for the encoder) the supervised contrastive loss.

Both are pure functions of arrays, jit-able, with a validity mask so padded or invalid examples
(an observer with no fixation on an image, see the data pipeline) contribute nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import jax
import jax.numpy as jnp

Reduction = Literal["mean", "caffe_euclidean"]
Mining = Literal["semi_hard", "hard"]


def _masked_mean(values: jax.Array, valid: jax.Array | None) -> jax.Array:
    if valid is None:
        return jnp.mean(values)
    weights = valid.astype(values.dtype)
    return jnp.sum(values * weights) / jnp.maximum(jnp.sum(weights), 1.0)


def resize_target(target: jax.Array, size: tuple[int, int]) -> jax.Array:
    """(B, H, W) target -> (B, *size): same size as is; an integer factor smaller: area (box)
    averaging, as the data pipeline makes its 15x20 discrepancy; otherwise antialiased bilinear."""
    batch, height, width = target.shape
    out_h, out_w = size
    if (height, width) == (out_h, out_w):
        return target
    if height % out_h == 0 and width % out_w == 0:
        blocks = target.reshape(batch, out_h, height // out_h, out_w, width // out_w)
        return jnp.mean(blocks, axis=(2, 4))
    return jax.image.resize(target, (batch, out_h, out_w), "linear", antialias=True)


def deep_supervised_mse(
    outputs: Sequence[jax.Array],
    target: jax.Array,
    valid: jax.Array | None = None,
    reduction: Reduction = "mean",
) -> jax.Array:
    """Sum over the deep-supervision outputs of the squared error to the target discrepancy.

    Strohm et al. Eq. 3 and Xu et al. Eq. 2: L = sum_k ||S_k - Delta_k||^2, where S_k is the k-th
    output (at its own resolution) and Delta_k the target discrepancy resized to it.

    Args:
      outputs: the predicted discrepancy maps, each (B, h_k, w_k).
      target: (B, H, W) target discrepancy (PSM - USM).
      valid: (B,) bool, examples that count; None: all.
      reduction: per example and output, "mean" takes the mean squared error over pixels (MSE,
        Strohm et al.); "caffe_euclidean" takes half the sum of squared errors (Caffe's
        EuclideanLoss, which Xu et al.'s learning rate 3e-4 was tuned with).

    Returns:
      The scalar loss: the per-example sum over outputs, averaged over valid examples.
    """
    per_example = 0.0
    for output in outputs:
        squared = jnp.square(output - resize_target(target, output.shape[1:]))
        if reduction == "mean":
            per_example = per_example + jnp.mean(squared, axis=(1, 2))
        elif reduction == "caffe_euclidean":
            per_example = per_example + 0.5 * jnp.sum(squared, axis=(1, 2))
        else:
            raise ValueError(f"reduction must be 'mean' or 'caffe_euclidean', got {reduction!r}")
    return _masked_mean(per_example, valid)


def composed_kld(
    discrepancy: jax.Array,
    usm: jax.Array,
    psm: jax.Array,
    valid: jax.Array | None = None,
    sharpness: float = 100.0,
    epsilon: float = 1e-7,
) -> jax.Array:
    """KL(PSM || composed map) of the PSM the evaluation builds from a predicted discrepancy (ours).

    The papers' composition is clip(USM + bilinear-upsampled discrepancy, 0, 1) (the evaluation's
    with `usm_floor=0`; its default floor of 0.3 x USM removes most of what this term targets);
    KLD punishes every pixel that map sets to zero where the observer did look, which the
    discrepancy MSE does not see. The loss takes the hard clip's value (what the papers'
    composition scores) with the gradient of the smooth softplus(sharpness * x) / sharpness
    (straight-through), so a pixel pushed below zero still gets pushed back up; both maps become
    distributions, and the regulariser `epsilon` is larger than the metric's (2.2e-16) to keep
    gradients bounded (1e-9 and below made training flatten the whole map, docs/results_log.md).

    Args:
      discrepancy: (B, h, w) predicted discrepancy (the network's final output).
      usm, psm: (B, H, W) the USM it is added to and the ground-truth PSM.
      valid: (B,) bool, examples that count; None: all.

    Returns:
      The scalar mean KLD over valid examples.
    """
    batch, height, width = usm.shape
    upsampled = jax.image.resize(discrepancy, (batch, height, width), "bilinear")
    composed = jnp.clip(usm + upsampled, 0.0, 1.0)
    smooth = jax.nn.softplus(sharpness * (usm + upsampled)) / sharpness
    # The value of the hard clip (what the evaluation scores), the gradient of the smooth one.
    composed = composed + (smooth - jax.lax.stop_gradient(smooth))
    prediction = composed / jnp.sum(composed, axis=(1, 2), keepdims=True)
    target = psm / jnp.maximum(jnp.sum(psm, axis=(1, 2), keepdims=True), 1e-12)
    per_example = jnp.sum(target * jnp.log(epsilon + target / (prediction + epsilon)), axis=(1, 2))
    return _masked_mean(per_example, valid)


def log_ratio_kld(
    outputs: Sequence[jax.Array],
    usm: jax.Array,
    psm: jax.Array,
    scale: float,
    valid: jax.Array | None = None,
    epsilon: float = 1e-7,
) -> jax.Array:
    """The loss of the "log_ratio" composition (ours): for each deep-supervision output L_k, the
    KL(PSM || USM x exp(scale x L_k)) of the map `psm_jax.inference.compose_psm` builds from it,
    L_k upsampled bilinearly to the USM's grid, both maps made distributions. The network's
    output is a log density ratio (in units of `scale`) of the person against the population:
    a log-linear model of the PSM around the USM, whose KLD is convex in L and has no clip
    to die in (the additive form's `composed_kld` needs a straight-through gradient).

    The KLD does not change when a constant is added to L (the map is normalised), so nothing
    holds L's level: under Adam the outputs drifted to -1, where tanh saturates and no gradient
    passes (OSIE, 2026-12-03: every output within 1e-4 of -1, the trained network equal to the
    USM). The loss adds the square of each output's spatial mean, which fixes the level at 0 and
    changes no composed map.

    Args:
      outputs: the network's outputs, each (B, h_k, w_k), in [-1, 1] (tanh).
      usm, psm: (B, H, W) the USM the ratio multiplies and the ground-truth PSM.
      scale: s, the log ratio's range is [-s, s].
      valid: (B,) bool, examples that count; None: all.

    Returns:
      The scalar: the per-example sum over outputs (KLD + the level's square), averaged over
      valid examples.
    """
    batch, height, width = usm.shape
    target = psm / jnp.maximum(jnp.sum(psm, axis=(1, 2), keepdims=True), 1e-12)
    per_example = 0.0
    for output in outputs:
        upsampled = jax.image.resize(output, (batch, height, width), "bilinear")
        composed = usm * jnp.exp(scale * upsampled)
        prediction = composed / jnp.maximum(jnp.sum(composed, axis=(1, 2), keepdims=True), 1e-12)
        per_example = per_example + jnp.sum(
            target * jnp.log(epsilon + target / (prediction + epsilon)), axis=(1, 2)
        )
        per_example = per_example + jnp.square(jnp.mean(output, axis=(1, 2)))
    return _masked_mean(per_example, valid)


def cosine_similarity_matrix(embeddings: jax.Array, epsilon: float = 1e-12) -> jax.Array:
    """(B, d) -> (B, B) cosine similarities."""
    norms = jnp.sqrt(jnp.sum(jnp.square(embeddings), axis=-1, keepdims=True))
    unit = embeddings / jnp.maximum(norms, epsilon)
    return unit @ unit.T


def mined_triplet_losses(
    embeddings: jax.Array,
    labels: jax.Array,
    margin: float = 0.05,
    mining: Mining = "semi_hard",
    valid: jax.Array | None = None,
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Per anchor-positive pair: the mined negative and the triplet loss (Strohm et al. Eq. 1).

    For anchor a and positive p (same label, a != p), with cosine similarity s:
      loss(a, p) = max(s(a, n) - s(a, p) + margin, 0)
    where the negative n (a different label) is chosen online from the batch:
      - "semi_hard": the hardest semi-hard negative, i.e. among negatives farther from the anchor
        than the positive but within the margin (s(a, p) - margin < s(a, n) < s(a, p)) the one most
        similar to the anchor; when there is none, the hardest negative;
      - "hard": always the hardest negative (the one most similar to the anchor).
    Ties between equally similar negatives go to the lowest index (the loss is the same).

    Args:
      embeddings: (B, d); they need not be normalised.
      labels: (B,) int user labels.
      margin: the triplet margin (0.05 in the paper).
      mining: "semi_hard" or "hard".
      valid: (B,) bool, examples that take part; None: all.

    Returns:
      (losses, pair_mask, negative): (B, B) loss per (anchor, positive), (B, B) bool mask of the
      valid anchor-positive pairs, (B, B) int index of the chosen negative (meaningful where the
      pair is valid and the anchor has a negative).
    """
    batch = embeddings.shape[0]
    valid = jnp.ones((batch,), bool) if valid is None else valid.astype(bool)
    similarity = cosine_similarity_matrix(embeddings)
    same = labels[:, None] == labels[None, :]
    both_valid = valid[:, None] & valid[None, :]
    pair_mask = same & both_valid & ~jnp.eye(batch, dtype=bool)
    negative_mask = ~same & both_valid  # (anchor, negative)

    positive_similarity = similarity[:, :, None]  # (anchor, positive, 1)
    negative_similarity = similarity[:, None, :]  # (anchor, 1, negative)
    lowest = jnp.finfo(similarity.dtype).min
    hardest_candidates = jnp.where(negative_mask[:, None, :], negative_similarity, lowest)
    hardest_candidates = jnp.broadcast_to(hardest_candidates, (batch, batch, batch))
    if mining == "hard":
        candidates = hardest_candidates
    elif mining == "semi_hard":
        semi_hard = (
            negative_mask[:, None, :]
            & (negative_similarity < positive_similarity)
            & (negative_similarity > positive_similarity - margin)
        )
        candidates = jnp.where(
            jnp.any(semi_hard, axis=-1, keepdims=True),
            jnp.where(semi_hard, negative_similarity, lowest),
            hardest_candidates,
        )
    else:
        raise ValueError(f"mining must be 'semi_hard' or 'hard', got {mining!r}")
    negative = jnp.argmax(candidates, axis=-1)
    has_negative = jnp.any(negative_mask, axis=-1)[:, None]
    chosen = jnp.take_along_axis(similarity[:, None, :], negative[..., None], axis=-1)[..., 0]
    losses = jnp.maximum(chosen - similarity + margin, 0.0)
    pair_mask = pair_mask & has_negative
    return jnp.where(pair_mask, losses, 0.0), pair_mask, negative


def triplet_loss(
    embeddings: jax.Array,
    labels: jax.Array,
    margin: float = 0.05,
    mining: Mining = "semi_hard",
    valid: jax.Array | None = None,
) -> jax.Array:
    """Cosine triplet margin loss with online mining, averaged over all valid anchor-positive pairs.

    See `mined_triplet_losses` for the definition. A batch with no valid pair (every label
    different, or no negative) gives 0.
    """
    losses, pair_mask, _ = mined_triplet_losses(embeddings, labels, margin, mining, valid)
    return jnp.sum(losses) / jnp.maximum(jnp.sum(pair_mask), 1)


def supervised_contrastive_loss(
    embeddings: jax.Array,
    labels: jax.Array,
    temperature: float = 0.1,
    valid: jax.Array | None = None,
) -> jax.Array:
    """Supervised contrastive loss (Khosla et al. 2020, L_out) on cosine similarities.

    For each anchor a with at least one positive (same label, a != p):
      loss(a) = -mean_p [ s(a, p) / t - log sum_{j != a} exp(s(a, j) / t) ]
    averaged over such anchors; `valid` masks examples out of every sum. Unlike the triplet loss,
    collapsed embeddings (all equal) are not a minimum: the loss is then log(B - 1) - 0 and every
    negative pushes back, so the encoder cannot settle there (ours; docs/results_log.md).
    A batch with no positive pair gives 0.
    """
    batch = embeddings.shape[0]
    valid = jnp.ones((batch,), bool) if valid is None else valid.astype(bool)
    logits = cosine_similarity_matrix(embeddings) / temperature
    others = valid[:, None] & valid[None, :] & ~jnp.eye(batch, dtype=bool)
    positives = others & (labels[:, None] == labels[None, :])
    lowest = jnp.finfo(logits.dtype).min
    log_normaliser = jax.nn.logsumexp(jnp.where(others, logits, lowest), axis=1, keepdims=True)
    log_probability = logits - log_normaliser
    count = jnp.sum(positives, axis=1)
    per_anchor = -jnp.sum(jnp.where(positives, log_probability, 0.0), axis=1)
    per_anchor = per_anchor / jnp.maximum(count, 1)
    anchors = count > 0
    return jnp.sum(jnp.where(anchors, per_anchor, 0.0)) / jnp.maximum(jnp.sum(anchors), 1)


def triplet_diagnostics(
    embeddings: jax.Array,
    labels: jax.Array,
    margin: float = 0.05,
    mining: Mining = "semi_hard",
    valid: jax.Array | None = None,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """`triplet_loss` and what shows whether the encoder learns (logged per step):

    positive_pairs: anchor-positive pairs in the batch (0: no gradient at all);
    active_triplets: the fraction of them whose mined triplet has a loss > 0 (near 0: nothing
      left to learn in the batch; near 1 with a loss near the margin: collapsed embeddings);
    positive_cosine, negative_cosine: mean cosine similarity of same-label and of
      different-label pairs (both near 1: the embeddings collapsed to one direction).
    """
    losses, pair_mask, _ = mined_triplet_losses(embeddings, labels, margin, mining, valid)
    pairs = jnp.sum(pair_mask)
    similarity = cosine_similarity_matrix(embeddings)
    batch = embeddings.shape[0]
    valid = jnp.ones((batch,), bool) if valid is None else valid.astype(bool)
    both = valid[:, None] & valid[None, :] & ~jnp.eye(batch, dtype=bool)
    same = (labels[:, None] == labels[None, :]) & both
    different = (labels[:, None] != labels[None, :]) & both

    def mean_over(mask):
        return jnp.sum(jnp.where(mask, similarity, 0.0)) / jnp.maximum(jnp.sum(mask), 1)

    return jnp.sum(losses) / jnp.maximum(pairs, 1), {
        "positive_pairs": pairs.astype(jnp.float32),
        "active_triplets": jnp.sum(pair_mask & (losses > 0)) / jnp.maximum(pairs, 1),
        "positive_cosine": mean_over(same),
        "negative_cosine": mean_over(different),
    }
