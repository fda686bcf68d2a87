"""One markdown row of a study against the ground-truth USM, shared by the composition studies."""

import numpy as np

from psm_jax.evaluation import scoring


def versus_usm_row(evaluation, usm_scores: dict, name: str, prediction: np.ndarray) -> str:
    """`| name | CC diff. (p) | SIM diff. (p) | KLD diff. (p) | IG |` of a prediction on the
    evaluation's pairs against `usm_scores` (`scoring.score` of the ground-truth USM)."""
    scores = scoring.score(evaluation, prediction.astype(np.float32))
    cells = []
    for metric in ("cc", "sim", "kld"):
        versus = scoring.versus_usm(scores[metric], usm_scores[metric])
        cells.append(f"{versus['difference']:+.4f} ({versus['p']:.1g})")
    gain = np.nanmean(scores["information_gain"])
    return f"| {name} | " + " | ".join(cells) + f" | {gain:+.4f} |"
