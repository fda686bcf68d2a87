"""Embedding studies: precision@1 of observers' embeddings versus m (Strohm et al., Fig. 5) and,
on synthetic data, how well embedding distances track the simulated observers' true preferences.

Sets are drawn from the training images only (`psm_jax.inference.embed_observers`).
"""

from __future__ import annotations

import numpy as np
import scipy.stats

from psm_jax import inference, metrics


def set_embeddings(
    encoder: inference.Restored,
    source,
    metadata,
    *,
    group: str = "test",
    m: int = 32,
    sets_per_observer: int = 10,
    seed: int = 0,
    pair_cache: dict | None = None,
    usms: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Embeddings of `sets_per_observer` random m-pair sets of each observer of `group`, with
    their observer labels: ((observers * sets, d), (observers * sets,)).

    Args:
      encoder: the trained encoder; source, metadata: the dataset's training split
        (`psm_jax.data.pipeline.open_split`).
      pair_cache, usms: see `psm_jax.inference.embed_observers` (each pair encoded once; the
        images' USMs in place of the ground truth).
    """
    vectors = inference.embed_observers(
        encoder,
        source,
        metadata,
        group=group,
        m=m,
        per_observer=sets_per_observer,
        sets_per_observer=2,
        seed=seed,
        pair_cache=pair_cache,
        usms=usms,
    )
    labels = np.repeat(np.arange(vectors.shape[0]), sets_per_observer)
    return vectors.reshape(-1, vectors.shape[-1]), labels


def precision_at_1_versus_m(
    encoder: inference.Restored,
    source,
    metadata,
    *,
    group: str = "test",
    ms: tuple[int, ...] = (4, 8, 16, 32, 48, 64),
    sets_per_observer: int = 10,
    seed: int = 0,
    sets: dict | None = None,
    usms: np.ndarray | None = None,
    pair_cache: dict | None = None,
) -> dict[int, float]:
    """Precision@1 of embeddings of `group`'s observers versus m (Strohm et al., Fig. 5).

    For each m, `sets_per_observer` random sets of m (image, PSM) pairs per observer are drawn from
    the training images and embedded; an embedding counts as correct when its nearest neighbour by
    cosine similarity (itself excluded) belongs to the same observer. An m that needs more
    training images than the dataset has (a set is drawn from a window of 2m images) gives NaN.
    `sets`, if given, receives each scored m's (embeddings, labels) (`set_embeddings`), for
    figures of the same sets without embedding them again. `usms`: the images' USMs in place of
    the ground truth (`psm_jax.inference.embed_observers`). `pair_cache`: as there, a dict to
    share with other calls on the same encoder, source and group (None: a new one; the sets of
    every m share it either way, so each pair is encoded once).
    """
    result = {}
    pair_cache = {} if pair_cache is None else pair_cache
    for m in ms:
        if len(source) < 2 * m:
            result[m] = float("nan")
            continue
        embeddings, labels = set_embeddings(
            encoder,
            source,
            metadata,
            group=group,
            m=m,
            sets_per_observer=sets_per_observer,
            seed=seed + m,
            pair_cache=pair_cache,
            usms=usms,
        )
        result[m] = float(np.mean(metrics.precision_at_1(embeddings, labels)))
        if sets is not None:
            sets[m] = (embeddings, labels)
    return result


def preference_alignment(
    embeddings: np.ndarray,
    labels: np.ndarray,
    preferences: np.ndarray,
    *,
    permutations: int = 999,
    seed: int = 0,
) -> dict[str, float]:
    """How well distances between observers' embeddings track their true preference distances.

    For the synthetic dataset, whose generator records each observer's preference over the object
    categories. Each observer's embedding is the normalised mean of their set embeddings; the
    embedding distance of two observers is 1 - cosine similarity, their preference distance the
    Euclidean distance between centred log-preferences (the generator's logits up to a constant).
    Returns the Spearman correlation over observer pairs (`scipy.stats.spearmanr`) and a
    one-sided Mantel p-value: the fraction of observer relabellings of the embedding distances
    (`permutations` random ones, plus the observed) whose correlation is at least the observed
    one, with the number of pairs.

    Args:
      embeddings: (N, d) set embeddings; labels: (N,) observer index in [0, K).
      preferences: (K, C) each observer's preference distribution over the C categories.
    """
    observers = int(labels.max()) + 1
    means = np.stack([embeddings[labels == k].mean(axis=0) for k in range(observers)])
    means /= np.linalg.norm(means, axis=1, keepdims=True)
    embedding_distance = 1.0 - means @ means.T
    logits = np.log(np.asarray(preferences, np.float64))
    logits -= logits.mean(axis=1, keepdims=True)
    preference_distance = np.linalg.norm(logits[:, None] - logits[None], axis=-1)
    upper = np.triu_indices(observers, k=1)

    def spearman(distances: np.ndarray) -> float:
        return float(scipy.stats.spearmanr(distances[upper], preference_distance[upper])[0])

    observed = spearman(embedding_distance)
    rng = np.random.default_rng(seed)
    exceed = sum(
        spearman(embedding_distance[np.ix_(order, order)]) >= observed
        for order in (rng.permutation(observers) for _ in range(permutations))
    )
    return {
        "spearman": observed,
        "p_value": (exceed + 1) / (permutations + 1),
        "pairs": float(len(upper[0])),
    }
