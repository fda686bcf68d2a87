"""The studies' own statistics (studies/), checked on pools whose answer is known."""

import importlib.util
from pathlib import Path

import numpy as np

_PATH = Path(__file__).resolve().parents[1] / "studies" / "embedding_pool_study.py"


def _pool_study():
    spec = importlib.util.spec_from_file_location("embedding_pool_study", _PATH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_pool_statistics_tell_separate_people_from_groups_of_alike_people():
    study = _pool_study()
    rng = np.random.default_rng(0)
    separate = rng.standard_normal((20, 32))
    pool = separate[:, None] + 0.1 * rng.standard_normal((20, 30, 32))
    result = study.pool_statistics(pool)
    assert result["nearest_centroid"] == 1.0 and result["between_share"] > 0.98
    # 4 groups of 5 identical people: most variance between people, yet each is named only
    # about as often as chance within the group allows (1/5).
    grouped = np.repeat(rng.standard_normal((4, 32)), 5, axis=0)
    pool = grouped[:, None] + 0.1 * rng.standard_normal((20, 30, 32))
    result = study.pool_statistics(pool)
    assert result["between_share"] > 0.98 and result["nearest_centroid"] < 0.35
    assert result["cosine_same"] > 0.98


def test_the_closed_set_usm_without_the_scored_observer_is_the_mean_of_the_others():
    from absl import flags

    for name in ("data_dir", "datasets"):  # defined by another study this process loaded
        if name in flags.FLAGS:
            delattr(flags.FLAGS, name)
    spec = importlib.util.spec_from_file_location(
        "closed_set_usm", _PATH.parent / "closed_set_usm.py"
    )
    study = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(study)
    rng = np.random.default_rng(0)
    psms = rng.random((9, 6, 8)).astype(np.float32)
    usm = psms.mean(axis=0)
    for own in (0, 4, 8):
        others = np.delete(psms, own, axis=0).mean(axis=0)
        np.testing.assert_allclose(study._leave_self_out(usm, psms[own], 9), others, atol=1e-6)


def test_the_layout_embedding_reads_each_categorys_share_beyond_the_usm(tiny_data_dir):
    """studies/identity_ceiling.py: the reference that knows where the objects are."""
    from absl import flags
    from conftest import TINY

    from psm_jax.data import pipeline

    for name in ("data_dir", "datasets", "runs", "groups", "ms", "output"):
        if name in flags.FLAGS:  # defined by another study this process loaded
            delattr(flags.FLAGS, name)
    spec = importlib.util.spec_from_file_location(
        "identity_ceiling", _PATH.parent / "identity_ceiling.py"
    )
    study = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(study)
    source, metadata = pipeline.open_split(TINY, "train", tiny_data_dir)
    features = study.LayoutFeatures(source, metadata)
    assert features.spec.num_observers == len(metadata.observer_ids)
    discs, categories = features.masks(0)
    assert categories[-1] == -1 and discs.shape[1:] == tuple(metadata.working_size)
    _, _, usm = pipeline.ground_truth_maps(source[0], metadata)
    # The population's own map departs from itself nowhere.
    np.testing.assert_allclose(features(usm[None], usm[None], np.array([0])), 0.0, atol=1e-6)
    # A person who looked only at the first object: its category gains what the USM had elsewhere.
    looked = discs[0][None]
    vector = features(looked, usm[None], np.array([0]))
    first = categories[0]
    assert vector[first] > 0.1
    assert vector[first] == max(vector)
