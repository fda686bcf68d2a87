r"""How much a perfect discrepancy predictor would gain over the USM (an upper bound on the models).

    .venv/bin/python studies/discrepancy_headroom.py --dataset=synthetic_personal_saliency \
        --data_dir=data/tfds --protocol=closed

Scores, on the protocol's (test image, observer) pairs, the ground-truth USM and the papers'
composition clip(USM + upsampled discrepancy, 0, 1) (and, marked, the evaluation's default
clip(..., 0.3 x USM, 1), `psm_jax/configs/evaluation.py`), from two kinds of "perfect"
discrepancy, area-averaged to the networks' output grid (15x20, and finer grids for comparison):

- the *true* discrepancy PSM - USM of the pair itself: it contains the noise of the observer's few
  fixations on that image, which no model can know, so it is a loose bound;
- on the synthetic dataset, the *ideal observer's* discrepancy: the observer's PSM from
  `--ideal_viewings` simulated viewings of the image (the same simulated person, many more
  fixations) minus the USM. That is what a model that knew the observer's preferences exactly
  would predict, the tight bound.
"""

import dataclasses

import numpy as np
from absl import app, flags

import tfds_builders
from psm_jax import cli, inference, xla_defaults
from psm_jax.data import pipeline, saliency_maps, synthetic
from psm_jax.evaluation import pairs, scoring

_DATASET = flags.DEFINE_string("dataset", "synthetic_personal_saliency", "A built dataset.")
_DATA_DIR = flags.DEFINE_string("data_dir", "data/tfds", "Where it was built.")
_PROTOCOL = flags.DEFINE_enum("protocol", "closed", ["closed", "open"], "Observers.")
_IDEAL_VIEWINGS = flags.DEFINE_integer(
    "ideal_viewings", 100, "Synthetic only: viewings simulated for the ideal observer's PSM."
)


def ideal_observer_psms(evaluation: pairs.EvaluationSet, metadata) -> np.ndarray:
    """(P, H, W): each pair's observer's PSM from many simulated viewings (synthetic dataset)."""
    generator = dict(metadata.raw["release"]["generator"])
    generator["image_size"] = tuple(generator["image_size"])
    spec = synthetic.SyntheticSpec(**generator)
    many = dataclasses.replace(spec, viewings=_IDEAL_VIEWINGS.value)
    traits = synthetic.observer_traits(spec)
    group = metadata.observers("train" if evaluation.protocol == "closed" else "test")
    psms = []
    for image_id in evaluation.image_ids:
        image = int(image_id.split("_")[1].split(".")[0])  # scene_00042.jpg
        table = synthetic.simulate_fixations(many, image, traits)
        psm, _ = saliency_maps.personal_saliency_maps(
            table.x,
            table.y,
            table.observer,
            num_observers=spec.num_observers,
            native_size=spec.image_size,
            sigma=spec.sigma_px,
            viewing=table.viewing,
            working_size=evaluation.usm.shape[-2:],
        )
        psms.append(psm)
    return np.stack(
        [psms[i][group[o]] for i, o in zip(evaluation.image, evaluation.observer, strict=True)]
    )


def main(argv):
    del argv
    evaluation = pairs.evaluation_set(_DATASET.value, _DATA_DIR.value, _PROTOCOL.value)
    usm = evaluation.usm[evaluation.image]
    grid = saliency_maps.OUTPUT_SIZE
    true = saliency_maps.discrepancy_maps(evaluation.psm, usm, grid)
    rows = {
        "USM (ground truth)": usm,
        "USM + true 15x20 discrepancy": inference.compose_psm(usm, true, 0.0, 1.0),
        "USM + half the true discrepancy": inference.compose_psm(usm, 0.5 * true, 0.0, 1.0),
    }
    mse = {"predicting no discrepancy": np.mean(true**2)}
    if _DATASET.value.split("/")[0] == "synthetic_personal_saliency":
        _, metadata = pipeline.open_split(_DATASET.value, "test", _DATA_DIR.value)
        ideal_psm = ideal_observer_psms(evaluation, metadata)
        rows["Ideal observer's PSM itself (no USM, full resolution)"] = ideal_psm
        for size in (grid, (30, 40), (60, 80)):
            ideal = saliency_maps.discrepancy_maps(ideal_psm, usm, size)
            for strength in (1.0, 0.7):
                name = f"USM + {strength:g} x ideal observer's {size[0]}x{size[1]} discrepancy"
                rows[name] = inference.compose_psm(usm, strength * ideal, 0.0, 1.0)
            if size == grid:
                name = f"USM + ideal observer's {size[0]}x{size[1]} discrepancy, floor 0.3 x USM"
                rows[name] = inference.compose_psm(usm, ideal, 0.3, 1.0)
        mse["the ideal observer's discrepancy"] = np.mean(
            (true - saliency_maps.discrepancy_maps(ideal_psm, usm, grid)) ** 2
        )
    print(f"{_DATASET.value}, {_PROTOCOL.value} set, {len(usm)} pairs")
    print("| Prediction | CC | SIM | AUC-Judd | NSS | KLD |\n|---|---|---|---|---|---|")
    for name, prediction in rows.items():
        scores = scoring.score(evaluation, prediction)
        cells = " | ".join(f"{np.nanmean(scores[m]):.3f}" for m in scoring.METRICS)
        print(f"| {name} | {cells} |")
    for name, value in mse.items():
        print(f"15x20 discrepancy MSE of {name}: {value:.5f}")


if __name__ == "__main__":
    xla_defaults.apply()  # before JAX starts a backend (as the launchers do)
    tfds_builders.register()
    app.run(main, flags_parser=cli.parse_flags)  # --help exits 0
