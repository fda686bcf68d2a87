"""The training loop: every model trains, resumes exactly, stops on non-finite losses, fine-tunes
from another workdir; launch/train.py trains any model."""

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
from conftest import TINY
from conftest import tiny_config as _config
from flax import nnx

from psm_jax import registry
from psm_jax.data import pipeline
from psm_jax.train import checkpoint, loop

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def data_dir(tiny_data_dir):
    return tiny_data_dir


@pytest.fixture(scope="module")
def encoder_workdir(tiny_workdirs):
    return tiny_workdirs["embedding"]


def _params(workdir, which="latest"):
    model, _, _ = checkpoint.restore_model(workdir, which)
    return [np.asarray(leaf) for leaf in jax.tree.leaves(nnx.state(model, nnx.Param))]


@pytest.mark.slow
def test_the_log_ratio_psm_network_trains_and_records_its_form(data_dir, encoder_workdir, tmp_path):
    """`config.composition="log_ratio"`: the loss is the KLD of USM x exp(s D) (finite, > 0),
    and the restored model says how to compose it; an unknown form is refused."""
    from psm_jax import inference

    config = _config("psm_network", data_dir, encoder_workdir=encoder_workdir)
    config.composition = "log_ratio"
    config.num_steps = 8
    measurements = loop.train_and_evaluate(config, tmp_path)
    assert np.isfinite(measurements["loss"]) and measurements["loss"] > 0
    assert inference.restore(tmp_path).composition == ("log_ratio", 2.0)
    config.composition = "product"
    with pytest.raises(ValueError, match="composition"):
        loop.train_and_evaluate(config, tmp_path / "bad")
    config.composition, config.composed_kld_weight = "log_ratio", 0.03
    with pytest.raises(ValueError, match="composed_kld_weight"):
        loop.train_and_evaluate(config, tmp_path / "bad")
    config.composition, config.composed_kld_weight = "log_ratio", 0.0
    config.log_ratio_scale = 0.0
    with pytest.raises(ValueError, match="log_ratio_scale"):
        loop.train_and_evaluate(config, tmp_path / "bad")
    # The universal model predicts no discrepancy: the setting is refused.
    other = _config("universal", data_dir)
    other.composition = "log_ratio"
    with pytest.raises(ValueError, match="discrepancy model's"):
        loop.train_and_evaluate(other, tmp_path / "bad_universal")


@pytest.mark.slow
@pytest.mark.parametrize("model", ["multi_task", "per_observer"])
def test_a_baseline_trained_alike_learns_the_log_ratio_on_kld(model, data_dir, tmp_path):
    """Item 5 of issue 37: the multi-task CNN and the per-observer networks take the PSM
    network's log-ratio composition, trained on the composed map's KLD; the restored model
    composes that way and reads the PSM (the KLD's target)."""
    from psm_jax import inference

    config = _config(model, data_dir)
    config.composition = "log_ratio"
    config.num_steps = 8
    measurements = loop.train_and_evaluate(config, tmp_path)
    assert np.isfinite(measurements["loss"]) and measurements["loss"] > 0
    restored = inference.restore(tmp_path)
    assert restored.composition == ("log_ratio", 2.0)
    assert registry.get(model).batch_keys(config)[-1] == "psm"


@pytest.mark.slow
@pytest.mark.parametrize("model", ["psm_network", "multi_task", "per_observer", "universal"])
def test_every_model_trains_checkpoints_and_logs(model, data_dir, encoder_workdir, tmp_path):
    config = _config(model, data_dir, encoder_workdir=encoder_workdir)
    if model == "per_observer":  # the quick configs use "strohm"; this checks the other one
        config.architecture = "xu"
        config.network = {"trunk_widths": (4, 8, 8, 8), "head_widths": (8, 8, 4)}
    if model == "psm_network":  # the papers' additive form with the optional composed-map loss
        config.composition = "additive"
        config.composed_kld_weight = 0.03
    measurements = loop.train_and_evaluate(config, tmp_path)
    assert np.isfinite(measurements["loss"]) and np.isfinite(measurements["validation_loss"])
    if model == "psm_network":
        assert np.isfinite(measurements["composed_kld"]) and measurements["composed_kld"] > 0
        # How alive each ReLU layer is, logged beside the validation loss.
        for layer in ("trunk_0", "dynamic", "head"):
            assert 0.0 <= measurements[f"live_units/{layer}"] <= 1.0
            assert 0.0 <= measurements[f"live_channels/{layer}"] <= 1.0
    assert checkpoint.load_config(tmp_path).model == model
    assert list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))
    steps = sorted(int(p.name) for p in (tmp_path / "checkpoints").iterdir() if p.name.isdigit())
    assert steps[-1] == config.num_steps  # the latest is always kept, beside the best
    assert len(steps) <= 2


