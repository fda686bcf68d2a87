"""`train_and_evaluate(config, workdir)`: the one training entry point, for every model.

The loop: open the dataset, build the task's model and optimiser, restore the latest checkpoint of
`workdir` if there is one (parameters, optimiser state, step, RNG state and the grain iterator
state, so a restarted run continues exactly where the killed one stopped), then step the
data-parallel train step (`psm_jax.train.step`) with a progress bar, log to the console and to
TensorBoard every `log_every` steps, and every `checkpoint_every` steps (and at the end) measure
the validation loss and save; for the PSM networks it also logs how alive each ReLU layer is on the
validation batches (`psm_jax.registry.relu_activity`: a dying layer shows as its live fraction
falling to 0). A non-finite loss or gradient stops the run with the step named;
the checkpoints saved before it stay. SIGTERM (a scheduler, `docker stop`) or SIGINT (Ctrl-C)
during the steps ends the step under way, saves its checkpoint, waits until it is on disk and
stops the run with `Stopped` (a second signal stops at once, the default way).
"""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
import time
from pathlib import Path

import jax
import ml_collections
import numpy as np
from flax import nnx
from tqdm import tqdm

from psm_jax import disk, registry
from psm_jax.configs import base
from psm_jax.data import pipeline
from psm_jax.models import embedding as embedding_lib
from psm_jax.train import checkpoint, tasks
from psm_jax.train import step as train_step


class NonFiniteError(FloatingPointError, RuntimeError):
    """Raised when a train step produced a NaN or infinite loss or gradient. A RuntimeError too,
    so that the launchers end it in its one-line message (launch/runner.py)."""


class Stopped(RuntimeError):
    """The run was stopped by SIGTERM or SIGINT after saving the step it had reached. The
    launchers end it in its one line with `exit_status`: 128 + the signal (143 for SIGTERM, 130
    for SIGINT), what shells and schedulers read as "stopped by that signal"."""

    def __init__(self, message: str, exit_status: int):
        super().__init__(message)
        self.exit_status = exit_status


STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


@contextlib.contextmanager
def _stop_requests():
    """Yields a list that receives the signal's number when SIGTERM or SIGINT arrives, for the
    loop to stop at the next step boundary; the handlers in place before are restored after. A
    second signal stops at once through the previous handler. A signal the process ignores (SIGINT
    in a shell's background job) stays ignored; outside the main thread nothing is installed."""
    requested: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield requested
        return
    previous = {sig: signal.getsignal(sig) for sig in STOP_SIGNALS}

    def handler(signum, frame):
        if requested:  # the second one: stop now
            for sig, old in previous.items():
                signal.signal(sig, old)
            signal.raise_signal(signum)
            return
        requested.append(signum)
        sys.stderr.write(
            f"\n{signal.Signals(signum).name} received: saving a checkpoint at the end of this "
            "step, then stopping (send it again to stop at once, without saving).\n"
        )

    for sig, old in previous.items():
        if old is not signal.SIG_IGN:
            signal.signal(sig, handler)
    try:
        yield requested
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def _rngs(config) -> nnx.Rngs:
    return nnx.Rngs(jax.random.key(config.seed, impl=config.prng_impl or None))


def _encoder_embedding_size(config) -> int:
    encoder_config = checkpoint.load_config(config.encoder_workdir)
    return registry.get("embedding").architecture(encoder_config).embedding_size


def embedding_pool(
    config: ml_collections.ConfigDict, source, metadata, encoder: nnx.Module
) -> np.ndarray:
    """(training observers, pool size, d): embeddings of random m-pair sets of each training
    observer on training images, by the trained `encoder` (Strohm et al.: 100 per observer). m is
    this config's `m` (the m observers are embedded with when evaluated), which need not be the m
    the encoder was trained with."""
    if len(source) < 2 * config.m:
        # A set is drawn from a window of 2 m images: with fewer, no set exists and the pool
        # would wait forever.
        raise ValueError(
            f"--config.m={config.m} needs at least {2 * config.m} training images of "
            f"{config.dataset}; it has {len(source)}. Lower --config.m."
        )
    observers = len(metadata.observers("train"))
    pool_size = config.embedding_pool_size
    # The USMs the encoder trained with: an encoder of the "predicted" option reads its external
    # USMs here too, not the ground truth.
    encoder_workdir = config.get("encoder_workdir")
    encoder_config = checkpoint.load_config(encoder_workdir) if encoder_workdir else {}
    external_usm_dir = (
        encoder_config.external_usm_dir if encoder_config.get("usm") == "external" else None
    )
    stream = pipeline.embedding_dataset(
        source,
        metadata,
        batch_size=16,
        m=config.m,
        seed=config.seed + 7,
        sets_per_observer=1,
        drop_remainder=False,
        external_usm_dir=external_usm_dir,
    )
    with tqdm(total=observers * pool_size, desc="embedding pool", unit="set") as progress:
        return embedding_lib.collect_embeddings(encoder, stream, observers, pool_size, progress)


