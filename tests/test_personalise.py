"""New viewers: enrolment by embedding (Strohm) or by a new multi-task head (Xu), prediction, and
the enrol / predict launchers."""

import io
import os
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest
from conftest import TINY
from flax import nnx
from PIL import Image

from psm_jax import figures, inference, personalise
from psm_jax.configs import evaluation as evaluation_config
from psm_jax.data import pipeline, saliency_maps
from psm_jax.models import layers

ROOT = Path(__file__).resolve().parents[1]


def _viewer_files(data_dir, directory, subjects=("",)):
    """A new person's files as a user has them: images_dir with 3 PNGs and viewer.csv with the
    fixations of test observer 0 on them (one more person's, shifted, per extra subject)."""
    source, _ = pipeline.open_split(TINY, "test", data_dir)
    images_dir = directory / "images"
    images_dir.mkdir(exist_ok=True)
    header = "image,x,y,duration_ms" + (",subject" if subjects != ("",) else "")
    lines = [header]
    for i in range(3):
        record = source[i]
        name = f"new_{i}.png"
        Image.open(io.BytesIO(record["image"])).save(images_dir / name)
        fixations = record["fixations"]
        own = np.asarray(fixations["observer"]) == 0
        for k, subject in enumerate(subjects):
            for x, y in zip(
                np.asarray(fixations["x"])[own], np.asarray(fixations["y"])[own], strict=True
            ):
                row = f"{name},{x + 5 * k},{y},200"
                lines.append(row + (f",{subject}" if subject else ""))
    path = directory / ("viewer.csv" if subjects == ("",) else "people.csv")
    path.write_text("\n".join(lines) + "\n")
    return images_dir, path


def test_enroll_a_new_viewer_and_predict_their_map(tiny_data_dir, tiny_workdirs, tmp_path):
    images_dir, csv = _viewer_files(tiny_data_dir, tmp_path)
    images, psms, names = personalise.read_viewer(images_dir, csv)
    assert images.shape == (3, 120, 160, 3) and psms.shape == (3, 120, 160) and len(names) == 3
    np.testing.assert_allclose(psms.max(axis=(1, 2)), 1.0, rtol=1e-5)
    encoder = inference.restore(tiny_workdirs["embedding"])
    universal = inference.restore(tiny_workdirs["universal"])
    # The main job's encoder reads each pair's departure from the USM: a new person's images
    # have the universal network's USMs.
    assert encoder.model.needs_usms
    with pytest.raises(ValueError, match="enrol with the images' USMs"):
        personalise.enroll(encoder, images, psms)
    usms = inference.predicted_usms(universal, images)
    embedding = personalise.enroll(encoder, images, psms, usms)
    np.testing.assert_allclose(np.linalg.norm(embedding), 1.0, rtol=1e-5)

    psm_network = inference.restore(tiny_workdirs["psm_network"])
    image, usm, psm = personalise.predict(
        psm_network,
        universal,
        embedding,
        images_dir / names[0],
        usm_floor=0.3,
        discrepancy_weight=0.5,
    )
    assert image.shape == (120, 160, 3) and usm.shape == psm.shape == (120, 160)
    assert 0.0 <= psm.min() and psm.max() <= 1.0
    native = personalise.read_rgb(images_dir / names[0])
    figures.save_overlay(native, psm, tmp_path / "overlay.png", title="a new viewer's PSM")
    width, height = Image.open(tmp_path / "overlay.png").size  # the image at its own size + bar
    assert width > native.shape[1] and height >= native.shape[0]
    with pytest.raises(ValueError, match="holds a 'psm_network' model, not 'embedding'"):
        personalise.enroll(psm_network, images, psms)
    # A NaN or wrongly sized embedding is refused, not turned into an all-NaN map.
    with pytest.raises(ValueError, match="NaN or infinite"):
        personalise.predict(
            psm_network, universal, embedding * np.nan, images_dir / names[0], 0.3, 0.5
        )
    with pytest.raises(ValueError, match=r"shape \(4,\); the PSM network .* takes \(8,\)"):
        personalise.predict(psm_network, universal, embedding[:4], images_dir / names[0], 0.3, 0.5)


