"""Orbax checkpoints of a run: the train state, the grain iterator state, and the resolved config.

Layout of a workdir:
    config.json            the resolved config (written once, read by evaluation)
    .lock                  held while a run trains there (`workdir_lock`)
    checkpoints/<step>/    state (TrainState: parameters, optimiser state, step, BatchNorm and
                           dropout RNG state) + data (the grain iterator state, JSON) + metrics
    tensorboard/           event files

Which checkpoints stay: the latest one and the `keep_best` best by validation loss, preserved
explicitly together (`best_fn` with `max_to_keep` alone can delete the latest one). Saves are
atomic: a run killed mid-save leaves the previous checkpoints intact, and restore takes the latest
complete one.

`restore_model` rebuilds a trained model from its workdir alone, parameters only: the network from
`config.json` (`psm_jax.registry`), its shapes from `nnx.eval_shape` (nothing allocated, no
optimiser, no data source), and only the parameters and BatchNorm statistics read from the
checkpoint. Training restores whole states with `restore`.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import jax
import ml_collections
import orbax.checkpoint as ocp
from absl import logging
from etils import epath
from flax import nnx
from orbax.checkpoint import checkpoint_managers

from psm_jax import disk, registry
from psm_jax.configs import base
from psm_jax.models import layers

VALIDATION_LOSS = "validation_loss"
LOCK = ".lock"


@contextlib.contextmanager
def workdir_lock(workdir: str | Path, enabled: bool = True):
    """Holds `<workdir>/.lock` (an flock, which the kernel releases even when the process is
    killed) while a run trains there: a second run in the same workdir is refused by name instead
    of both writing the same checkpoints. `enabled=False` (processes other than 0 of a
    multi-process run) takes no lock."""
    if not enabled:
        yield
        return
    path = Path(workdir) / LOCK
    with disk.exclusive(
        path,
        f"Another run is training in {workdir} (it holds {path}): wait for it to finish, or "
        "train in another --workdir.",
    ):
        yield


def manager(workdir: str | Path, keep_best: int = 1) -> ocp.CheckpointManager:
    """The run's CheckpointManager: keeps the latest and the best `keep_best` by validation loss."""
    policy = checkpoint_managers.AnyPreservationPolicy(
        [
            checkpoint_managers.LatestN(1),
            checkpoint_managers.BestN(
                get_metric_fn=lambda metrics: metrics[VALIDATION_LOSS],
                reverse=True,  # lower is better
                n=keep_best,
                keep_checkpoints_without_metrics=False,
            ),
        ]
    )
    options = ocp.CheckpointManagerOptions(
        preservation_policy=policy,
        best_fn=lambda metrics: metrics[VALIDATION_LOSS],
        best_mode="min",
        create=True,
    )
    return _Manager(Path(workdir).absolute() / "checkpoints", options=options)


class _Manager(ocp.CheckpointManager):
    """Orbax's manager, where a step whose metrics file does not read (truncated, emptied) counts
    as a step without metrics, with a warning naming the file, instead of stopping every read of
    the workdir with a bare JSON error (`damaged_metrics` finds them; training sets them aside)."""

    def _get_metrics(self, step: int):
        try:
            return super()._get_metrics(step)
        except ValueError as error:  # json.JSONDecodeError
            path = Path(self.directory) / str(step) / "metrics" / "metrics"
            logging.warning("Checkpoint metrics %s do not read (%s).", path, _summary(error))
            return None


def damaged_metrics(workdir: str | Path) -> dict[int, Exception]:
    """The steps of `workdir` whose `checkpoints/<step>/metrics/metrics` exists but does not read
    as the validation loss the loop saves: step -> the error (naming the file)."""
    damaged = {}
    for path in sorted(Path(workdir).absolute().glob("checkpoints/*/metrics/metrics")):
        step_dir = path.parent.parent
        if not step_dir.name.isdigit():
            continue
        try:
            loss = json.loads(path.read_text())[VALIDATION_LOSS]
            if not isinstance(loss, (int, float)):
                raise ValueError(f"{VALIDATION_LOSS} is {loss!r}, not a number")
        except (ValueError, KeyError, TypeError, OSError) as error:
            damaged[int(step_dir.name)] = ValueError(f"{path} does not read: {_summary(error)}")
    return damaged