EMBEDDING_INPUTS = ("encoder", "none")
"""What conditions the PSM network (`config.embedding_input`, psm_jax/configs/base.py)."""


def no_embedding(config: ml_collections.ConfigDict) -> bool:
    """Whether a PSM network's config trains the no-embedding control (`embedding_input="none"`);
    a ValueError naming the flag for an unknown value."""
    value = config.get("embedding_input", "encoder")
    if value not in EMBEDDING_INPUTS:
        raise ValueError(
            f"--config.embedding_input={value!r}: must be one of {', '.join(EMBEDDING_INPUTS)}."
        )
    return value == "none"


def constant_embedding(size: int) -> np.ndarray:
    """The no-embedding control's one embedding: the first unit vector of `size` dimensions."""
    vector = np.zeros(size, np.float32)
    vector[0] = 1.0
    return vector


def constant_embedding_pool(config: ml_collections.ConfigDict, metadata) -> np.ndarray:
    """(training observers, pool size, d): `constant_embedding` for every observer and draw."""
    size = registry.get(config.model).architecture(config).embedding_size
    observers = len(metadata.observers("train"))
    return np.broadcast_to(
        constant_embedding(size), (observers, config.embedding_pool_size, size)
    ).copy()


def _initialise_from(model: nnx.Module, config) -> None:
    """Copies the parameters and batch statistics of `config.init_from`'s best checkpoint into
    `model` (fine-tuning); the optimiser starts afresh."""
    pretrained_config = checkpoint.load_config(config.init_from)
    if pretrained_config.model != config.model:
        raise ValueError(
            f"--config.init_from={config.init_from} holds a {pretrained_config.model!r} model; "
            f"this run trains {config.model!r}."
        )
    pretrained, _, _ = checkpoint.restore_model(config.init_from)
    which = nnx.Any(nnx.Param, nnx.BatchStat)
    source, target = nnx.state(pretrained, which), nnx.state(model, which)

    def shapes(state):
        return jax.tree.map(lambda leaf: leaf.shape, state.to_pure_dict())

    if shapes(source) != shapes(target):
        raise ValueError(
            f"--config.init_from={config.init_from}: its network differs from this run's "
            "(--config.network / --config.architecture, or the number of observers)."
        )
    nnx.update(model, source)
    print(f"Initialised from the best checkpoint of {config.init_from}.", flush=True)


def _frozen_features(config, source) -> dict[str, dict[str, np.ndarray]] | None:
    """A frozen backbone's features of every training and validation record, for a model that
    reads them instead of images (`registry.ModelSpec.frozen_features`); None for the others.
    Computed once per run (also when it resumes): the backbone's weights are fixed."""
    extract = registry.get(config.model).frozen_features(config)
    if extract is None:
        return None
    validation, _ = pipeline.open_split(config.dataset, "validation", config.data_dir)
    features = {}
    for split, split_source in (("train", source), ("validation", validation)):
        with tqdm(
            total=len(split_source), desc=f"backbone features ({split})", unit="image"
        ) as bar:
            features[split] = extract(split_source, progress=bar)
    return features


def _record_dataset_facts(config: ml_collections.ConfigDict, metadata) -> None:
    """Writes into the config what restoring the trained model needs without the dataset: the
    number of training observers (per-observer models), the working size, and the PSM network's
    embedding size (so that it restores without the encoder's workdir)."""
    with config.unlocked():
        config.num_observers = len(metadata.observers("train"))
        config.working_size = tuple(metadata.working_size)
        if config.model == "psm_network" and "embedding_size" not in config.network:
            config.network.embedding_size = _encoder_embedding_size(config)