def test_bad_viewer_tables_are_named(tiny_data_dir, tmp_path):
    images_dir, _ = _viewer_files(tiny_data_dir, tmp_path)
    (tmp_path / "bad.csv").write_text("image,x\nnew_0.png,3\n")
    with pytest.raises(ValueError, match="bad.csv lacks columns \\['y'\\]"):
        personalise.read_viewer(images_dir, tmp_path / "bad.csv")
    (tmp_path / "ragged.csv").write_text("image,x,y\nnew_0.png,1,2\nnew_0.png,3\n")
    with pytest.raises(ValueError, match=r"ragged.csv: rows \[3\] do not have 3 fields"):
        personalise.read_viewer(images_dir, tmp_path / "ragged.csv")
    (tmp_path / "missing.csv").write_text("image,x,y\nnope.png,1,2\n")
    with pytest.raises(FileNotFoundError, match="nope.png"):
        personalise.read_viewer(images_dir, tmp_path / "missing.csv")
    _, people = _viewer_files(tiny_data_dir, tmp_path, subjects=("alice", "bob"))
    with pytest.raises(ValueError, match="fixations of 2 people \\(alice, bob\\).*--subject"):
        personalise.read_viewer(images_dir, people)
    alice = personalise.read_viewer(images_dir, people, subject="alice")[1]
    bob = personalise.read_viewer(images_dir, people, subject="bob")[1]
    assert not np.allclose(alice, bob)
    # A NaN coordinate drops that fixation, not the image (as the dataset builders do).
    (tmp_path / "nan.csv").write_text("image,x,y\nnew_0.png,10,20\nnew_0.png,nan,5\n")
    images, _, names = personalise.read_viewer(images_dir, tmp_path / "nan.csv")
    assert names == ["new_0.png"] and len(images) == 1


@pytest.mark.slow
def test_adapting_a_new_multi_task_head_leaves_the_shared_layers(tiny_data_dir, tiny_workdirs):
    source, metadata = pipeline.open_split(TINY, "train", tiny_data_dir)
    observer = metadata.observers("test")[0]  # a person the model never saw
    images, psms, usms = [], [], []
    for i in range(8):
        record = source[i]
        psm = np.asarray(record["psm"], np.float32)
        usm, _ = saliency_maps.universal_saliency_maps(
            psm, record["psm_valid"], mode="train", train_observers=metadata.train_mask
        )
        images.append(pipeline.decode_image(record["image"], metadata.working_size))
        psms.append(psm[observer])
        usms.append(usm[observer])
    trained = inference.restore(tiny_workdirs["multi_task"])
    person, history = personalise.adapt_multi_task_head(
        trained, np.stack(images), np.stack(psms), np.stack(usms), steps=30, batch_size=8
    )
    assert history[-5:].mean() < history[:5].mean()  # the new head fits the person's maps
    shared = nnx.state(trained.model, nnx.All(nnx.Param, nnx.Not(layers.ObserverParam)))
    adapted = nnx.state(person.model, nnx.All(nnx.Param, nnx.Not(layers.ObserverParam)))
    for a, b in zip(jax.tree.leaves(shared), jax.tree.leaves(adapted), strict=True):
        np.testing.assert_array_equal(a, b)
    assert jax.tree.leaves(nnx.state(person.model, layers.ObserverParam))[0].shape[0] == 1


def _run_launcher(script: str, *flags: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(ROOT / "launch" / script), *flags],
        capture_output=True,
        text=True,
        env={**os.environ, "JAX_PLATFORMS": "cpu"},
    )