def save(mgr: ocp.CheckpointManager, step: int, state, iterator_state, validation_loss: float):
    mgr.save(
        step,
        args=ocp.args.Composite(
            state=ocp.args.StandardSave(state), data=ocp.args.JsonSave(iterator_state)
        ),
        metrics={VALIDATION_LOSS: float(validation_loss)},
    )


CORRUPT = "checkpoints_corrupt"
"""Where checkpoints that no longer restore are set aside (never deleted)."""


def reached(workdir: str | Path, mgr: ocp.CheckpointManager) -> dict:
    """What a finished run reached, from its checkpoints: the last and the best step with their
    validation losses, and where the checkpoints are (what `launch/train.py` prints when the
    workdir has nothing left to train)."""
    last, best = mgr.latest_step(), mgr.best_step()
    reached = {"last_step": last, "best_step": best}
    for name, step in (("last", last), ("best", best)):
        metrics = mgr.metrics(step) if step is not None else None
        if metrics and VALIDATION_LOSS in metrics:
            reached[f"{name}_validation_loss"] = float(metrics[VALIDATION_LOSS])
    reached["checkpoints"] = str(Path(workdir).absolute() / "checkpoints")
    return reached


def _summary(error: BaseException) -> str:
    text = " ".join(str(error).split())
    return f"{type(error).__name__}: {text[:300]}{'...' if len(text) > 300 else ''}"


def _set_aside(workdir: Path, step: int) -> Path:
    target = workdir / CORRUPT / str(step)
    suffix = 0
    while target.exists():
        suffix += 1
        target = workdir / CORRUPT / f"{step}.{suffix}"
    target.parent.mkdir(parents=True, exist_ok=True)
    (workdir.absolute() / "checkpoints" / str(step)).rename(target)
    return target


def restore_newest_intact(
    mgr: ocp.CheckpointManager, workdir: str | Path, state_like, *, set_aside: bool = True
):
    """(state, iterator_state, step) of the newest checkpoint that restores.

    A checkpoint that does not restore (a truncated or deleted file, a disk that failed) is
    skipped with a message saying which step and why; with `set_aside` (the process that owns the
    workdir) it is moved to `<workdir>/checkpoints_corrupt/<step>` (kept, never deleted), so that
    the resumed run can save that step again.

    Raises:
      RuntimeError naming every step and its error when none restores (nothing is moved: the
      cause is then more likely the code or the config than the files).
    """
    failures = []
    damaged = damaged_metrics(workdir)
    for step in sorted(mgr.all_steps(), reverse=True):
        if step in damaged:
            failures.append((step, damaged[step]))
            continue
        try:
            state, iterator_state = restore(mgr, state_like, step)
        except Exception as error:  # noqa: BLE001 (whatever a damaged checkpoint raises)
            failures.append((step, error))
            continue
        for bad, error in failures:
            where = _set_aside(Path(workdir), bad) if set_aside else None
            message = (
                f"Checkpoint step {bad} in {Path(workdir) / 'checkpoints'} does not restore "
                f"({_summary(error)}); resuming from step {step}"
                + (f". It was moved to {where} (not deleted)." if where else ".")
            )
            logging.warning(message)
        # A damaged metrics file of an older step: set aside too (the manager would delete that
        # step at its next save, a step without metrics being no best one).
        for bad in sorted(set(damaged) - {b for b, _ in failures}):
            where = _set_aside(Path(workdir), bad) if set_aside else None
            logging.warning(
                "Checkpoint step %d: %s%s",
                bad,
                damaged[bad],
                f"; it was moved to {where} (not deleted)." if where else ".",
            )
        if failures or damaged:
            mgr.reload()
        return state, iterator_state, step
    listed = "; ".join(f"step {step}: {_summary(error)}" for step, error in failures)
    raise RuntimeError(
        f"No checkpoint in {Path(workdir) / 'checkpoints'} restores ({listed})."
    ) from (failures[0][1] if failures else None)