@pytest.mark.slow
def test_encoder_embeddings_feed_the_pool(encoder_workdir, data_dir):
    config = _config("psm_network", data_dir, encoder_workdir=encoder_workdir)
    source, metadata = pipeline.open_split(TINY, "train", data_dir)
    encoder, _, _ = checkpoint.restore_model(encoder_workdir)
    pool = loop.embedding_pool(config, source, metadata, encoder)
    assert pool.shape == (len(metadata.observers("train")), config.embedding_pool_size, 8)
    np.testing.assert_allclose(np.linalg.norm(pool, axis=-1), 1.0, rtol=1e-5)
    config.m = 32  # tiny has 24 training images: a set of 32 cannot be drawn
    with pytest.raises(ValueError, match="--config.m=32 needs at least 64 training images"):
        loop.embedding_pool(config, source, metadata, encoder)


@pytest.mark.slow
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
        str(ROOT / "launch" / "train.py"),
        "--config=psm_jax/configs/synthetic.py:embedding,tiny",
        f"--workdir={workdir}",
        f"--config.data_dir={data_dir}",
        f"--config.num_steps={num_steps}",
        "--config.checkpoint_every=4",
        "--config.log_every=4",
    ]
    env = dict(os.environ, JAX_DEFAULT_PRNG_IMPL="rbg")
    return subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)


@pytest.mark.slow
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


@pytest.mark.slow
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


@pytest.mark.slow
def test_fine_tuning_starts_from_the_pretrained_workdir(data_dir, tiny_workdirs, tmp_path):
    """config.init_from copies the pretrained parameters (a zero learning rate keeps them); a
    workdir of another network or model is refused by name."""
    pretrained_workdir = tiny_workdirs["universal"]
    frozen = _config("universal", data_dir, init_from=pretrained_workdir, learning_rate=0.0, seed=1)
    frozen.weight_decay = 0.0  # seed 1: a fresh initialisation would differ
    loop.train_and_evaluate(frozen, tmp_path / "frozen")
    pretrained = checkpoint.restore_model(pretrained_workdir)[0]
    copied = checkpoint.restore_model(tmp_path / "frozen", "latest")[0]
    for a, b in zip(
        jax.tree.leaves(nnx.state(pretrained, nnx.Param)),
        jax.tree.leaves(nnx.state(copied, nnx.Param)),
        strict=True,
    ):
        np.testing.assert_array_equal(a, b)

    wrong = _config("universal", data_dir, init_from=pretrained_workdir)
    wrong.network = {"widths": (4, 8, 8, 16)}
    with pytest.raises(ValueError, match="its network differs"):
        loop.train_and_evaluate(wrong, tmp_path / "wrong")
    other = _config("multi_task", data_dir, init_from=pretrained_workdir)
    with pytest.raises(ValueError, match="holds a 'universal' model"):
        loop.train_and_evaluate(other, tmp_path / "other")


def test_launch_train_names_an_unknown_model(tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "launch" / "train.py"),
            "--config=psm_jax/configs/synthetic.py:deepgaze,tiny",
            f"--workdir={tmp_path}",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0
    assert "Unknown model 'deepgaze'" in result.stderr


@pytest.mark.slow
def test_launch_train_sets_any_network_field_and_trains_in_bfloat16(data_dir, tmp_path):
    """`--config.network.<field>` works for an architecture field the config file does not set
    (every config file fills the network with all of them): the encoder trains computing in bf16,
    its parameters and recorded config as asked; an unknown field or a bad value is one message
    naming the flag."""

    def launch(*extra):
        return subprocess.run(
            [
                sys.executable,
                str(ROOT / "launch" / "train.py"),
                "--config=psm_jax/configs/synthetic.py:embedding,tiny",
                f"--workdir={tmp_path / 'run'}",
                f"--config.data_dir={data_dir}",
                "--config.num_steps=2",
                "--config.checkpoint_every=2",
                *extra,
            ],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=300,
        )

    for flag, message in [
        ("--config.network.compute_dtype=float16", "compute_dtype must be one of"),
        ("--config.network.widths_typo=(8,)", "--config.network.widths_typo:"),
    ]:
        result = launch(flag)
        assert result.returncode == 1 and message in result.stderr, result.stderr[-2000:]
        assert "Traceback" not in result.stderr
    result = launch("--config.network.compute_dtype=bfloat16")
    assert result.returncode == 0, result.stderr[-3000:]
    config = checkpoint.load_config(tmp_path / "run")
    assert config.network.compute_dtype == "bfloat16"
    assert config.network.input_map == "discrepancy"  # the config file's own fields stay
    params = _params(tmp_path / "run")
    assert all(p.dtype == np.float32 and np.isfinite(p).all() for p in params)