def test_the_enrol_and_predict_launchers_smoke(tiny_data_dir, tiny_workdirs, tmp_path):
    """The fast path through both launchers: a new person enrolled by embedding, then their map
    of a new image, as the README shows: with no ground-truth USM, the universal model the main
    job trained beside the given models, without a flag."""
    images_dir, csv = _viewer_files(tiny_data_dir, tmp_path)
    enrolled = _run_launcher(  # the universal model the main job trained beside the encoder
        "enroll.py",
        f"--images_dir={images_dir}",
        f"--fixations={csv}",
        f"--encoder_workdir={tiny_workdirs['embedding']}",
        f"--output={tmp_path / 'alice.npy'}",
    )
    assert enrolled.returncode == 0, enrolled.stderr[-2000:]
    predicted = _run_launcher(
        "predict.py",
        f"--psm_network={tiny_workdirs['psm_network']}",
        f"--embedding={tmp_path / 'alice.npy'}",
        f"--image={images_dir / 'new_0.png'}",
        f"--output={tmp_path / 'alice_photo'}",
    )
    assert predicted.returncode == 0, predicted.stderr[-2000:]
    psm = np.load(tmp_path / "alice_photo.npy")
    assert psm.shape == (120, 160) and np.isfinite(psm).all() and psm.max() == pytest.approx(1)
    assert (tmp_path / "alice_photo.png").stat().st_size > 1000


@pytest.mark.slow
def test_both_enrolments_and_predictions_through_the_launchers(
    tiny_data_dir, tiny_workdirs, tmp_path
):
    """launch/enroll.py writes an embedding (Strohm) or fits and saves a head (Xu);
    launch/predict.py uses either; a missing flag, a workdir of the wrong kind, a head of another
    model and a file that is no head are refused by name."""
    images_dir, csv = _viewer_files(tiny_data_dir, tmp_path)
    person = (f"--images_dir={images_dir}", f"--fixations={csv}")
    # An encoder alone in its folder: no universal model beside it, none named.
    import shutil

    lonely = tmp_path / "lonely" / "embedding"
    shutil.copytree(tiny_workdirs["embedding"], lonely)
    without_usms = _run_launcher(
        "enroll.py", *person, f"--encoder_workdir={lonely}", f"--output={tmp_path / 'alice'}"
    )
    assert without_usms.returncode != 0
    assert "no universal model was found beside the given workdir: give --universal" in (
        without_usms.stderr
    )
    enrolled = _run_launcher(
        "enroll.py",
        *person,
        f"--encoder_workdir={tiny_workdirs['embedding']}",
        f"--universal={tiny_workdirs['universal']}",
        f"--output={tmp_path / 'alice'}",
    )
    assert enrolled.returncode == 0, enrolled.stderr[-2000:]
    assert f"-> {tmp_path / 'alice.npy'}" in enrolled.stdout
    wrong_kind = _run_launcher(
        "enroll.py",
        *person,
        f"--encoder_workdir={tiny_workdirs['universal']}",
        f"--output={tmp_path / 'nobody'}",
    )
    assert wrong_kind.returncode != 0
    assert "holds a 'universal' model, not 'embedding'" in wrong_kind.stderr
    predicted = _run_launcher(
        "predict.py",
        f"--psm_network={tiny_workdirs['psm_network']}",
        f"--embedding={tmp_path / 'alice.npy'}",
        f"--universal={tiny_workdirs['universal']}",
        f"--image={images_dir / 'new_0.png'}",
        f"--output={tmp_path / 'alice_strohm'}",
        "--config.usm_floor=0",
    )
    assert predicted.returncode == 0, predicted.stderr[-2000:]
    _, _, expected = personalise.predict(
        inference.restore(tiny_workdirs["psm_network"]),
        inference.restore(tiny_workdirs["universal"]),
        np.load(tmp_path / "alice.npy"),
        images_dir / "new_0.png",
        usm_floor=0.0,
        # The launcher composes with the evaluation's default weight (ours, 0.5).
        discrepancy_weight=evaluation_config.get_config().discrepancy_weight,
    )
    np.testing.assert_allclose(np.load(tmp_path / "alice_strohm.npy"), expected, atol=1e-6)
    np.save(tmp_path / "broken.npy", np.full(8, np.nan, np.float32))
    refused = _run_launcher(
        "predict.py",
        f"--psm_network={tiny_workdirs['psm_network']}",
        f"--embedding={tmp_path / 'broken.npy'}",
        f"--universal={tiny_workdirs['universal']}",
        f"--image={images_dir / 'new_0.png'}",
        f"--output={tmp_path / 'broken'}",
    )
    assert refused.returncode != 0 and not (tmp_path / "broken.npy.png").exists()
    assert f"--embedding={tmp_path / 'broken.npy'}: the embedding holds NaN" in refused.stderr

    head = (
        "--method=multi_task_head",
        *person,
        f"--output={tmp_path / 'head'}",  # no suffix: the head goes to head.npz, and says so
        "--steps=20",
    )
    refused = _run_launcher("enroll.py", *head)
    assert refused.returncode != 0 and "--multi_task_workdir" in refused.stderr
    enrolled = _run_launcher(
        "enroll.py",
        *head,
        f"--multi_task_workdir={tiny_workdirs['multi_task']}",
        f"--universal={tiny_workdirs['universal']}",
    )
    assert enrolled.returncode == 0, enrolled.stderr[-2000:]
    assert "Multi-task head fitted to 3" in enrolled.stdout
    assert f"-> {tmp_path / 'head.npz'}" in enrolled.stdout

    trained = inference.restore(tiny_workdirs["multi_task"])
    adapted = personalise.head_arrays(personalise.load_head(trained, tmp_path / "head.npz").model)
    mean_head = {
        k: v.mean(axis=0, keepdims=True) for k, v in personalise.head_arrays(trained.model).items()
    }
    assert adapted.keys() == mean_head.keys()
    # 20 SGD steps moved the head away from its start, the mean of the trained heads.
    assert any(not np.allclose(adapted[k], mean_head[k]) for k in adapted)

    predicted = _run_launcher(
        "predict.py",
        f"--multi_task={tiny_workdirs['multi_task']}",
        f"--head={tmp_path / 'head.npz'}",
        f"--universal={tiny_workdirs['universal']}",
        f"--image={images_dir / 'new_0.png'}",
        f"--output={tmp_path / 'alice_xu'}",
    )
    assert predicted.returncode == 0, predicted.stderr[-2000:]
    psm = np.load(tmp_path / "alice_xu.npy")
    _, usm, expected = personalise.predict_with_head(
        trained,
        tmp_path / "head.npz",
        inference.restore(tiny_workdirs["universal"]),
        images_dir / "new_0.png",
        usm_floor=0.3,
        discrepancy_weight=evaluation_config.get_config().discrepancy_weight,
    )
    np.testing.assert_allclose(psm, expected, atol=1e-6)
    assert not np.allclose(psm, usm)  # the head's discrepancy changed the universal map
    assert (tmp_path / "alice_xu.png").exists() and (tmp_path / "alice_xu_usm.png").exists()

    np.savez(tmp_path / "wrong.npz", kernel=np.zeros(3))
    with pytest.raises(ValueError, match="wrong.npz is not a head"):
        personalise.load_head(trained, tmp_path / "wrong.npz")
    np.save(tmp_path / "embedding.npy", np.zeros(8))
    with pytest.raises(ValueError, match="embedding.npy is not a .npz head"):
        personalise.load_head(trained, tmp_path / "embedding.npy")
    with pytest.raises(FileNotFoundError, match="The head .*missing.npz does not exist"):
        personalise.load_head(trained, tmp_path / "missing.npz")