def restore(mgr: ocp.CheckpointManager, state_like, step: int | None = None):
    """(state, iterator_state) at `step` (default: the latest), shaped like `state_like`."""
    step = mgr.latest_step() if step is None else step
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, state_like)
    restored = mgr.restore(
        step,
        args=ocp.args.Composite(
            state=ocp.args.StandardRestore(abstract), data=ocp.args.JsonRestore()
        ),
    )
    return restored.state, restored.data


RESUMABLE_FIELDS = frozenset(
    {
        "num_steps",
        "log_every",
        "checkpoint_every",
        "eval_batches",
        "keep_best",
        "data_dir",
        "manual_dir",
        "num_workers",
        "allow_config_change",
    }
)
"""Fields a restarted run may change (a longer schedule, where the data lives); any other change
would resume the checkpoints under settings they were not trained with."""


PATH_FIELDS = ("data_dir", "manual_dir", "encoder_workdir", "init_from")
"""Fields holding paths: recorded absolute (`resolve_paths`), so that evaluating, enrolling or
predicting from another directory finds what the run used."""


def resolve_paths(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """A copy of `config` with its relative `PATH_FIELDS` made absolute (from the current
    directory); empty fields stay empty."""
    config = ml_collections.ConfigDict(config.to_dict())
    with config.unlocked():
        for field in PATH_FIELDS:
            if config.get(field):
                config[field] = str(Path(config[field]).absolute())
    return config


def changed_fields(
    stored: ml_collections.ConfigDict, config: ml_collections.ConfigDict
) -> dict[str, tuple]:
    """The fields, outside `RESUMABLE_FIELDS`, whose values differ: name -> (stored, new). Fields
    only one of them has (added to or removed from psm-jax since the stored one was written) are
    not compared; paths compare by their absolute form."""
    old, new = (json.loads(resolve_paths(c).to_json_best_effort()) for c in (stored, config))
    return {
        key: (old[key], new[key])
        for key in sorted(set(old) & set(new))
        if key not in RESUMABLE_FIELDS and old[key] != new[key]
    }


def save_config(workdir: str | Path, config: ml_collections.ConfigDict) -> None:
    """Writes config.json. A workdir that holds checkpoints keeps the config they were trained
    with: a restart whose config differs in a field outside `RESUMABLE_FIELDS` is refused, naming
    the fields, unless `config.allow_config_change` (then the old file is kept beside as
    config.<latest step>.json)."""
    path = Path(workdir) / "config.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    step = manager(workdir).latest_step() if path.exists() else None
    if step is not None:
        stored = ml_collections.ConfigDict(json.loads(path.read_text()))
        changed = changed_fields(stored, config)
        if changed and not config.get("allow_config_change"):
            listed = "; ".join(f"{k}: {old!r} -> {new!r}" for k, (old, new) in changed.items())
            raise ValueError(
                f"{workdir} holds checkpoints (step {step}) trained with another config "
                f"({listed}). Train in a new --workdir, or pass "
                "--config.allow_config_change=True to resume them under the new settings."
            )
        if changed:
            path.rename(path.with_name(f"config.{step}.json"))
    with disk.writing(path, what_to_do="train in a --workdir on another disk"):
        path.write_text(config.to_json_best_effort(indent=2, sort_keys=True))


def load_config(workdir: str | Path) -> ml_collections.ConfigDict:
    """The workdir's config. Fields added to psm-jax after the run was made get their defaults
    (`psm_jax.configs.base`; a new field's default keeps the old behaviour), so older workdirs
    still restore and evaluate."""
    path = Path(workdir) / "config.json"
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: is {workdir} a psm-jax training workdir?")
    stored = json.loads(path.read_text())
    defaults = (
        base.get_config(stored["model"]).to_dict() if stored.get("model") in registry.MODELS else {}
    )
    return ml_collections.ConfigDict({**defaults, **stored})


def num_training_observers(workdir: str | Path, config: ml_collections.ConfigDict) -> int | None:
    """The number of training observers a per-observer model was built for (None for others).

    Recorded in config.json at training (`config.num_observers`); workdirs saved before that field
    existed give it by the leading axis of their stored per-observer parameters."""
    if not registry.get(config.model).per_observer:
        return None
    if config.get("num_observers"):
        return int(config.num_observers)
    mgr = manager(workdir, config.keep_best)
    step = mgr.latest_step()
    if step is None:
        raise FileNotFoundError(f"No checkpoint in {Path(workdir) / 'checkpoints'}.")
    path = epath.Path(Path(workdir).absolute() / "checkpoints" / str(step) / "state")
    stored = ocp.PyTreeCheckpointHandler().metadata(path).tree["observer_params"]
    return int(jax.tree.leaves(stored)[0].shape[0])


def restore_model(workdir: str | Path, which: str = "best", compute_dtype: str | None = None):
    """A trained model from its workdir, parameters only: (model in eval mode, config, step).

    Nothing but the model is built (no optimiser, no data source); the shapes come from
    `nnx.eval_shape`, and only the parameters and the other model variables (BatchNorm
    statistics) are read from the checkpoint.

    Args:
      workdir: a training workdir (config.json + checkpoints/).
      which: "best" (lowest validation loss) or "latest".
      compute_dtype: compute in this dtype instead of the one it trained in, where the model
        has the option (`psm_jax.registry.with_compute_dtype`); the returned config says so.
    """
    if which not in ("best", "latest"):
        raise ValueError(f"which must be 'best' or 'latest', got {which!r}")
    config = load_config(workdir)
    if compute_dtype is not None:
        config = registry.with_compute_dtype(config, compute_dtype)
    num_observers = num_training_observers(workdir, config)
    abstract = nnx.eval_shape(lambda: registry.build_model(config, num_observers, nnx.Rngs(0)))
    graphdef, observer_params, params, rest = nnx.split(
        abstract, layers.ObserverParam, nnx.Param, ...
    )
    mgr = manager(workdir, config.keep_best)
    chosen = mgr.best_step() if which == "best" else mgr.latest_step()
    if chosen is None:
        raise FileNotFoundError(f"No checkpoint in {Path(workdir) / 'checkpoints'}.")
    # The TrainState's model fields only (psm_jax.train.step.TrainState); the optimiser state and
    # the counters stay on disk.
    wanted = {"observer_params": observer_params, "params": params, "rest": rest}
    wanted = jax.tree.map(ocp.utils.to_shape_dtype_struct, wanted)
    args = ocp.args.Composite(
        state=ocp.args.PyTreeRestore(
            item=wanted,
            restore_args=ocp.checkpoint_utils.construct_restore_args(wanted),
            partial_restore=True,
        )
    )
    # A damaged checkpoint is skipped (said, not moved: evaluation does not change a workdir).
    others = sorted((s for s in mgr.all_steps() if s != chosen), reverse=True)
    damaged = damaged_metrics(workdir)
    failures = [(step, damaged[step]) for step in (chosen, *others) if step in damaged]
    for step in (s for s in (chosen, *others) if s not in damaged):
        try:
            restored = mgr.restore(step, args=args).state
        except Exception as error:  # noqa: BLE001 (whatever a damaged checkpoint raises)
            failures.append((step, error))
            continue
        break
    else:
        listed = "; ".join(f"step {step}: {_summary(error)}" for step, error in failures)
        raise RuntimeError(
            f"No checkpoint in {Path(workdir) / 'checkpoints'} restores ({listed})."
        ) from failures[0][1]
    for bad, error in failures:
        logging.warning(
            "Checkpoint step %d of %s does not restore (%s); using step %d instead.",
            bad,
            workdir,
            _summary(error),
            step,
        )
    model = nnx.merge(graphdef, restored["observer_params"], restored["params"], restored["rest"])
    model.eval()
    return model, config, step
