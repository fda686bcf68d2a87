"""The training loop: every model trains, resumes exactly, and stops on non-finite losses."""

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import jax
import numpy as np
import pytest

from psm_jax.configs import synthetic
from psm_jax.data import datasets
from psm_jax.train import checkpoint, loop

ROOT = Path(__file__).resolve().parents[1]
TINY = "synthetic_personal_saliency/tiny"


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    directory = tmp_path_factory.mktemp("tfds")
    datasets.build_dataset(TINY, data_dir=str(directory))
    return str(directory)


def _config(model, data_dir, **overrides):
    config = synthetic.get_config(f"{model},tiny")
    config.data_dir = data_dir
    for key, value in overrides.items():
        setattr(config, key, value)
    return config


def _params(workdir, which="latest"):
    model, _, _ = loop.restore_model(workdir, which)
    from flax import nnx

    return [np.asarray(leaf) for leaf in jax.tree.leaves(nnx.state(model, nnx.Param))]


@pytest.fixture(scope="module")
def encoder_workdir(data_dir, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("embedding")
    loop.train_and_evaluate(_config("embedding", data_dir), workdir)
    return str(workdir)


@pytest.mark.parametrize("model", ["psm_network", "multi_task", "per_observer", "universal"])
def test_every_model_trains_checkpoints_and_logs(model, data_dir, encoder_workdir, tmp_path):
    config = _config(model, data_dir, encoder_workdir=encoder_workdir)
    if model == "per_observer":  # the quick configs use "strohm"; this checks the other one
        config.architecture = "xu"
        config.network = {"trunk_widths": (4, 8, 8, 8), "head_widths": (8, 8, 4)}
    if model == "psm_network":  # with the optional loss on the composed map (reads the PSMs)
        config.composed_kld_weight = 0.03
    measurements = loop.train_and_evaluate(config, tmp_path)
    assert np.isfinite(measurements["loss"]) and np.isfinite(measurements["validation_loss"])
    if model == "psm_network":
        assert np.isfinite(measurements["composed_kld"]) and measurements["composed_kld"] > 0
    assert checkpoint.load_config(tmp_path).model == model
    assert list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))
    steps = sorted(int(p.name) for p in (tmp_path / "checkpoints").iterdir() if p.name.isdigit())
    assert steps[-1] == config.num_steps  # the latest is always kept, beside the best
    assert len(steps) <= 2


def test_encoder_embeddings_feed_the_pool(encoder_workdir, data_dir):
    config = _config("psm_network", data_dir, encoder_workdir=encoder_workdir)
    _, metadata = loop.pipeline.open_split(TINY, "train", data_dir)
    pool = loop.embedding_pool(config, metadata)
    assert pool.shape == (len(metadata.observers("train")), config.embedding_pool_size, 8)
    np.testing.assert_allclose(np.linalg.norm(pool, axis=-1), 1.0, rtol=1e-5)
    config.m = 32  # tiny has 24 training images: a set of 32 cannot be drawn
    with pytest.raises(ValueError, match="--config.m=32 needs at least 64 training images"):
        loop.embedding_pool(config, metadata)


def test_continuing_a_finished_run_equals_one_long_run(data_dir, tmp_path):
    long_run = _config("embedding", data_dir, num_steps=6, checkpoint_every=3)
    loop.train_and_evaluate(long_run, tmp_path / "long")
    short = _config("embedding", data_dir, num_steps=3, checkpoint_every=3)
    loop.train_and_evaluate(short, tmp_path / "split")
    loop.train_and_evaluate(long_run, tmp_path / "split")  # resumes at step 3
    for a, b in zip(_params(tmp_path / "long"), _params(tmp_path / "split"), strict=True):
        np.testing.assert_array_equal(a, b)


def _launch(workdir, data_dir, num_steps, log):
    command = [
        sys.executable,
        str(ROOT / "launch" / "train_embedding.py"),
        "--config=psm_jax/configs/synthetic.py:embedding,tiny",
        f"--workdir={workdir}",
        f"--config.data_dir={data_dir}",
        f"--config.num_steps={num_steps}",
        "--config.checkpoint_every=4",
        "--config.log_every=4",
    ]
    env = dict(os.environ, JAX_DEFAULT_PRNG_IMPL="rbg")
    return subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)


