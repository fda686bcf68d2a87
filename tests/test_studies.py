"""The studies' own statistics (studies/), checked on pools whose answer is known."""

import importlib.util
from pathlib import Path

import numpy as np
import pytest

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


@pytest.mark.slow
def test_observer_folds_test_every_tiny_observer_once_and_pool_them(tmp_path):
    """studies/observer_folds.py on the tiny dataset (8 observers) with 3 folds: the main job on
    each fold, every observer unseen exactly once, the open-set scores pooled over all 8 people;
    a second run reuses the finished folds."""
    import subprocess
    import sys

    from conftest import ROOT, TINY

    from psm_jax.evaluation import scoring

    command = [
        sys.executable,
        str(ROOT / "studies" / "observer_folds.py"),
        f"--config={ROOT / 'psm_jax' / 'configs' / 'main.py'}:{TINY}",
        f"--config.data_dir={tmp_path / 'tfds'}",
        "--folds=3",
        f"--workdir={tmp_path / 'folds'}",
    ]
    first = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, timeout=1800)
    assert first.returncode == 0, first.stderr[-3000:]
    for fold in range(3):
        assert f"[fold {fold + 1}/3] {TINY}+fold_{fold}_of_3" in first.stdout
    folds = tmp_path / "folds"
    tested = [
        set(
            scoring.read_scores(
                folds / f"fold_{k}_of_3" / "report" / "open_scores.csv"
            ).observer_ids
        )
        for k in range(3)
    ]
    assert sum(len(t) for t in tested) == len(set.union(*tested)) == 8  # each observer once
    pooled = scoring.read_scores(folds / "pooled_open_scores.csv")
    assert set(pooled.observer_ids) == set.union(*tested)
    assert {"gt_usm", "embedding", "embedding_mean"} <= set(pooled.rows)
    markdown = (folds / "pooled_open.md").read_text()
    assert "open set pooled over 3 folds" in markdown and "8 people)" in markdown
    assert "/8 (W " in markdown  # 8 people: the Wilcoxon test over people
    assert "against the strongest other row" in markdown
    for k in range(3):
        assert f"(fold_{k}_of_3/report/open.md)" in markdown
    again = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    assert again.stdout.count("finished earlier, reused") == 3
    assert (folds / "pooled_open.md").read_text() == markdown


@pytest.mark.slow  # a subprocess (its imports): the pooling itself is tested in test_people.py
def test_open_sets_of_different_people_pool_into_one_table(tiny_main_job, tmp_path):
    """studies/pool_open_sets.py: two evaluations' open sets (here the tiny main job's, named
    twice: its observers prefixed by each name count as other people) in one table whose people
    are both's, computed from the pooled scores file."""
    import subprocess
    import sys

    from conftest import ROOT

    from psm_jax.evaluation import scoring

    folder = tiny_main_job["root"] / "runs" / "synthetic_personal_saliency" / "report"
    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "studies" / "pool_open_sets.py"),
            f"--reports=a={folder},b={folder}",
            f"--output_dir={tmp_path}",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    single = scoring.read_scores(folder / "open_scores.csv")
    pooled = scoring.read_scores(tmp_path / "pooled_open_scores.csv")
    people = sorted(set(single.observer_ids))
    assert sorted(set(pooled.observer_ids)) == [f"{n}/{o}" for n in "ab" for o in people]
    text = (tmp_path / "pooled_open.md").read_text()
    assert (
        f"{2 * len(pooled.image_ids) // 2} (image, observer) pairs, {2 * len(people)} people"
        in text
    )
    assert "over people" in text and "### a:" in text and "### b:" in text


@pytest.mark.slow
def test_the_main_job_trains_the_controls_it_is_given_on_a_finished_run(tiny_main_job, tmp_path):
    """`--config.controls` on the tiny main job's finished run (copied): only the controls train
    (the models' workdirs are reused), from the models' configs, and the tables gain their rows
    and the embedding network's comparisons with them."""
    import contextlib
    import io
    import shutil

    from conftest import TINY

    from psm_jax import main_job
    from psm_jax.configs import main as main_configs
    from psm_jax.train import checkpoint

    run = tmp_path / "run"
    shutil.copytree(tiny_main_job["root"] / "runs" / "synthetic_personal_saliency", run)
    config = main_configs.get_config(TINY)
    config.data_dir = str(tiny_main_job["root"] / "data" / "tfds")
    config.controls = ("no_embedding", "multi_task_alike", "per_observer_alike")
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        result = main_job.run(config, run)
    assert printed.getvalue().count("nothing to train") == len(config.models)
    for control in config.controls:
        assert (run / control / "config.json").exists()
    assert checkpoint.load_config(run / "no_embedding").embedding_input == "none"
    assert checkpoint.load_config(run / "multi_task_alike").composition == "log_ratio"
    closed = result["tables"]["closed"].rows
    assert {"no_embedding", "multi_task_alike", "per_observer_alike"} <= set(closed)
    ours = closed["embedding"]["kld"]
    assert "versus_no_embedding" in ours and "versus_alike" in ours
