"""Files psm-jax writes and holds.

`writing(where)`: a full disk (ENOSPC) while psm-jax writes ends in a message naming what was
being written and what to do, instead of a bare "[Errno 28] No space left on device".
`exclusive(path, refusal)`: an flock held while one process works in a folder (a training
workdir, a dataset's config folder), a second process refused with `refusal`.

Used where runs write: config.json, a training run's workdir (checkpoints, which Orbax writes in
background threads whose error reaches the loop when it waits, and TensorBoard logs), exported
USMs and reports. The error stays an OSError (the launchers end it in one line).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
from pathlib import Path


@contextlib.contextmanager
def writing(where: str | Path, *, folder: bool = False, what_to_do: str = ""):
    """Turns an ENOSPC raised inside into an OSError naming `where` (a file, or with `folder` a
    folder written into) and saying the disk is full; other errors pass unchanged."""
    try:
        yield
    except OSError as error:
        if error.errno != errno.ENOSPC:
            raise
        target = f"in {where}" if folder else str(where)
        if error.filename and str(error.filename) != str(where):
            target += f" ({error.filename})"
        full = OSError(
            f"The disk is full: no space left to write {target}. Free space on that disk"
            + (f", or {what_to_do}" if what_to_do else "")
            + "."
        )
        full.errno = errno.ENOSPC
        raise full from error


@contextlib.contextmanager
def exclusive(path: str | Path, refusal: str):
    """Holds an flock on `path` (created with its folder; the kernel releases the lock even when
    the process is killed), or raises RuntimeError(`refusal`) at once while another process
    holds it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RuntimeError(refusal) from None
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