@pytest.mark.slow
def test_a_second_run_in_the_same_workdir_is_refused(data_dir, tmp_path):
    config = _config("universal", data_dir)
    with checkpoint.workdir_lock(tmp_path):  # as another process training there would hold it
        with pytest.raises(RuntimeError, match="Another run is training in"):
            loop.train_and_evaluate(config, tmp_path)
    assert loop.train_and_evaluate(config, tmp_path)["validation_loss"] > 0  # free again


@pytest.mark.slow
def test_a_restart_with_another_config_is_refused_and_the_recorded_config_kept(data_dir, tmp_path):
    import json

    first = _config("universal", data_dir)
    learning_rate = first.learning_rate  # the tiny universal model's (Adam 3e-3)
    loop.train_and_evaluate(first, tmp_path)
    recorded = (tmp_path / "config.json").read_text()
    # A finished run is left alone, whatever the config says (nothing to train).
    reached = loop.train_and_evaluate(_config("universal", data_dir, seed=5), tmp_path)
    assert reached["last_step"] == first.num_steps and reached["last_validation_loss"] > 0
    assert reached["checkpoints"] == str(tmp_path.absolute() / "checkpoints")
    changed = _config("universal", data_dir, learning_rate=0.5, batch_size=4, num_steps=9)
    expected = f"batch_size: 8 -> 4; learning_rate: {learning_rate:g} -> 0.5"
    with pytest.raises(ValueError, match=expected):
        loop.train_and_evaluate(changed, tmp_path)
    assert (tmp_path / "config.json").read_text() == recorded
    longer = _config("universal", data_dir, num_steps=9)  # a longer schedule resumes
    assert loop.train_and_evaluate(longer, tmp_path)["validation_loss"] > 0
    changed.allow_config_change = True
    changed.num_steps = 12
    loop.train_and_evaluate(changed, tmp_path)
    assert json.loads((tmp_path / "config.json").read_text())["learning_rate"] == 0.5
    assert json.loads((tmp_path / "config.9.json").read_text())["learning_rate"] == learning_rate


@pytest.mark.slow
def test_paths_are_recorded_absolute_so_the_workdir_works_from_anywhere(
    data_dir, tmp_path, monkeypatch
):
    data = Path(data_dir)
    monkeypatch.chdir(data.parent)
    loop.train_and_evaluate(_config("universal", data.name, num_steps=2), tmp_path / "run")
    recorded = checkpoint.load_config(tmp_path / "run")
    assert recorded.data_dir == str(data.absolute())
    monkeypatch.chdir(tmp_path)  # evaluating from elsewhere finds the records
    source, _ = pipeline.open_split(recorded.dataset, "test", recorded.data_dir)
    assert len(source) > 0
    # The same run given by a relative path again is no config change: it resumes.
    monkeypatch.chdir(data.parent)
    longer = _config("universal", data.name, num_steps=3)
    assert loop.train_and_evaluate(longer, tmp_path / "run")["validation_loss"] > 0