def test_a_discrepancy_encoder_enrols_only_with_usms():
    import ml_collections

    from psm_jax.models import embedding

    config = embedding.EncoderConfig(widths=(4, 4, 4, 4), embedding_size=6, input_map="discrepancy")
    model = embedding.UserEmbeddingEncoder(config, rngs=nnx.Rngs(0))
    model.eval()
    encoder = inference.Restored(
        Path("/nowhere/embedding"), ml_collections.ConfigDict({"model": "embedding"}), model, 1
    )
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (3, 120, 160, 3), dtype=np.uint8)
    psms = rng.random((3, 120, 160), dtype=np.float32)
    with pytest.raises(ValueError, match="enrol with the images' USMs"):
        personalise.enroll(encoder, images, psms)
    vector = personalise.enroll(encoder, images, psms, usms=psms * 0.9)
    assert vector.shape == (6,) and abs(float(np.linalg.norm(vector)) - 1) < 1e-5


def _untrained_multi_task() -> inference.Restored:
    """A multi-task CNN as `inference.restore` returns one, untrained (for the head's checks)."""
    import ml_collections

    from psm_jax.models import multi_task

    config = multi_task.MultiTaskConfig(trunk_widths=(4, 4, 4, 4), head_widths=(4, 4, 4))
    model = multi_task.MultiTaskCNN(3, config, rngs=nnx.Rngs(0))
    model.eval()
    return inference.Restored(
        Path("/nowhere/multi_task"), ml_collections.ConfigDict({"model": "multi_task"}), model, 1
    )


