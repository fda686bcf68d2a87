"""Statistics over people: the unit that generalises is the observer, not the (image, observer)
pair.

Each observer has one embedding and the images repeat across observers, so the pairs of a table
are not independent and a p-value over pairs overstates what the data show. Beside the pair-level
statistics (`psm_jax.evaluation.scoring.versus_usm`), a row is compared with a reference row (the
ground-truth USM, the universal model's map, the strongest other row) over people:

  differences  each observer's mean difference (row - reference) over their pairs;
  better       how many of the n observers are better on average, in the metric's direction;
  p            a two-sided test over those n means: the Wilcoxon signed-rank test where
               n >= `MIN_PEOPLE_FOR_WILCOXON`, the exact sign test below (its smallest p is
               2 / 2^n: 0.25 for 3 people, 0.0625 for 5, so no test over 5 people or fewer
               reaches p < 0.05);
  interval     a 95% bootstrap interval of the mean difference over pairs that resamples
               observers and images together (each draw weights a pair by how often its
               observer and its image were drawn), so that both sources of variation count.

`People` draws the bootstrap weights once per table and reuses them for every row and metric.
"""

from __future__ import annotations

import numpy as np
import scipy.stats

from psm_jax import metrics

MIN_PEOPLE_FOR_WILCOXON = 6
"""Below this many observers the test over people is the exact sign test."""

RESAMPLES = 2000
"""Bootstrap draws per table."""


def sign_test_p(differences: np.ndarray) -> float:
    """The exact two-sided sign test of per-observer differences (zeros left out); 1.0 when
    every difference is zero."""
    differences = np.asarray(differences, np.float64)
    nonzero = differences[differences != 0]
    if nonzero.size == 0:
        return 1.0
    positive = int(np.sum(nonzero > 0))
    return float(scipy.stats.binomtest(positive, nonzero.size, 0.5).pvalue)


def over_people_p(differences: np.ndarray) -> tuple[str, float]:
    """("wilcoxon" or "sign", two-sided p) of per-observer mean differences (module docstring);
    ("none", nan) without any observer."""
    differences = np.asarray(differences, np.float64)
    differences = differences[np.isfinite(differences)]
    if differences.size == 0:
        return "none", float("nan")
    if differences.size < MIN_PEOPLE_FOR_WILCOXON:
        return "sign", sign_test_p(differences)
    if not np.any(differences != 0):
        return "wilcoxon", 1.0
    return "wilcoxon", float(scipy.stats.wilcoxon(differences, alternative="two-sided").pvalue)


class People:
    """The observers and images of a table's pairs, with the bootstrap's weights drawn once.

    Args:
      observer: (P,) each pair's observer (any hashable labels: ids or indices).
      image: (P,) each pair's image.
      resamples: bootstrap draws; seed: their generator's seed (fixed, so a table repeats).
    """

    def __init__(
        self,
        observer: np.ndarray,
        image: np.ndarray,
        *,
        resamples: int = RESAMPLES,
        seed: int = 0,
    ):
        self.observers, self.observer_index = np.unique(np.asarray(observer), return_inverse=True)
        images, image_index = np.unique(np.asarray(image), return_inverse=True)
        rng = np.random.default_rng(seed)
        observer_draws = rng.multinomial(
            len(self.observers), np.full(len(self.observers), 1 / len(self.observers)), resamples
        )
        image_draws = rng.multinomial(len(images), np.full(len(images), 1 / len(images)), resamples)
        # (resamples, P): a pair counts as often as its observer times its image was drawn.
        self._weights = (
            observer_draws[:, self.observer_index] * image_draws[:, image_index]
        ).astype(np.float64)

    @property
    def n(self) -> int:
        return len(self.observers)

    def observer_differences(self, values: np.ndarray, reference: np.ndarray) -> np.ndarray:
        """(n,) each observer's mean of values - reference over their pairs where both are finite
        (NaN for an observer without one), in the order of `observers`."""
        difference = np.asarray(values, np.float64) - np.asarray(reference, np.float64)
        finite = np.isfinite(difference)
        sums = np.bincount(self.observer_index[finite], difference[finite], minlength=self.n)
        counts = np.bincount(self.observer_index[finite], minlength=self.n)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)

    def interval(
        self, values: np.ndarray, reference: np.ndarray, level: float = 0.95
    ) -> tuple[float, float]:
        """The bootstrap interval of the mean pair difference (module docstring)."""
        difference = np.asarray(values, np.float64) - np.asarray(reference, np.float64)
        finite = np.isfinite(difference)
        weights = self._weights * finite
        total = weights.sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            means = weights @ np.where(finite, difference, 0.0) / total
        means = means[total > 0]
        if means.size == 0:
            return float("nan"), float("nan")
        tail = 100 * (1 - level) / 2
        low, high = np.percentile(means, [tail, 100 - tail])
        return float(low), float(high)

    def versus(self, values: np.ndarray, reference: np.ndarray, metric: str) -> dict:
        """A row's per-pair scores against a reference row's over people: {"differences": per
        observer, "better": k, "n": observers with a difference, "test", "p", "interval"}."""
        differences = self.observer_differences(values, reference)
        finite = differences[np.isfinite(differences)]
        sign = 1.0 if metrics.HIGHER_IS_BETTER[metric] else -1.0
        test, p = over_people_p(finite)
        return {
            "differences": [float(d) for d in differences],
            "better": int(np.sum(sign * finite > 0)),
            "n": int(finite.size),
            "test": test,
            "p": p,
            "interval": list(self.interval(values, reference)),
        }