# Orbax's reads of the damaged files leave exceptions in futures nobody awaits: expected here.
@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
@pytest.mark.parametrize(
    "damage", ["truncated array files", "deleted iterator state", "truncated metrics"]
)
def test_a_corrupt_latest_checkpoint_is_set_aside_and_the_run_resumes_from_an_older_one(
    damage, data_dir, tmp_path, caplog
):
    import shutil

    config = _config("universal", data_dir, num_steps=6, checkpoint_every=2, keep_best=3)
    loop.train_and_evaluate(config, tmp_path)
    latest = tmp_path / "checkpoints" / "6"
    if damage in ("truncated array files", "truncated metrics"):
        if damage == "truncated metrics":
            metrics = latest / "metrics" / "metrics"
            metrics.write_text(metrics.read_text()[:5])
        else:
            for array in (latest / "state" / "ocdbt.process_0" / "d").iterdir():
                array.write_bytes(array.read_bytes()[:100])
        # Evaluation skips it too (without moving anything: it does not change a workdir).
        assert checkpoint.restore_model(tmp_path, "latest")[2] == 4
        assert latest.exists()
    else:
        shutil.rmtree(latest / "data")
    with caplog.at_level("WARNING"):
        config.num_steps = 8
        assert loop.train_and_evaluate(config, tmp_path)["validation_loss"] > 0
    assert "Checkpoint step 6" in caplog.text and "resuming from step 4" in caplog.text
    assert (tmp_path / "checkpoints_corrupt" / "6" / "state").is_dir()  # kept, not deleted
    steps = sorted(int(p.name) for p in (tmp_path / "checkpoints").iterdir() if p.name.isdigit())
    assert steps[-1] == 8 and 6 in steps  # step 6 trained and saved again


@pytest.mark.slow
def test_when_no_checkpoint_restores_nothing_is_moved(data_dir, tmp_path):
    config = _config("universal", data_dir, num_steps=2, checkpoint_every=2)
    loop.train_and_evaluate(config, tmp_path)
    (tmp_path / "checkpoints" / "2" / "state" / "_METADATA").unlink()
    config.num_steps = 4
    with pytest.raises(RuntimeError, match=r"No checkpoint in .*checkpoints restores \(step 2: "):
        loop.train_and_evaluate(config, tmp_path)
    assert (tmp_path / "checkpoints" / "2").is_dir()
    assert not (tmp_path / "checkpoints_corrupt").exists()