def test_a_head_holding_nan_is_refused_naming_the_file(tmp_path):
    """A multi-task head with a NaN would give an all-NaN map: refused, as a NaN embedding is."""
    trained = _untrained_multi_task()
    arrays = personalise.head_arrays(personalise._one_observer_model(trained.model))
    np.savez(tmp_path / "good.npz", **arrays)
    personalise.load_head(trained, tmp_path / "good.npz")
    first = sorted(arrays)[0]
    arrays[first] = arrays[first].copy()
    arrays[first].flat[0] = np.nan
    np.savez(tmp_path / "nan_head.npz", **arrays)
    with pytest.raises(ValueError, match=r"nan_head.npz.* NaN or infinite.*enrol the person again"):
        personalise.load_head(trained, tmp_path / "nan_head.npz")


@pytest.mark.parametrize(
    "content, why",
    [
        (b"", "is empty"),
        (b"image,x,y\nnew_0.png,1,2\n", "not a NumPy file"),
        ("truncated", "truncated"),
    ],
)
def test_an_unreadable_embedding_or_head_file_is_named(tmp_path, content, why):
    """A zero-byte, truncated or non-NumPy file given as an embedding or a head: a ValueError
    naming the file, never an EOFError or a zip error."""
    if content == "truncated":
        np.save(tmp_path / "whole.npy", np.ones(8, np.float32))
        content = (tmp_path / "whole.npy").read_bytes()[:-10]
    for name in ("alice.npy", "alice_head.npz"):
        (tmp_path / name).write_bytes(content)
    with pytest.raises(ValueError, match=rf"alice.npy.*{why}"):
        personalise.load_embedding(tmp_path / "alice.npy")
    with pytest.raises(ValueError, match=rf"alice_head.npz.*{why}"):
        personalise.load_head(_untrained_multi_task(), tmp_path / "alice_head.npz")
    if why == "truncated":  # a head cut short: the .npz's zip directory is gone
        np.savez(tmp_path / "whole.npz", **personalise.head_arrays(_untrained_multi_task().model))
        (tmp_path / "cut.npz").write_bytes((tmp_path / "whole.npz").read_bytes()[:-30])
        with pytest.raises(ValueError, match="cut.npz.*truncated"):
            personalise.load_head(_untrained_multi_task(), tmp_path / "cut.npz")


def test_a_head_given_as_an_embedding_is_named(tmp_path):
    np.savez(tmp_path / "head.npz", kernel=np.zeros(3))
    with pytest.raises(ValueError, match=r"head.npz is a .npz .*--head with --multi_task"):
        personalise.load_embedding(tmp_path / "head.npz")


def test_image_names_that_leave_the_images_folder_are_refused(tmp_path):
    """An enrolment table naming '../x.png' or an absolute path would read a file outside
    --images_dir: refused with the table, the line and the name."""
    images_dir = tmp_path / "images"
    images_dir.mkdir()
    Image.new("RGB", (16, 12)).save(images_dir / "own.png")
    Image.new("RGB", (16, 12)).save(tmp_path / "outside.png")  # exists: it would be read
    for name in ("../outside.png", str(tmp_path / "outside.png"), "sub/../../outside.png"):
        (tmp_path / "escape.csv").write_text(f"image,x,y\nown.png,1,2\n{name},3,4\n")
        with pytest.raises(ValueError, match=rf"escape.csv, line 3: image '{name}' .*--images_dir"):
            personalise.read_viewer(images_dir, tmp_path / "escape.csv")


