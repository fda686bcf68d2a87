"""Building the TFDS datasets: without TensorFlow, from the real OSIE release, with tfrecord."""

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from conftest import DUMMY, OSIE_DIR, ROOT

from psm_jax import registry
from psm_jax.data import datasets, pipeline

NO_TF_SCRIPT = textwrap.dedent(
    """
    import importlib.machinery, json, sys

    # As if TensorFlow were not installed: no finder finds it, so find_spec says None and
    # `import tensorflow` fails.
    class PathFinderWithoutTensorFlow(importlib.machinery.PathFinder):
        @classmethod
        def find_spec(cls, name, path=None, target=None):
            if name == "tensorflow" or name.startswith("tensorflow."):
                return None
            return importlib.machinery.PathFinder.find_spec(name, path, target)

    sys.meta_path = [PathFinderWithoutTensorFlow if f is importlib.machinery.PathFinder else f
                     for f in sys.meta_path]
    try:
        import tensorflow  # noqa: F401
        raise SystemExit("TensorFlow is still importable")
    except ModuleNotFoundError:
        pass
    import tfds_builders
    from psm_jax.data import datasets, pipeline

    tfds_builders.register()  # as every entry point does

    data_dir, id_dir = sys.argv[1], sys.argv[2]
    out = {}
    for name, manual in (("synthetic_personal_saliency/tiny", None),
                         ("individual_differences", id_dir)):
        builder = datasets.build_dataset(name, data_dir=data_dir, manual_dir=manual)
        source, metadata = pipeline.open_split(name, "train", data_dir)
        empty = 0
        for split in ("train", "validation", "test"):
            split_source, _ = pipeline.open_split(name, split, data_dir)
            empty += sum(int((~r["psm_valid"]).sum()) for r in split_source)
        record = source[0]
        out[name] = {
            "quality": builder.info.metadata["quality"],
            "observer_split": builder.info.metadata["observer_split"],
            "num_train": len(source),
            "empty_in_records": empty,
            "psm_shape": list(record["psm"].shape),
            "psm_range": [float(record["psm"].min()), float(record["psm"].max())],
            "files": sorted(p.name for p in builder.data_path.iterdir()),
        }
    out["tensorflow_imported"] = any(
        m.startswith("tensorflow.") for m in sys.modules if sys.modules[m] is not None
    )
    print("RESULT" + json.dumps(out))
    """
)


