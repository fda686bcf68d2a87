"""`writing(where)`: a full disk (ENOSPC) while psm-jax writes ends in a message naming what was
being written and what to do, instead of a bare "[Errno 28] No space left on device".

Used where runs write: config.json, a training run's workdir (checkpoints, which Orbax writes in
background threads whose error reaches the loop when it waits, and TensorBoard logs), exported
USMs and reports. The error stays an OSError (the launchers end it in one line).
"""

from __future__ import annotations

import contextlib
import errno
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
