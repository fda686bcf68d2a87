"""How much a perfect discrepancy predictor would gain over the USM (an upper bound for the models).

    python benchmarks/discrepancy_headroom.py --dataset=synthetic_personal_saliency \
        --data_dir=data/tfds --protocol=closed

Scores, on the protocol's (test image, observer) pairs, the ground-truth USM and the PSM the
evaluation would build from the *true* discrepancy at the networks' 15x20 output resolution
(clip(USM + upsampled area-averaged (PSM - USM), 0, 1)), at full and half strength. The gap between
the USM row and these rows is what the personalised networks can win.
"""

import numpy as np
from absl import app, flags

from psm_jax import evaluate
from psm_jax.data import saliency_maps

_DATASET = flags.DEFINE_string("dataset", "synthetic_personal_saliency", "A built dataset.")
_DATA_DIR = flags.DEFINE_string("data_dir", "data/tfds", "Where it was built.")
_PROTOCOL = flags.DEFINE_enum("protocol", "closed", ["closed", "open"], "Observers.")


def main(argv):
    del argv
    evaluation = evaluate.evaluation_set(_DATASET.value, _DATA_DIR.value, _PROTOCOL.value)
    usm = evaluation.usm[evaluation.image]
    target = saliency_maps.discrepancy_maps(evaluation.psm, usm, saliency_maps.OUTPUT_SIZE)
    rows = {
        "USM (ground truth)": usm,
        "USM + true 15x20 discrepancy": evaluate.personalised_psm(usm, target),
        "USM + half the true discrepancy": evaluate.personalised_psm(usm, 0.5 * target),
    }
    print(f"{_DATASET.value}, {_PROTOCOL.value} set, {len(usm)} pairs")
    print("| Prediction | CC | SIM | AUC-Judd | NSS | KLD |\n|---|---|---|---|---|---|")
    for name, prediction in rows.items():
        scores = evaluate.score(evaluation, prediction)
        cells = " | ".join(f"{np.nanmean(scores[m]):.3f}" for m in evaluate.METRICS)
        print(f"| {name} | {cells} |")


if __name__ == "__main__":
    app.run(main)