def test_a_run_killed_with_sigkill_resumes_to_the_same_parameters(data_dir, tmp_path):
    steps = 40
    log_path = tmp_path / "log.txt"
    log = log_path.open("wb")

    def tail():
        return log_path.read_text(errors="replace")[-3000:]

    uninterrupted = _launch(tmp_path / "whole", data_dir, steps, log)
    assert uninterrupted.wait(timeout=300) == 0, tail()

    killed = _launch(tmp_path / "killed", data_dir, steps, log)
    checkpoint_dir = tmp_path / "killed" / "checkpoints"
    deadline = time.time() + 300
    while not (checkpoint_dir / "8").is_dir() and killed.poll() is None:
        assert time.time() < deadline
        time.sleep(0.05)
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    assert killed.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    resumed = _launch(tmp_path / "killed", data_dir, steps, log)
    assert resumed.wait(timeout=300) == 0, tail()
    resumed_at = re.findall(r"Resumed .* from step (\d+)\.", log_path.read_text(errors="replace"))
    assert resumed_at and 8 <= int(resumed_at[-1]) < steps
    for a, b in zip(_params(tmp_path / "whole"), _params(tmp_path / "killed"), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


def test_a_non_finite_loss_stops_the_run_and_keeps_the_last_good_checkpoint(data_dir, tmp_path):
    config = _config(
        "universal", data_dir, learning_rate=1e25, num_steps=20, checkpoint_every=1, log_every=1
    )
    with pytest.raises(loop.NonFiniteError, match=r"at step \d+") as error:
        loop.train_and_evaluate(config, tmp_path)
    bad_step = int(str(error.value).split("at step ")[1].split()[0])
    mgr = checkpoint.manager(tmp_path)
    assert mgr.latest_step() is not None and mgr.latest_step() <= bad_step
    assert all(np.all(np.isfinite(leaf)) for leaf in _params(tmp_path))


def test_evaluation_tables_from_trained_workdirs(data_dir, encoder_workdir, tmp_path):
    from psm_jax import evaluate, metrics

    workdirs = {"embedding": encoder_workdir}
    for model in ("psm_network", "per_observer"):
        workdirs[model] = str(tmp_path / model)
        config = _config(model, data_dir, encoder_workdir=encoder_workdir)
        loop.train_and_evaluate(config, workdirs[model])
    for protocol in ("closed", "open"):
        evaluation = evaluate.evaluation_set(TINY, data_dir, protocol)
        pairs = len(evaluation.image)
        assert evaluation.psm.shape == (pairs, 120, 160) and pairs > 0
        scores = evaluate.evaluate(evaluation, data_dir, m=3, **workdirs)
        assert set(scores) == {
            "USM (ground truth)",
            "Per-observer networks (strohm) w/ GT USM" + (", oracle" if protocol == "open" else ""),
            evaluate.OURS + " w/ GT USM",
        }
        usm_scores = scores["USM (ground truth)"]
        assert all(values.shape == (pairs,) for values in usm_scores.values())
        expected_cc = metrics.cc(evaluation.usm[evaluation.image], evaluation.psm)
        np.testing.assert_allclose(usm_scores["cc"], expected_cc, rtol=1e-4, atol=1e-5)
        path = evaluate.write(evaluate.table(scores), protocol, tmp_path / "report", protocol)
        assert "| USM (ground truth) |" in path.read_text()


def test_fine_tuning_starts_from_the_pretrained_workdir_and_adds_its_rows(data_dir, tmp_path):
    """config.init_from copies the pretrained parameters (a zero learning rate keeps them) and the
    evaluation then shows the pretrained and the fine-tuned universal networks as two rows."""
    from flax import nnx

    from psm_jax import evaluate

    loop.train_and_evaluate(_config("universal", data_dir), tmp_path / "pretrained")
    frozen = _config(
        "universal", data_dir, init_from=str(tmp_path / "pretrained"), learning_rate=0.0, seed=1
    )
    frozen.weight_decay = 0.0  # seed 1: a fresh initialisation would differ
    loop.train_and_evaluate(frozen, tmp_path / "frozen")
    pretrained = loop.restore_model(tmp_path / "pretrained")[0]
    copied = loop.restore_model(tmp_path / "frozen", "latest")[0]
    for a, b in zip(
        jax.tree.leaves(nnx.state(pretrained, nnx.Param)),
        jax.tree.leaves(nnx.state(copied, nnx.Param)),
        strict=True,
    ):
        np.testing.assert_array_equal(a, b)

    tuned = _config("universal", data_dir, init_from=str(tmp_path / "pretrained"))
    loop.train_and_evaluate(tuned, tmp_path / "tuned")
    evaluation = evaluate.evaluation_set(TINY, data_dir, "closed")
    scores = evaluate.evaluate(evaluation, data_dir, universal=str(tmp_path / "tuned"))
    assert set(scores) == {
        "USM (ground truth)",
        f"USM (universal network trained on {TINY}, not fine-tuned)",
        "USM (fine-tuned universal network)",
    }

    wrong = _config("universal", data_dir, init_from=str(tmp_path / "pretrained"))
    wrong.network = {"widths": (4, 8, 8, 16)}
    with pytest.raises(ValueError, match="its network differs"):
        loop.train_and_evaluate(wrong, tmp_path / "wrong")
    other = _config("multi_task", data_dir, init_from=str(tmp_path / "pretrained"))
    with pytest.raises(ValueError, match="holds a 'universal' model"):
        loop.train_and_evaluate(other, tmp_path / "other")


def test_the_asterisk_marks_a_significant_win_over_the_strongest_row():
    from psm_jax import evaluate

    rng = np.random.default_rng(0)
    base = {m: rng.normal(0.5, 0.05, 200) for m in evaluate.METRICS}
    strong = {m: v + (0.2 if m != "kld" else -0.2) for m, v in base.items()}
    rows = evaluate.table({"USM": base, "Other": dict(base), evaluate.OURS: strong})
    assert all(rows[evaluate.OURS][m]["significant"] for m in evaluate.METRICS)
    assert not any(rows["USM"][m]["significant"] for m in evaluate.METRICS)
    tie = evaluate.table({"USM": base, evaluate.OURS: dict(base)})
    assert not any(tie[evaluate.OURS][m]["significant"] for m in evaluate.METRICS)


def _viewer_files(data_dir, directory):
    """A new person's files as a user has them: images_dir with 3 PNGs and viewer.csv with the
    fixations of test observer 0 on them."""
    import io

    from PIL import Image

    source, _ = loop.pipeline.open_split(TINY, "test", data_dir)
    images_dir = directory / "images"
    images_dir.mkdir()
    lines = ["image,x,y,duration_ms"]
    for i in range(3):
        record = source[i]
        name = f"new_{i}.png"
        Image.open(io.BytesIO(record["image"])).save(images_dir / name)
        fixations = record["fixations"]
        own = np.asarray(fixations["observer"]) == 0
        for x, y in zip(
            np.asarray(fixations["x"])[own], np.asarray(fixations["y"])[own], strict=True
        ):
            lines.append(f"{name},{x},{y},200")
    (directory / "viewer.csv").write_text("\n".join(lines) + "\n")
    return images_dir, directory / "viewer.csv"


def test_enroll_a_new_viewer_and_predict_their_map(data_dir, encoder_workdir, tmp_path):
    from PIL import Image

    from psm_jax import personalise

    workdirs = {}
    for model in ("psm_network", "universal"):
        workdirs[model] = tmp_path / model
        config = _config(model, data_dir, encoder_workdir=encoder_workdir)
        loop.train_and_evaluate(config, workdirs[model])
    images_dir, _ = _viewer_files(data_dir, tmp_path)

    images, psms, names = personalise.read_viewer(images_dir, tmp_path / "viewer.csv")
    assert images.shape == (3, 120, 160, 3) and psms.shape == (3, 120, 160) and len(names) == 3
    np.testing.assert_allclose(psms.max(axis=(1, 2)), 1.0, rtol=1e-5)
    embedding = personalise.enroll(encoder_workdir, images, psms)
    np.testing.assert_allclose(np.linalg.norm(embedding), 1.0, rtol=1e-5)

    image, usm, psm = personalise.predict(
        workdirs["psm_network"], workdirs["universal"], embedding, images_dir / names[0]
    )
    assert image.shape == (120, 160, 3) and usm.shape == psm.shape == (120, 160)
    assert 0.0 <= psm.min() and psm.max() <= 1.0
    personalise.save_overlay(image, psm, tmp_path / "overlay.png")
    assert Image.open(tmp_path / "overlay.png").size == (160, 120)

    (tmp_path / "bad.csv").write_text("image,x\nnew_0.png,3\n")
    with pytest.raises(ValueError, match="lacks the column"):
        personalise.read_fixation_table(tmp_path / "bad.csv")
    (tmp_path / "missing.csv").write_text("image,x,y\nnope.png,1,2\n")
    with pytest.raises(FileNotFoundError, match="nope.png"):
        personalise.read_viewer(images_dir, tmp_path / "missing.csv")


def test_adapting_a_new_multi_task_head_leaves_the_shared_layers(data_dir, tmp_path):
    from flax import nnx

    from psm_jax import personalise
    from psm_jax.data import saliency_maps
    from psm_jax.models import layers

    loop.train_and_evaluate(_config("multi_task", data_dir), tmp_path / "multi_task")
    source, metadata = loop.pipeline.open_split(TINY, "train", data_dir)
    observer = metadata.observers("test")[0]  # a person the model never saw
    images, psms, usms = [], [], []
    for i in range(8):
        record = source[i]
        psm = np.asarray(record["psm"], np.float32)
        usm, _ = saliency_maps.universal_saliency_maps(
            psm, record["psm_valid"], mode="train", train_observers=metadata.train_mask
        )
        images.append(loop.pipeline.decode_image(record["image"], metadata.working_size))
        psms.append(psm[observer])
        usms.append(usm[observer])
    model, history = personalise.adapt_multi_task_head(
        tmp_path / "multi_task",
        np.stack(images),
        np.stack(psms),
        np.stack(usms),
        steps=30,
        batch_size=8,
    )
    assert history[-5:].mean() < history[:5].mean()  # the new head fits the person's maps
    trained, _, _ = loop.restore_model(tmp_path / "multi_task")
    shared = nnx.state(trained, nnx.All(nnx.Param, nnx.Not(layers.ObserverParam)))
    adapted = nnx.state(model, nnx.All(nnx.Param, nnx.Not(layers.ObserverParam)))
    for a, b in zip(jax.tree.leaves(shared), jax.tree.leaves(adapted), strict=True):
        np.testing.assert_array_equal(a, b)
    assert jax.tree.leaves(nnx.state(model, layers.ObserverParam))[0].shape[0] == 1


def _run_launcher(script: str, *flags: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(ROOT / "launch" / script), *flags],
        capture_output=True,
        text=True,
        env={**os.environ, "JAX_PLATFORMS": "cpu"},
    )