@pytest.mark.slow
def test_an_encoder_on_combined_datasets_refuses_external_usms(data_dir):
    """`combine_with` reads every dataset's ground-truth USMs: with the `predicted` option's
    external USMs the encoder would train on a mix, so the stream is refused, naming both."""
    from psm_jax.train import tasks

    config = _config("embedding", data_dir, combine_with=TINY)
    config.usm = "external"
    config.external_usm_dir = "/runs/tiny/predicted_usm"
    source, metadata = pipeline.open_split(config.dataset, "train", data_dir)
    task = tasks.make_task(config, metadata)
    with pytest.raises(ValueError, match=r"combine_with .* config.usm='external' \(/runs/tiny"):
        task.stream(source, seed=0, shuffle=True, num_epochs=1)


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("num_steps", 0, "--config.num_steps=0: must be a whole number >= 1"),
        ("num_steps", -5, "--config.num_steps=-5: must be a whole number >= 1"),
        ("batch_size", 0, "--config.batch_size=0: must be a whole number >= 1"),
        ("checkpoint_every", 0, "--config.checkpoint_every=0: must be a whole number >= 1"),
        ("log_every", 0, "--config.log_every=0: must be a whole number >= 1"),
        ("eval_batches", 0, "--config.eval_batches=0: must be a whole number >= 1"),
        ("learning_rate", float("nan"), "--config.learning_rate=nan: must be a finite number >= 0"),
        ("learning_rate", float("inf"), "--config.learning_rate=inf: must be a finite number >= 0"),
        ("learning_rate", -0.1, "--config.learning_rate=-0.1: must be a finite number >= 0"),
        ("momentum", 1.5, r"--config.momentum=1.5: must be a finite number in \[0, 1\]"),
        ("weight_decay", float("nan"), "--config.weight_decay=nan: must be a finite number >= 0"),
    ],
)
def test_a_number_out_of_range_is_refused_naming_its_flag_before_the_workdir_is_touched(
    field, value, message, tmp_path
):
    """Issue 36 case 5/15: num_steps=0 used to exit 0 ("already holds step None") writing nothing,
    learning_rate=nan trained, batch_size=0 or checkpoint_every=0 ended in a ZeroDivisionError."""
    config = _config("universal", str(tmp_path / "no_data"), **{field: value})
    with pytest.raises(ValueError, match=message):
        loop.train_and_evaluate(config, tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_the_main_job_checks_each_models_numbers_before_anything_trains():
    from psm_jax.configs import main as main_configs

    config = main_configs.get_config()
    config.models.embedding.num_steps = 0
    with pytest.raises(ValueError, match="--config.models.embedding: --config.num_steps=0: must"):
        main_configs.check(config)


def test_a_non_finite_loss_ends_in_the_launchers_one_line():
    """NonFiniteError is what the runner turns into one line (launch/runner.py USER_ERRORS)."""
    sys.path.insert(0, str(ROOT / "launch"))
    import runner

    assert issubclass(loop.NonFiniteError, runner.USER_ERRORS)


def _small_checkpoints(workdir, steps):
    """Checkpoints of a small state at `steps` (validation loss 1/step: the latest is the best),
    saved as the loop saves them; returns a state shaped like theirs."""
    mgr = checkpoint.manager(workdir, keep_best=len(steps))
    for step in steps:
        state = {"w": np.full(3, float(step), np.float32)}
        checkpoint.save(mgr, step, state, {"position": step}, validation_loss=1.0 / step)
    mgr.wait_until_finished()
    return {"w": np.zeros(3, np.float32)}


def test_a_truncated_metrics_file_is_set_aside_and_the_run_resumes_from_an_older_step(
    tmp_path, caplog
):
    """Issue 36 case 6: a truncated checkpoints/<step>/metrics/metrics stopped resuming (and
    evaluation) with "Unterminated string starting at: line 1 column 2", naming no file."""
    like = _small_checkpoints(tmp_path, [2, 4, 6])
    metrics = tmp_path / "checkpoints" / "6" / "metrics" / "metrics"
    metrics.write_text(metrics.read_text()[:5])
    with caplog.at_level("WARNING"):
        mgr = checkpoint.manager(tmp_path, keep_best=3)
        state, iterator_state, step = checkpoint.restore_newest_intact(mgr, tmp_path, like)
    assert step == 4 and iterator_state == {"position": 4} and state["w"][0] == 4
    assert str(metrics) in caplog.text and "resuming from step 4" in caplog.text
    assert (tmp_path / "checkpoints_corrupt" / "6" / "metrics" / "metrics").exists()  # kept
    assert mgr.latest_step() == 4


def test_a_truncated_metrics_file_of_an_older_step_is_named_and_set_aside_too(tmp_path, caplog):
    like = _small_checkpoints(tmp_path, [2, 4, 6])
    metrics = tmp_path / "checkpoints" / "2" / "metrics" / "metrics"
    metrics.write_text("")
    with caplog.at_level("WARNING"):
        mgr = checkpoint.manager(tmp_path, keep_best=3)
        assert checkpoint.restore_newest_intact(mgr, tmp_path, like)[2] == 6
    assert str(metrics) in caplog.text
    assert (tmp_path / "checkpoints_corrupt" / "2").is_dir()
    assert mgr.all_steps() == [4, 6]


def test_evaluation_reads_past_a_truncated_metrics_file_without_moving_it(tmp_path, caplog):
    _small_checkpoints(tmp_path, [2, 4, 6])
    metrics = tmp_path / "checkpoints" / "6" / "metrics" / "metrics"
    metrics.write_text(metrics.read_text()[:5])
    with caplog.at_level("WARNING"):
        mgr = checkpoint.manager(tmp_path, keep_best=3)
        assert mgr.best_step() == 4  # step 6's loss is unknown
    assert str(metrics) in caplog.text
    assert checkpoint.damaged_metrics(tmp_path).keys() == {6} and metrics.exists()


def test_checkpoint_saved_is_printed_once_the_step_is_on_disk(data_dir, tmp_path, monkeypatch):
    """Issue 36 case 8: "step N: ... checkpoint saved" was printed while the asynchronous save was
    still writing, so a kill right after it lost step N."""
    on_disk_when_printed = {}
    printed = loop.tqdm.write

    def write(text, *args, **kwargs):
        if "checkpoint saved" in text:
            step = int(text.split()[1].rstrip(":"))
            on_disk_when_printed[step] = (tmp_path / "checkpoints" / str(step)).is_dir()
        printed(text, *args, **kwargs)

    monkeypatch.setattr(loop.tqdm, "write", write)
    config = _config("universal", data_dir, num_steps=6, checkpoint_every=1, keep_best=6)
    loop.train_and_evaluate(config, tmp_path)
    assert on_disk_when_printed == {step: True for step in range(1, 7)}


@pytest.mark.parametrize("signum, status", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_sigterm_or_ctrl_c_saves_a_checkpoint_and_stops_the_run(
    signum, status, data_dir, tmp_path, monkeypatch
):
    """Issue 36 case 7: SIGTERM (a scheduler, `docker stop`) killed the run with 143, no message
    and no checkpoint; Ctrl-C gave a KeyboardInterrupt traceback. Here the signal arrives during
    step 3 (as its loss is logged); the run finishes that step and its save, stops, and restores
    the handlers it replaced."""
    handlers = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
    logged = loop._write

    def write(writer, step, values):
        logged(writer, step, values)
        if step == 3 and "loss" in values:
            os.kill(os.getpid(), signum)

    monkeypatch.setattr(loop, "_write", write)
    config = _config("universal", data_dir, num_steps=50, checkpoint_every=3, log_every=1)
    with pytest.raises(loop.Stopped) as stopped:
        loop.train_and_evaluate(config, tmp_path)
    name = signal.Signals(signum).name
    assert str(stopped.value) == (
        f"stopped by {name} at step 3: checkpoint saved in {tmp_path / 'checkpoints'}; "
        "run the same command to resume."
    )
    assert stopped.value.exit_status == status
    assert checkpoint.manager(tmp_path).latest_step() == 3
    assert {s: signal.getsignal(s) for s in handlers} == handlers


@pytest.mark.slow
def test_a_run_sent_sigterm_saves_says_so_exits_143_and_resumes_there(data_dir, tmp_path):
    log_path = tmp_path / "log.txt"
    log = log_path.open("wb")
    stopped = _launch(tmp_path / "run", data_dir, 4000, log)
    deadline = time.time() + 300
    while not (tmp_path / "run" / "checkpoints" / "4").is_dir() and stopped.poll() is None:
        assert time.time() < deadline
        time.sleep(0.05)
    stopped.send_signal(signal.SIGTERM)
    assert stopped.wait(timeout=120) == 143, log_path.read_text(errors="replace")[-3000:]
    text = log_path.read_text(errors="replace")
    found = re.findall(
        r"train\.py: stopped by SIGTERM at step (\d+): checkpoint saved in (.*); "
        r"run the same command to resume\.",
        text,
    )
    assert found and "Traceback" not in text, text[-3000:]
    step = int(found[-1][0])
    assert checkpoint.manager(tmp_path / "run").latest_step() == step
    resumed = _launch(tmp_path / "run", data_dir, step + 4, log)
    assert resumed.wait(timeout=300) == 0
    assert f"from step {step}." in log_path.read_text(errors="replace")


def test_a_signal_between_checkpoints_saves_the_step_it_stops_at(data_dir, tmp_path, monkeypatch):
    logged = loop._write

    def write(writer, step, values):
        logged(writer, step, values)
        if step == 2 and "loss" in values:
            os.kill(os.getpid(), signal.SIGTERM)

    monkeypatch.setattr(loop, "_write", write)
    config = _config("universal", data_dir, num_steps=50, checkpoint_every=5, log_every=1)
    with pytest.raises(loop.Stopped, match="at step 2: checkpoint saved"):
        loop.train_and_evaluate(config, tmp_path)
    assert checkpoint.manager(tmp_path).all_steps() == [2]


def _disk_full(*args, **kwargs):
    import errno

    raise OSError(errno.ENOSPC, "No space left on device")


def test_a_full_disk_writing_config_json_names_the_file(data_dir, tmp_path, monkeypatch):
    """Issue 36 case 17: "[Errno 28] No space left on device" named no file."""
    config = _config("universal", data_dir)
    monkeypatch.setattr(Path, "write_text", _disk_full)
    with pytest.raises(
        OSError, match=f"disk is full: no space left to write {tmp_path}/config.json"
    ):
        checkpoint.save_config(tmp_path, config)


def test_a_full_disk_while_saving_a_checkpoint_names_the_workdir(data_dir, tmp_path, monkeypatch):
    """Orbax writes in a background thread: its ENOSPC reaches the loop when it waits."""
    from orbax.checkpoint._src.handlers import json_checkpoint_handler

    async def full(*args, **kwargs):
        _disk_full()

    monkeypatch.setattr(json_checkpoint_handler.JsonCheckpointHandler, "_save_fn", full)
    config = _config("universal", data_dir, num_steps=2, checkpoint_every=1)
    with pytest.raises(OSError, match=f"disk is full: no space left to write in {tmp_path}"):
        loop.train_and_evaluate(config, tmp_path)
