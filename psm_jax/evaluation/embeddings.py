"""Embedding studies: precision@1 of observers' embeddings versus m (Strohm et al., Fig. 5) and,
on synthetic data, how well embedding distances track the simulated observers' true preferences.

Sets are drawn from the training images only. Precision@1's sets are image-disjoint: the sets of
one observer never share an image (`image_disjoint_sets`), so a set's nearest neighbour cannot be
a set that holds the same (image, PSM) pairs; an observer gives as many sets at m as their viewed
training images allow, up to the asked number, and every observer the same number. (Before
2026-12-06 the sets came from windows of 2 m images that wrap past the end of the image list, so
at m = 48 and 64 same-person sets shared up to 7 of 48 and 8 of 64 pairs: `image_disjoint=False`
keeps that draw, to measure its effect.)
"""

from __future__ import annotations

import numpy as np
import scipy.stats

from psm_jax import inference, metrics
from psm_jax.data import external_usm, pipeline
from psm_jax.models import embedding as embedding_lib


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


def pair_features(
    encoder: inference.Restored,
    source,
    metadata,
    *,
    group: str = "test",
    pair_cache: dict | None = None,
    usms: np.ndarray | None = None,
) -> tuple[dict[int, np.ndarray], dict]:
    """Every (observer of `group`, training image they viewed) pair through the encoder once.

    Returns ({observer k in the group: record indices of the images they viewed}, the pair
    cache: (k, record index) -> features, `psm_jax.models.embedding.cached_set_embeddings`). The
    USM of each image is `usms[index]` when given, else the one the encoder trained with (the
    ground truth, or its config's external USMs), as in `psm_jax.inference.embed_observers`.
    """
    cache = {} if pair_cache is None else pair_cache
    observers = metadata.observers(group)
    external = None
    if usms is None and encoder.predicted_usm:
        external = external_usm.ExternalUsms(encoder.config.external_usm_dir, metadata.working_size)
    viewed: dict[int, list[int]] = {k: [] for k in range(len(observers))}
    pending: list[tuple] = []

    def encode():
        batch = {
            "images": np.stack([p[0] for p in pending])[:, None],
            "psms": np.stack([p[1] for p in pending])[:, None],
            "usms": np.stack([p[2] for p in pending])[:, None],
            "observer": np.array([p[3] for p in pending], np.int32),
            "image_index": np.array([[p[4]] for p in pending], np.int32),
        }
        embedding_lib.cached_set_embeddings(encoder.model, batch, cache)
        pending.clear()

    for index in range(len(source)):
        record = source[index]
        psm, valid, usm = pipeline.ground_truth_maps(record, metadata)
        own = [(k, o) for k, o in enumerate(observers) if valid[o]]
        for k, _ in own:
            viewed[k].append(index)
        missing = [(k, o) for k, o in own if (k, index) not in cache]
        if not missing:
            continue
        image = pipeline.decode_image(record["image"], metadata.working_size)
        if usms is not None:
            usm = usms[index]
        elif external is not None:
            usm = external(pipeline.image_id(record))
        elif usm is None:  # no training observer's map: zeros, as the set streams give
            usm = np.zeros(psm.shape[1:], np.float32)
        for k, o in missing:
            pending.append((image, psm[o], np.asarray(usm, np.float32), k, index))
        if len(pending) >= embedding_lib.PAIR_CHUNK:
            encode()
    if pending:
        encode()
    return {k: np.array(v, np.int64) for k, v in viewed.items()}, cache


def image_disjoint_sets(
    viewed: dict[int, np.ndarray], m: int, sets_per_observer: int, seed: int
) -> np.ndarray:
    """(observers, s, m) record indices: each observer's s sets of m of the images they viewed,
    consecutive chunks of one random permutation, so that one observer's sets never share an
    image; s = the asked number or fewer, the same for every observer: as many as the observer
    with the fewest viewed images allows (0 when one has fewer than m)."""
    rng = np.random.default_rng(seed)
    count = min(sets_per_observer, min(len(v) // m for v in viewed.values()))
    sets = np.zeros((len(viewed), count, m), np.int64)
    for k in range(len(viewed)):
        order = rng.permutation(viewed[k])
        sets[k] = order[: count * m].reshape(count, m)
    return sets


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
    image_disjoint: bool = True,
    details: dict | None = None,
) -> dict[int, float]:
    """Precision@1 of embeddings of `group`'s observers versus m (Strohm et al., Fig. 5).

    For each m, up to `sets_per_observer` sets of m (image, PSM) pairs per observer are drawn from
    the training images and embedded; an embedding counts as correct when its nearest neighbour by
    cosine similarity (itself excluded) belongs to the same observer. The sets are image-disjoint
    (module docstring; `image_disjoint_sets`); an m where an observer cannot give two such sets
    gives NaN. `image_disjoint=False`: the earlier draw, `sets_per_observer` sets from windows of
    2 m images that may share pairs (NaN where the split has fewer than 2 m images).

    Args:
      sets: if given, receives each scored m's (embeddings, labels) (`set_embeddings`'s form),
        for figures of the same sets without embedding them again.
      usms: the images' USMs in place of the ground truth (`psm_jax.inference.embed_observers`).
      pair_cache: as there, a dict to share with other calls on the same encoder, source, group
        and USMs (None: a new one; the sets of every m share it either way, so each pair is
        encoded once).
      details: if given, receives per m {"sets_per_observer": s, "people": observers,
        "chance": the precision@1 of a random embedding, (s - 1) / (people x s - 1)}, and with
        image-disjoint sets "image_index": (people, s, m) each set's record indices.
    """
    result = {}
    pair_cache = {} if pair_cache is None else pair_cache
    people = len(metadata.observers(group))
    viewed = None
    for m in ms:
        if image_disjoint:
            if viewed is None:
                viewed, _ = pair_features(
                    encoder, source, metadata, group=group, pair_cache=pair_cache, usms=usms
                )
            chosen = image_disjoint_sets(viewed, m, sets_per_observer, seed + m)
            count = chosen.shape[1]
            if count < 2:
                result[m] = float("nan")
            else:
                means = np.stack(
                    [
                        np.mean([pair_cache[(k, int(i))] for i in chosen[k, j]], axis=0)
                        for k in range(people)
                        for j in range(count)
                    ]
                )
                embeddings = means / np.maximum(
                    np.linalg.norm(means, axis=-1, keepdims=True), 1e-12
                )
                labels = np.repeat(np.arange(people), count)
        else:
            count = sets_per_observer if len(source) >= 2 * m else 0
            chosen = None
            if count:
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
            else:
                result[m] = float("nan")
        if details is not None:
            details[m] = {
                "sets_per_observer": int(count),
                "people": people,
                "chance": (count - 1) / (people * count - 1) if count >= 2 else float("nan"),
            }
            if chosen is not None:
                details[m]["image_index"] = chosen
        if m in result:  # NaN: no sets
            continue
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