def test_build_and_load_without_tensorflow(tmp_path):
    completed = subprocess.run(
        [sys.executable, "-c", NO_TF_SCRIPT, str(tmp_path), str(DUMMY["individual_differences"])],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=600,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    result = json.loads(completed.stdout.split("RESULT")[-1])
    assert result["tensorflow_imported"] is False

    tiny = result["synthetic_personal_saliency/tiny"]
    assert tiny["num_train"] == 24 and tiny["psm_shape"] == [8, 120, 160]
    assert tiny["psm_range"] == [0.0, 1.0]
    assert [len(tiny["observer_split"][s]) for s in ("train", "validation", "test")] == [4, 2, 2]
    assert any(f.endswith(".array_record-00000-of-00001") for f in tiny["files"])
    assert "metadata.json" in tiny["files"]

    # The ID dummy table has one NaN coordinate, one fixation outside the image and one
    # (image, subject) pair without fixations: each counted in the metadata, the empty pair
    # masked in the records.
    id_result = result["individual_differences"]
    quality = id_result["quality"]
    assert quality["nan_fixations_dropped"] == 1
    assert quality["outside_fixations_clipped"] == 1
    assert quality["empty_pairs"] == 1 == id_result["empty_in_records"]


def test_unknown_dataset_is_named():
    with pytest.raises(ValueError, match="Unknown dataset 'osie'"):
        datasets.build_dataset("osie")


def test_loading_without_registering_the_builders_says_how(tmp_path):
    """The data layer does not import tfds_builders (no cycle); the entry points register them,
    and a program that forgot to is told how."""
    script = (
        "from psm_jax.data import pipeline\n"
        f"pipeline.open_split('osie_personal', 'train', {str(tmp_path)!r})\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, cwd=tmp_path
    )
    assert result.returncode != 0
    assert "call `tfds_builders.register()` before loading psm-jax datasets" in result.stderr


def test_open_split_of_unbuilt_dataset_says_how_to_build(tmp_path):
    with pytest.raises(FileNotFoundError, match="launch/build_dataset.py --dataset=osie_personal"):
        pipeline.open_split("osie_personal", "train", str(tmp_path))


def test_main_job_on_tiny(tiny_main_job):
    result, printed = tiny_main_job["result"], tiny_main_job["printed"]
    run = tiny_main_job["root"] / "runs" / "synthetic_personal_saliency"
    restored = tiny_main_job["restored"]
    # Each model is restored once, the encoder included (its embedding pool and the evaluation).
    assert sorted(restored) == sorted(registry.MODELS)
    assert "images: 30 (train 24, validation 3, test 3)" in printed
    for stage in ("[3/7] Training embedding", "[4/7] Training psm_network", "[7/7] Evaluating"):
        assert stage in printed
    for done in ("dataset ready in", "psm_network trained in", "evaluated in"):
        assert done in printed  # each stage reports its time
    report = result["report"].read_text()
    # What was trained and what it means, generated from the run.
    assert (
        "## What was trained" in report and "observers: 8 (train 4, validation 2, test 2)" in report
    )
    assert "| embedding | 6 | 8 | adam |" in report
    # The encoder's row names what it trained with (it used to name the triplet loss's margin
    # whatever the loss was).
    assert (
        "sets of m = 3, supervised contrastive loss, t = 0.1, discrepancy input, map pooling"
        in report
    )
    assert "## What the results say" in report and "Closed set (real use): the embedding" in report
    assert "precision@1" in report.split("## What the results say")[1].split("Caveats")[0]
    assert len(printed.splitlines()) < 100  # tables on the console, the rest in the report
    # The universal model trained first; its USM of every image is what the others trained on.
    assert printed.index("Training universal") < printed.index("Training embedding")
    exported = sorted((run / "predicted_usm").glob("*.npy"))
    assert len(exported) == 30 and np.load(exported[0]).shape == (120, 160)
    for model in ("embedding", "psm_network", "multi_task", "per_observer"):
        saved = json.loads((run / model / "config.json").read_text())
        assert (saved["usm"], saved["external_usm_dir"]) == ("external", str(run / "predicted_usm"))
    assert "(real use): the embedding network, trained and enrolled on" in report
    assert "Real use: against the universal model's own map" in report
    assert (run / "example_study" / "viewer.csv").exists() and (
        run / "example_study" / "photo.jpg"
    ).exists()
    assert "clip(USM + 0.5 x predicted discrepancy, 0.3 x USM, 1)" in report  # the composition
    assert "closed set" in report and "open set" in report
    for row in ("USM (ground truth)", "Multi-task CNN", "Per-observer networks", "Embedding +"):
        assert row in report
    for baseline in ("Centre bias", "observer's mean discrepancy", "observer's mean PSM"):
        assert report.count(baseline) >= 4  # closed and open tables, each with its USM table
    assert report.count("#### Against the ground-truth USM (closed set), over pairs") == 1
    assert report.count("#### Against the ground-truth USM (open set), over people") == 1
    assert "IG (bits/fix.)" in report
    # Every row's per-pair scores, the tables' source, beside them.
    for protocol in ("closed", "open"):
        header = (run / "report" / f"{protocol}_scores.csv").read_text().splitlines()[0]
        assert header == "row,image_id,observer_id,cc,sim,auc_judd,nss,kld,ig"
    assert "given the training observers' mean embedding (control: what is personal" in report
    assert "ReLU activity of the PSM network" in report
    assert 0.0 <= result["activity"]["live_units/dynamic"] <= 1.0
    assert "| Layer | trunk_0 | trunk_1 | trunk_2 | dynamic | head |" in report  # model order
    assert "Multi-task CNN" not in report.split("open set")[1]  # no head for unseen observers
    closed = result["tables"]["closed"]
    assert set(closed.rows["gt_usm"]) == {
        "name",
        "cc",
        "sim",
        "auc_judd",
        "nss",
        "kld",
        "information_gain",
    }
    assert closed.usm_floor == 0.3 and closed.m == 3  # the tiny encoder's m
    stored = json.loads((run / "report" / "closed.json").read_text())
    assert stored["usm_floor"] == 0.3 and "embedding" in stored["rows"]
    for figure in ("examples_closed.png", "examples_open.png", "embeddings_tsne.png"):
        assert (run / "report" / figure).stat().st_size > 1000
        assert f"report/{figure}" in report
    alignment = result["preference_alignment"]  # tiny: 4 training observers, 2 unseen (skipped)
    assert set(alignment) == {"train"} and alignment["train"]["pairs"] == 6
    assert -1.0 <= alignment["train"]["spearman"] <= 1.0 and "Spearman r" in report
    precision = result["precision_at_1"]  # tiny: 24 training images, so m <= 12 only
    assert 0.0 <= precision[4] <= 1.0 and 0.0 <= precision[8] <= 1.0 and np.isnan(precision[16])


@pytest.mark.slow
def test_osie_personal_builds_from_the_real_release(osie_data_dir):
    builder = datasets.build_dataset(
        "osie_personal", data_dir=osie_data_dir, manual_dir=str(OSIE_DIR)
    )  # built by the fixture: this reuses it
    md = builder.info.metadata
    assert (md["num_images"], md["num_observers"]) == (700, 15)
    assert [len(md["image_split"][s]) for s in ("train", "validation", "test")] == [560, 70, 70]
    assert [len(md["observer_split"][s]) for s in ("train", "validation", "test")] == [9, 3, 3]
    assert md["quality"]["fixations"] == 98321 and md["quality"]["empty_pairs"] == 0
    source, metadata = pipeline.open_split("osie_personal", "test", osie_data_dir)
    assert len(source) == 70
    psm = np.stack([np.asarray(source[i]["psm"], np.float32) for i in range(70)])
    assert psm.shape == (70, 15, 120, 160)
    assert np.all(psm.max(axis=(2, 3)) == 1.0) and np.all(psm.min(axis=(2, 3)) == 0.0)
    # Sane statistics: maps are peaked (small mean), and people look at the centre more than
    # at the border (centre bias of free viewing).
    assert 0.01 < psm.mean() < 0.3
    usm = psm.mean(axis=(0, 1))
    assert (
        usm[40:80, 53:107].mean() > 2 * np.concatenate([usm[:10].ravel(), usm[-10:].ravel()]).mean()
    )
    # Observers differ: the mean CC between different observers' maps is well below 1.
    flat = psm.reshape(70, 15, -1)
    cc = [np.corrcoef(flat[i])[np.triu_indices(15, 1)].mean() for i in range(70)]
    assert 0.2 < np.mean(cc) < 0.9


def test_tfrecord_and_tfds_load_with_tensorflow(tmp_path):
    pytest.importorskip("tensorflow")
    import tensorflow_datasets as tfds

    datasets.build_dataset(
        "synthetic_personal_saliency/tiny", data_dir=str(tmp_path), file_format="tfrecord"
    )
    dataset = tfds.load("synthetic_personal_saliency/tiny", split="test", data_dir=str(tmp_path))
    example = next(iter(tfds.as_numpy(dataset)))
    assert example["image"].shape == (120, 160, 3)
    assert example["psm"].shape == (8, 120, 160)


def test_records_built_from_another_release_are_refused_with_the_rebuild_command(tmp_path):
    import shutil

    release = tmp_path / "osie"
    shutil.copytree(DUMMY["osie_personal"], release)
    data_dir = str(tmp_path / "tfds")
    built = datasets.build_dataset("osie_personal", data_dir=data_dir, manual_dir=str(release))
    assert built.info.metadata["release_fingerprint"]["root"] == str(release.resolve())
    # The same release copied elsewhere is the same release: reused.
    copy = tmp_path / "copy"
    shutil.copytree(release, copy)
    datasets.build_dataset("osie_personal", data_dir=data_dir, manual_dir=str(copy))
    # A re-exported fixation file, or an image more or less, is another release.
    (copy / "data" / "stimuli" / "1010.jpg").unlink()
    with pytest.raises(
        ValueError,
        match=r"(?s)were built from the release in .*osie.*another one \(11 files.*10 files.*"
        r"launch/build_dataset.py --dataset=osie_personal --manual_dir=.*--overwrite",
    ):
        datasets.build_dataset("osie_personal", data_dir=data_dir, manual_dir=str(copy))
    import scipy.io

    mat = release / "data" / "eye" / "fixations.mat"  # re-exported (another header date)
    scipy.io.savemat(mat, {"fixations": scipy.io.loadmat(mat)["fixations"]}, do_compression=True)
    with pytest.raises(ValueError, match="changed data files: data/eye/fixations.mat"):
        datasets.build_dataset("osie_personal", data_dir=data_dir, manual_dir=str(release))
    # --overwrite rebuilds from the new release and records its fingerprint.
    rebuilt = datasets.build_dataset(
        "osie_personal", data_dir=data_dir, manual_dir=str(release), overwrite=True
    )
    datasets.build_dataset("osie_personal", data_dir=data_dir, manual_dir=str(release))
    with pytest.raises(ValueError, match="changed data files"):  # the old one is now the other
        datasets.build_dataset(
            "osie_personal", data_dir=data_dir, manual_dir=str(DUMMY["osie_personal"])
        )
    assert rebuilt.info.metadata["num_images"] == 10


def test_observer_split_and_sigma_come_from_the_dataset_name(tmp_path, caplog):
    from psm_jax.data import builder as builder_lib

    data_dir = str(tmp_path / "tfds")
    manual = str(DUMMY["osie_personal"])
    # The dummy release has 5 observers: OSIE's 9/3/3 does not add up, and the fallback says so.
    with caplog.at_level("WARNING"):
        default = datasets.build_dataset("osie_personal", data_dir=data_dir, manual_dir=manual)
    assert "(9, 3, 3) adds up to 15 observers but the release has 5" in caplog.text
    assert [len(v) for v in default.info.metadata["observer_split"].values()] == [3, 1, 1]

    name = "osie_personal/" + builder_lib.config_name("default", (2, 2, 1), 6.0)
    assert name == "osie_personal/default+observers_2_2_1+sigma_6"
    derived = datasets.build_dataset(name, data_dir=data_dir, manual_dir=manual)
    assert [len(v) for v in derived.info.metadata["observer_split"].values()] == [2, 2, 1]
    assert derived.info.metadata["psm"]["sigma_native_px_range"] == [6.0, 6.0]
    assert derived.data_path != default.data_path  # records of their own
    source, _ = pipeline.open_split(name, "test", data_dir)  # loads by name, as launchers do
    wide, _ = pipeline.open_split("osie_personal", "test", data_dir)
    sharp, broad = source[0]["psm"].astype(np.float32), wide[0]["psm"].astype(np.float32)
    assert (sharp > 0.5).mean() < (broad > 0.5).mean()  # a smaller sigma, a peakier map
    with pytest.raises(ValueError, match=r"Cannot read 'sigma_x' of the dataset config"):
        datasets.builder("osie_personal/default+sigma_x", data_dir=data_dir)
    with pytest.raises(ValueError, match=r"as 'default\+observers_2_2_1\+sigma_6'"):
        datasets.builder("osie_personal/default+sigma_6+observers_2_2_1", data_dir=data_dir)


def test_observer_folds_come_from_the_dataset_name(tmp_path):
    from psm_jax.data import builder as builder_lib

    data_dir, manual = str(tmp_path / "tfds"), str(DUMMY["osie_personal"])
    assert builder_lib.config_name("default", sigma_px=6.0, observer_fold=(1, 3)) == (
        "default+fold_1_of_3+sigma_6"
    )
    assert builder_lib.with_fold("synthetic_personal_saliency", 0, 3) == (
        "synthetic_personal_saliency/default+fold_0_of_3"
    )
    assert builder_lib.with_fold("osie_personal/default+sigma_31", 2, 5) == (
        "osie_personal/default+fold_2_of_5+sigma_31"
    )
    tested = []
    for fold in range(3):  # the dummy release's 5 observers in 3 folds
        name = builder_lib.with_fold("osie_personal", fold, 3)
        metadata = datasets.build_dataset(name, data_dir=data_dir, manual_dir=manual).info.metadata
        split = metadata["observer_split"]
        assert metadata["observer_fold"] == {"fold": fold, "folds": 3}
        groups = [set(split[s]) for s in ("train", "validation", "test")]
        assert sum(len(g) for g in groups) == len(set.union(*groups)) == 5  # disjoint, all
        assert split["test"] and split["validation"] and split["train"]
        tested += split["test"]
    assert sorted(tested) == sorted(metadata["observer_ids"])  # everyone tested exactly once
    derived = datasets.builder("osie_personal/default+fold_1_of_3+sigma_6", data_dir=data_dir)
    assert derived.builder_config.observer_fold == (1, 3)
    assert derived.builder_config.sigma_px == 6.0


@pytest.mark.parametrize(
    ("config", "match"),
    [
        ("default+fold_3_of_3", r"'default\+fold_3_of_3'.*fold 3 of 3: folds are 0 to 2"),
        ("default+fold_0_of_2", r"'default\+fold_0_of_2'.*at least 3 folds"),
        ("default+fold_a_of_b", r"Cannot read 'fold_a_of_b'.*\+fold_<k>_of_<K>"),
        ("default+observers_2_2_1+fold_0_of_3", r"either by \+observers_.* or by \+fold_"),
        ("default+sigma_6+fold_0_of_3", r"as 'default\+fold_0_of_3\+sigma_6'"),
    ],
)
def test_bad_fold_names_are_refused(tmp_path, config, match):
    with pytest.raises(ValueError, match=match):
        datasets.builder(f"osie_personal/{config}", data_dir=str(tmp_path))


def test_more_folds_than_observers_are_refused_naming_the_config(tmp_path):
    from psm_jax.data import builder as builder_lib

    with pytest.raises(ValueError, match=r"osie_personal/default\+fold_0_of_6.*6 folds of 5 obs"):
        datasets.build_dataset(
            "osie_personal/default+fold_0_of_6",
            data_dir=str(tmp_path),
            manual_dir=str(DUMMY["osie_personal"]),
        )
    with pytest.raises(ValueError, match=r"already chooses its observers"):
        builder_lib.with_fold("osie_personal/default+observers_3_1_1", 0, 3)


def test_build_dataset_launcher_builds_the_derived_config(tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "launch" / "build_dataset.py"),
            "--dataset=osie_personal",
            f"--manual_dir={DUMMY['osie_personal']}",
            f"--data_dir={tmp_path}",
            "--observer_split=3,1,1",
            "--sigma_px=4",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "--dataset=osie_personal/default+observers_3_1_1+sigma_4" in result.stdout
    assert "observers: 5 (train 3, validation 1, test 1)" in result.stdout


def test_build_dataset_launcher_builds_a_fold(tmp_path):
    command = [
        sys.executable,
        str(ROOT / "launch" / "build_dataset.py"),
        "--dataset=osie_personal",
        f"--manual_dir={DUMMY['osie_personal']}",
        f"--data_dir={tmp_path}",
    ]
    result = subprocess.run(
        [*command, "--observer_fold=1/3"], capture_output=True, text=True, cwd=ROOT
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "--dataset=osie_personal/default+fold_1_of_3" in result.stdout
    assert "observers: 5 (train 2, validation 1, test 2; fold 1 of 3)" in result.stdout
    refused = subprocess.run(
        [*command, "--observer_fold=1/3", "--observer_split=3,1,1"],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert refused.returncode != 0
    assert "--observer_fold or --observer_split, not both" in refused.stderr


def test_an_explicit_observer_split_that_does_not_fit_the_release_is_refused(tmp_path):
    # --observer_split=5,5,5 on a release of 5 observers used to build a dataset named
    # observers_5_5_5 holding a 3/1/1 split, with a warning only.
    name = "osie_personal/default+observers_5_5_5"
    with pytest.raises(
        ValueError,
        match=r"--observer_split=5,5,5 \(osie_personal/default\+observers_5_5_5\) adds up to 15 "
        r"observers, but the release in .*dummy_data has 5: .*--observer_split=3,1,1",
    ):
        datasets.build_dataset(name, data_dir=str(tmp_path), manual_dir=str(DUMMY["osie_personal"]))


def test_a_fingerprint_recorded_before_version_2_is_compared_as_it_was_made(tmp_path):
    # Records built before the fingerprint skipped stray files hold one of every file: the same
    # release (with its README, which version 2 skips) must still count as the same.
    import shutil
    import types

    from psm_jax.data.releases.base import fingerprint

    release = tmp_path / "osie"
    shutil.copytree(DUMMY["osie_personal"], release)
    (release / "README.md").write_text("OSIE")
    legacy = fingerprint(release, every_file=True)
    del legacy["version"]
    prepared = types.SimpleNamespace(
        info=types.SimpleNamespace(metadata={"release_fingerprint": legacy}), data_dir="x"
    )
    datasets._check_release(prepared, "osie_personal", "x", str(release))  # accepted
    (release / "data" / "stimuli" / "1010.jpg").unlink()
    with pytest.raises(ValueError, match=r"another one \(12 files.*11 files"):
        datasets._check_release(prepared, "osie_personal", "x", str(release))


def test_a_build_killed_midway_leaves_nothing_the_next_build_keeps(tmp_path, caplog):
    # TFDS writes into <config>/incomplete.<random>_<version> and renames it when done: a build
    # killed midway used to leave that folder behind for good.
    import fcntl

    data_dir, manual = str(tmp_path / "tfds"), str(DUMMY["osie_personal"])
    config_dir = tmp_path / "tfds" / "osie_personal" / "default"
    stale = config_dir / "incomplete.ABC123_1.0.0"
    (stale / "1.0.0").mkdir(parents=True)
    (stale / "1.0.0" / "osie_personal-train.array_record-00000-of-00001").write_bytes(b"x")
    other_version = config_dir / "incomplete.ABC123_0.9.0"  # not this build's
    other_version.mkdir()
    # While another build holds the lock, its folder is its own: refused, nothing removed.
    with open(config_dir / datasets.BUILD_LOCK, "a") as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        with pytest.raises(RuntimeError, match=r"Another process is building osie_personal"):
            datasets.build_dataset("osie_personal", data_dir=data_dir, manual_dir=manual)
        assert stale.exists()
    with caplog.at_level("WARNING"):
        built = datasets.build_dataset("osie_personal", data_dir=data_dir, manual_dir=manual)
    assert not stale.exists() and other_version.exists()
    assert "Removed 1 folder that an interrupted build" in caplog.text
    assert built.info.metadata["num_images"] == 10
    source, _ = pipeline.open_split("osie_personal", "test", data_dir)  # the lock file is harmless
    assert len(source) == 1