def _steps_per_epoch(config, metadata, num_records: int) -> int:
    pairs = num_records * len(metadata.observers("train"))
    return max(1, pairs // config.batch_size)


def _validation_batches(task: tasks.Task, config, mesh):
    source, _ = pipeline.open_split(config.dataset, "validation", config.data_dir)
    stream = task.stream(
        source, seed=config.seed + 1000, shuffle=False, num_epochs=None, split="validation"
    )
    iterator = iter(stream)
    return [
        train_step.global_batch(task.prepare(next(iterator), index, train=False), mesh)
        for index in range(config.eval_batches)
    ]


def train_and_evaluate(
    config: ml_collections.ConfigDict, workdir: str | Path, *, encoder: nnx.Module | None = None
) -> dict:
    """Trains `config.model` as configured, checkpointing into `workdir`; returns the last
    measurements (including the last validation loss), or for a workdir that holds the last step
    already, what it reached (`checkpoint.reached`).

    Args:
      config: a training config (`psm_jax.configs`).
      workdir: where checkpoints, config.json and logs go; a run there resumes.
      encoder: the PSM network's trained encoder, if the caller has it restored already (the
        main job); otherwise it is restored from `config.encoder_workdir`.
    """
    base.check_numbers(config)  # before the workdir is touched
    workdir = Path(workdir)
    # Checkpoints, TensorBoard logs, config.json: a full disk names the workdir (Orbax's own
    # background writes included: their error reaches the loop where it waits for them).
    full_disk = disk.writing(
        workdir.absolute(),
        folder=True,
        what_to_do="train in a --workdir on another disk (the checkpoints saved before stay)",
    )
    with full_disk, checkpoint.workdir_lock(workdir, enabled=jax.process_index() == 0):
        return _train_and_evaluate(config, workdir, encoder)


def _train_and_evaluate(config, workdir: Path, encoder) -> dict:
    is_main = jax.process_index() == 0
    mgr = checkpoint.manager(workdir, config.keep_best)
    if (mgr.latest_step() or 0) >= config.num_steps:
        # Nothing to train: the workdir and its config.json stay as they are.
        if is_main:
            print(
                f"{workdir} already holds step {mgr.latest_step()} of {config.num_steps}: nothing "
                "to train (a larger --config.num_steps trains on from it)."
            )
        return checkpoint.reached(workdir, mgr)
    config = checkpoint.resolve_paths(config)  # recorded absolute: usable from anywhere
    source, metadata = pipeline.open_split(config.dataset, "train", config.data_dir)
    _record_dataset_facts(config, metadata)
    if is_main:
        checkpoint.save_config(workdir, config)
    pool = None
    if registry.get(config.model).conditioned_on == "embedding" and no_embedding(config):
        pool = constant_embedding_pool(config, metadata)
    elif registry.get(config.model).conditioned_on == "embedding":
        if encoder is None:
            if not config.encoder_workdir:
                raise ValueError(
                    "config.encoder_workdir is empty: train the embedding encoder first."
                )
            encoder, _, _ = checkpoint.restore_model(config.encoder_workdir)
        pool = embedding_pool(config, source, metadata, encoder)
    task = tasks.make_task(config, metadata, pool, _frozen_features(config, source))
    model = task.build_model(_rngs(config))
    if config.get("init_from") and mgr.latest_step() is None:
        _initialise_from(model, config)
    tx = tasks.optimizer(config, _steps_per_epoch(config, metadata, len(source)))
    graphdef, state = train_step.init_state(model, tx)
    del model
    mesh = train_step.data_mesh()
    state = train_step.replicate(state, mesh)

    stream = task.stream(source, seed=config.seed, shuffle=True, num_epochs=None)
    iterator = iter(stream)
    if mgr.latest_step() is not None:
        state, iterator_state, _ = checkpoint.restore_newest_intact(
            mgr, workdir, state, set_aside=is_main
        )
        state = train_step.replicate(state, mesh)
        iterator.set_state(iterator_state)
        if is_main:
            print(f"Resumed {workdir} from step {int(state.step)}.", flush=True)
    start = int(state.step)

    step_fn = train_step.compile_step(
        train_step.make_step(graphdef, tx, task.loss_fn, task.num_observers), mesh
    )
    validation = _validation_batches(task, config, mesh)
    validation_loss_fn = jax.jit(_validation_loss(graphdef, task))
    activity_fn = jax.jit(_validation_activity(graphdef))
    writer = _summary_writer(workdir) if is_main else None
    measurements: dict = {}
    progress = tqdm(
        total=config.num_steps, initial=start, desc=f"train {config.model}", disable=not is_main
    )
    window_start, window_steps = time.perf_counter(), 0
    stop_requests = contextlib.ExitStack()
    unsaid = None  # (step, what to say) of the save in flight
    try:
        stop_requested = stop_requests.enter_context(_stop_requests())
        for step in range(start, config.num_steps):
            batch = train_step.global_batch(task.prepare(next(iterator), step), mesh)
            state, step_measurements = step_fn(state, batch)
            window_steps += 1
            done = step + 1
            last = done == config.num_steps
            if done % config.log_every == 0 or last:
                measurements = {k: float(v) for k, v in jax.device_get(step_measurements).items()}
                _check_finite(state, mgr, workdir)
                elapsed = time.perf_counter() - window_start
                measurements["examples_per_s"] = window_steps * config.batch_size / elapsed
                window_start, window_steps = time.perf_counter(), 0
                progress.set_postfix(loss=f"{measurements['loss']:.4g}")
                _write(writer, done, measurements)
            if done % config.checkpoint_every == 0 or last or stop_requested:
                _check_finite(state, mgr, workdir)
                validation_loss = float(
                    np.mean([float(validation_loss_fn(state, batch)) for batch in validation])
                )
                measurements["validation_loss"] = validation_loss
                activity = _mean_activity(activity_fn, state, validation)
                measurements.update(activity)
                _write(writer, done, {"validation_loss": validation_loss, **activity})
                unsaid = _say_saved(mgr, unsaid, wait=True)  # orbax waits for it anyway
                checkpoint.save(mgr, done, state, iterator.get_state(), validation_loss)
                if is_main:
                    live = activity.get("live_units/dynamic")
                    alive = "" if live is None else f", dynamic layer {100 * live:.2g}% live"
                    unsaid = (done, f"validation loss {validation_loss:.5g}{alive}")
            progress.update(1)
            unsaid = _say_saved(mgr, unsaid, wait=bool(stop_requested))
            if stop_requested:
                name = signal.Signals(stop_requested[0]).name
                raise Stopped(
                    f"stopped by {name} at step {done}: checkpoint saved in "
                    f"{workdir.absolute() / 'checkpoints'}; run the same command to resume.",
                    exit_status=128 + stop_requested[0],
                )
    finally:
        # Whatever stops the run (the end, a non-finite step, a signal, an exception), saves in
        # flight complete before it exits, so the last checkpoint is usable.
        stop_requests.close()
        progress.close()
        mgr.wait_until_finished()
        _say_saved(mgr, unsaid, wait=True)
        if writer is not None:
            writer.close()
    return measurements


def _say_saved(mgr, unsaid: tuple[int, str] | None, *, wait: bool) -> tuple[int, str] | None:
    """Prints "step N: <what>, checkpoint saved" once step N is on disk, so that a kill right
    after the line loses nothing; returns what is still unsaid. Orbax saves in the background
    while the next steps train: `wait=False` says it only if that save has finished (a check at
    each step boundary), `wait=True` waits for it. Waiting at every save instead cost a quarter of
    the steps/s of the tiny universal config saving every 30 steps (19.6 against 26, 2-core VM)."""
    if unsaid is None:
        return None
    if wait:
        mgr.wait_until_finished()
    elif mgr.is_saving_in_progress():
        return unsaid
    mgr.check_for_errors()
    step, what = unsaid
    tqdm.write(f"step {step}: {what}, checkpoint saved")
    return None


def _validation_loss(graphdef, task: tasks.Task):
    def loss(state, batch):
        model = train_step.merge(graphdef, state)
        model.eval()
        value, _ = task.loss_fn(model, batch, batch.get("observer"))
        return value

    return loss


def _validation_activity(graphdef):
    def activity(state, batch):
        model = train_step.merge(graphdef, state)
        model.eval()
        return registry.relu_activity(model, batch)

    return activity


def _mean_activity(activity_fn, state, batches) -> dict[str, float]:
    """The ReLU layers' live fractions (`registry.relu_activity`) averaged over the validation
    batches: logged beside the validation loss, so a dying layer shows in TensorBoard."""
    values = [jax.device_get(activity_fn(state, batch)) for batch in batches]
    return {k: float(np.mean([v[k] for v in values])) for k in (values[0] if values else {})}


def _check_finite(state, mgr, workdir) -> None:
    bad = int(jax.device_get(state.nonfinite_step))
    if bad >= 0:
        last = mgr.latest_step()
        kept = (
            f"The last good checkpoint is step {last} in {Path(workdir) / 'checkpoints'}."
            if last is not None
            else "No checkpoint had been saved yet."
        )
        raise NonFiniteError(
            f"Non-finite loss or gradient at step {bad} (counting from 0); stopping. {kept} "
            "Lower the learning rate (--config.learning_rate) or check the data."
        )


def _summary_writer(workdir: Path):
    from tensorboardX import SummaryWriter

    return SummaryWriter(str(workdir / "tensorboard"))


def _write(writer, step: int, values: dict) -> None:
    if writer is None:
        return
    for name, value in values.items():
        writer.add_scalar(name, value, step)
    writer.flush()