def test_xu_enrolment_and_prediction_through_the_launchers(data_dir, tmp_path):
    """launch/enroll.py --method=multi_task_head fits and saves a head; launch/predict.py uses it;
    a missing flag, a head of another model and a file that is no head are refused by name."""
    from psm_jax import personalise

    for model in ("multi_task", "universal"):
        loop.train_and_evaluate(_config(model, data_dir), tmp_path / model)
    images_dir, csv = _viewer_files(data_dir, tmp_path)
    enroll = (
        "--method=multi_task_head",
        f"--images_dir={images_dir}",
        f"--fixations={csv}",
        f"--output={tmp_path / 'head'}",  # no suffix: the head goes to head.npz, and says so
        "--steps=20",
    )
    refused = _run_launcher("enroll.py", *enroll)
    assert refused.returncode != 0 and "--multi_task_workdir" in refused.stderr
    enrolled = _run_launcher(
        "enroll.py",
        *enroll,
        f"--multi_task_workdir={tmp_path / 'multi_task'}",
        f"--universal={tmp_path / 'universal'}",
    )
    assert enrolled.returncode == 0, enrolled.stderr[-2000:]
    assert "Multi-task head fitted to 3" in enrolled.stdout
    assert f"-> {tmp_path / 'head.npz'}" in enrolled.stdout

    head = personalise.load_head(tmp_path / "multi_task", tmp_path / "head.npz")
    adapted = personalise._head_arrays(head)
    trained, _, _ = loop.restore_model(tmp_path / "multi_task")
    mean_head = {
        k: v.mean(axis=0, keepdims=True) for k, v in personalise._head_arrays(trained).items()
    }
    assert adapted.keys() == mean_head.keys()
    # 20 SGD steps moved the head away from its start, the mean of the trained heads.
    assert any(not np.allclose(adapted[k], mean_head[k]) for k in adapted)

    predicted = _run_launcher(
        "predict.py",
        f"--multi_task={tmp_path / 'multi_task'}",
        f"--head={tmp_path / 'head.npz'}",
        f"--universal={tmp_path / 'universal'}",
        f"--image={images_dir / 'new_0.png'}",
        f"--output={tmp_path / 'alice'}",
    )
    assert predicted.returncode == 0, predicted.stderr[-2000:]
    psm = np.load(tmp_path / "alice.npy")
    _, usm, expected = personalise.predict_with_head(
        tmp_path / "multi_task",
        tmp_path / "head.npz",
        tmp_path / "universal",
        images_dir / "new_0.png",
    )
    np.testing.assert_allclose(psm, expected, atol=1e-6)
    assert not np.allclose(psm, usm)  # the head's discrepancy changed the universal map
    assert (tmp_path / "alice.png").exists() and (tmp_path / "alice_usm.png").exists()

    np.savez(tmp_path / "wrong.npz", kernel=np.zeros(3))
    with pytest.raises(ValueError, match="wrong.npz is not a head"):
        personalise.load_head(tmp_path / "multi_task", tmp_path / "wrong.npz")
    np.save(tmp_path / "embedding.npy", np.zeros(8))
    with pytest.raises(ValueError, match="embedding.npy is not a .npz head"):
        personalise.load_head(tmp_path / "multi_task", tmp_path / "embedding.npy")
    with pytest.raises(ValueError, match="Cannot read the head .*missing.npz"):
        personalise.load_head(tmp_path / "multi_task", tmp_path / "missing.npz")
