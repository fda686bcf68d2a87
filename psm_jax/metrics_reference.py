"""A straightforward per-map NumPy implementation of the metric definitions in `psm_jax.metrics`.

One map at a time, written to be read, not to be fast: it is the reference the batched JAX
metrics are tested against and the baseline `benchmarks/bench_metrics.py` times them against.
Same conventions: maps (H, W) on the evaluation grid, fixations as integer grid pixels (rows,
cols) of one observer (no padding), every fixation counts.
"""

from __future__ import annotations

import numpy as np

KLD_EPSILON = 2.2204e-16


def _standardise(saliency: np.ndarray) -> np.ndarray:
    saliency = np.asarray(saliency, np.float64)
    if saliency.max() == saliency.min():  # constant (its float std may be rounding noise)
        return np.zeros_like(saliency)
    return (saliency - saliency.mean()) / saliency.std()


def _distribution(saliency: np.ndarray) -> np.ndarray:
    saliency = np.asarray(saliency, np.float64)
    if saliency.min() < 0:
        saliency = saliency - saliency.min()
    total = saliency.sum()
    return np.full_like(saliency, 1.0 / saliency.size) if total == 0 else saliency / total


def cc(prediction: np.ndarray, ground_truth: np.ndarray) -> float:
    if np.ptp(prediction) == 0 or np.ptp(ground_truth) == 0:
        return 0.0
    return float(np.mean(_standardise(prediction) * _standardise(ground_truth)))


def sim(prediction: np.ndarray, ground_truth: np.ndarray) -> float:
    return float(np.minimum(_distribution(prediction), _distribution(ground_truth)).sum())


def kld(prediction: np.ndarray, ground_truth: np.ndarray) -> float:
    p, q = _distribution(prediction), _distribution(ground_truth)
    return float(np.sum(q * np.log(KLD_EPSILON + q / (p + KLD_EPSILON))))


def nss(prediction: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> float:
    if len(rows) == 0:
        return float("nan")
    return float(np.mean(_standardise(prediction)[rows, cols]))


def auc_judd(prediction: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> float:
    """Loops over the distinct fixation values as thresholds, counting pixels directly."""
    if len(rows) == 0:
        return float("nan")
    saliency = np.asarray(prediction, np.float64)
    span = saliency.max() - saliency.min()
    saliency = np.zeros_like(saliency) if span == 0 else (saliency - saliency.min()) / span
    fixated = np.zeros(saliency.shape, bool)
    fixated[rows, cols] = True
    fixation_values = saliency[rows, cols]
    negatives = saliency[~fixated]
    fpr, tpr = [0.0], [0.0]
    for threshold in np.unique(fixation_values)[::-1]:  # descending
        tpr.append(np.mean(fixation_values >= threshold))
        fpr.append(np.mean(negatives >= threshold) if negatives.size else 0.0)
    fpr.append(1.0)
    tpr.append(1.0)
    return float(np.trapezoid(tpr, fpr))


def _roc_area(positives: np.ndarray, negatives: np.ndarray) -> float:
    if len(positives) == 0 or len(negatives) == 0:
        return float("nan")
    wins = 0.0
    for value in positives:
        wins += np.sum(value > negatives) + 0.5 * np.sum(value == negatives)
    return float(wins / (len(positives) * len(negatives)))


def auc_borji(prediction: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> float:
    saliency = np.asarray(prediction, np.float64)
    return _roc_area(saliency[rows, cols], saliency.ravel())


def shuffled_auc(
    prediction: np.ndarray,
    rows: np.ndarray,
    cols: np.ndarray,
    negative_rows: np.ndarray,
    negative_cols: np.ndarray,
) -> float:
    saliency = np.asarray(prediction, np.float64)
    return _roc_area(saliency[rows, cols], saliency[negative_rows, negative_cols])


def precision_at_1(embeddings: np.ndarray, labels: np.ndarray) -> np.ndarray:
    embeddings = np.asarray(embeddings, np.float64)
    hits = np.zeros(len(embeddings))
    for i in range(len(embeddings)):
        best, best_similarity = -1, -np.inf
        for j in range(len(embeddings)):
            if j == i:
                continue
            similarity = (
                embeddings[i]
                @ embeddings[j]
                / (np.linalg.norm(embeddings[i]) * np.linalg.norm(embeddings[j]))
            )
            if similarity > best_similarity:
                best, best_similarity = j, similarity
        hits[i] = float(labels[best] == labels[i])
    return hits
