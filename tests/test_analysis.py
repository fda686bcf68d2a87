"""Inter-observer consistency of built datasets (psm_jax.analysis)."""

import numpy as np
import pytest

from psm_jax import analysis, metrics
from psm_jax import metrics_reference as reference
from psm_jax.data import datasets, pipeline

TINY = "synthetic_personal_saliency/tiny"


def test_consistency_of_the_tiny_synthetic_dataset_matches_a_pairwise_loop(tmp_path):
    datasets.build_dataset(TINY, data_dir=str(tmp_path))
    result = analysis.dataset_consistency(TINY, data_dir=str(tmp_path), progress=False)
    assert result.num_images == 30 and result.grid == (120, 160)
    assert 0.5 < result.mean_auc_judd < 1.0
    # The first test image, by a plain loop over observer pairs with the NumPy reference.
    source, metadata = pipeline.open_split(TINY, "test", str(tmp_path))
    record = source[0]
    psm = np.asarray(record["psm"], np.float32)
    fixations = record["fixations"]
    rows, cols = (
        np.asarray(a)[0]
        for a in metrics.fixations_to_grid(
            np.asarray(fixations["x"])[None],
            np.asarray(fixations["y"])[None],
            np.asarray(record["image_size"]),
            (120, 160),
        )
    )
    observer = np.asarray(fixations["observer"])
    usable = [o for o in range(len(psm)) if record["psm_valid"][o] and np.any(observer == o)]
    pairs = [
        reference.auc_judd(psm[i], rows[observer == j], cols[observer == j])
        for i in usable
        for j in usable
        if i != j
    ]
    test_values = analysis.dataset_consistency(
        TINY, data_dir=str(tmp_path), splits=("test",), progress=False
    ).per_image
    assert test_values[0] == pytest.approx(np.mean(pairs), abs=1e-5)


@pytest.mark.slow
def test_consistency_of_one_viewing_uses_fewer_fixations(tmp_path):
    datasets.build_dataset(TINY, data_dir=str(tmp_path))
    every = analysis.dataset_consistency(
        TINY, data_dir=str(tmp_path), splits=("test",), progress=False
    )
    first = analysis.dataset_consistency(
        TINY, data_dir=str(tmp_path), splits=("test",), viewing=0, progress=False
    )
    assert first.viewing == 0 and first.num_images == every.num_images
    assert not np.allclose(first.per_image, every.per_image)


@pytest.mark.slow
def test_osie_consistency_is_close_to_the_published_figure(osie_data_dir):
    result = analysis.dataset_consistency("osie_personal", data_dir=osie_data_dir, progress=False)
    assert result.num_images == 700
    # Xu et al. (2017), Table 1: 88.47 for OSIE. Ours is on the 120x160 working grid.
    assert 0.86 < result.mean_auc_judd < 0.91