@pytest.mark.parametrize(
    "options, message",
    [
        ({"steps": -3}, r"--steps=-3: .*1 or more"),
        ({"steps": 0}, r"--steps=0: .*1 or more"),
        ({"learning_rate": float("nan")}, r"--learning_rate=nan: .*finite and positive"),
        ({"learning_rate": -0.1}, r"--learning_rate=-0.1: .*finite and positive"),
        ({"batch_size": 0}, r"batch_size=0: .*1 or more"),
    ],
)
def test_a_new_head_refuses_steps_and_learning_rates_out_of_range(options, message):
    """`enroll.py --steps=-3` fitted a head in -3 steps (loss nan -> nan), exit 0."""
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (2, 120, 160, 3), dtype=np.uint8)
    maps = rng.random((2, 120, 160), dtype=np.float32)
    with pytest.raises(ValueError, match=message):
        personalise.adapt_multi_task_head(_untrained_multi_task(), images, maps, maps, **options)


@pytest.mark.parametrize("sigma_px", [0.0, -4.0, float("nan"), float("inf")])
def test_a_psm_blur_out_of_range_is_refused_naming_the_flag(tmp_path, sigma_px):
    images_dir = tmp_path / "images"
    images_dir.mkdir()
    Image.new("RGB", (16, 12)).save(images_dir / "own.png")
    (tmp_path / "viewer.csv").write_text("image,x,y\nown.png,3,4\n")
    with pytest.raises(ValueError, match=rf"--sigma_px={sigma_px}: .*finite and positive"):
        personalise.read_viewer(images_dir, tmp_path / "viewer.csv", sigma_px=sigma_px)


@pytest.mark.parametrize(
    "usm_floor, discrepancy_weight, message",
    [
        (float("nan"), 0.5, r"--config.usm_floor must be in \[0, 1\], got nan"),
        (0.3, -1.0, r"--config.discrepancy_weight must be in \[0, 2\], got -1.0"),
    ],
)
def test_a_prediction_refuses_a_composition_out_of_range(usm_floor, discrepancy_weight, message):
    """predict.py's --config.usm_floor=nan gave an all-NaN map; checked before any file is read."""
    for predict in (personalise.predict, personalise.predict_with_head):
        with pytest.raises(ValueError, match=message):
            predict(None, None, None, "/nowhere/photo.jpg", usm_floor, discrepancy_weight)


def test_a_large_image_is_read_and_drawn_at_a_bounded_size(tmp_path):
    """A 4000x3000 photo: predict.py read it at its own size and drew its overlays in float64 at
    that size (an 8000x6000 one peaked at 11 GB and wrote 43-145 MB PNGs); now it is read at most
    `personalise.MAX_SIDE` px on the long side and the overlays drawn at that size."""
    import tracemalloc

    photo = tmp_path / "photo.jpg"
    Image.linear_gradient("L").resize((4000, 3000)).convert("RGB").save(photo, quality=90)
    psm = np.random.default_rng(0).random((120, 160)).astype(np.float32)
    figures.save_overlay(np.zeros((12, 16, 3), np.uint8), psm, tmp_path / "warm.png")  # imports
    tracemalloc.start()
    try:
        native = personalise.read_rgb(photo)
        figures.save_overlay(native, psm, tmp_path / "overlay.png", title="a large photo")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert max(native.shape[:2]) == personalise.MAX_SIDE == 1024
    assert native.shape[:2] == (768, 1024)  # the aspect ratio kept
    width, height = Image.open(tmp_path / "overlay.png").size
    assert width <= 1.25 * 1024 and height <= 1.1 * 768
    assert (tmp_path / "overlay.png").stat().st_size < 3e6
    assert peak < 200e6, f"{peak / 1e6:.0f} MB"  # NumPy's and matplotlib's (PIL's untraced)
    # An array drawn directly is bounded the same way.
    figures.save_overlay(np.zeros((3000, 4000, 3), np.uint8), psm, tmp_path / "direct.png")
    assert max(Image.open(tmp_path / "direct.png").size) <= 1.25 * 1024
