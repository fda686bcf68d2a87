"""How every launcher runs: `runner.run(main)` instead of `absl.app.run(main)`.

Each launcher adopts this module's flags (`flags.adopt_module_key_flags(runner)`), so that
`--verbose` shows in its --help. The libraries' INFO logs (TFDS, Orbax) are off unless `--verbose`
(or absl's `--verbosity`) asks for them: warnings still show. An error that bad input raises (a
missing or malformed file, a bad flag value, a workdir of the wrong kind: OSError, ValueError,
RuntimeError, ImportError with a message that says what and where) ends the launcher with that
message and exit status 1, not a traceback; `--verbose` shows the traceback. Errors of other types
are bugs and keep theirs.
"""

from __future__ import annotations

import sys
from pathlib import Path

from absl import app, flags, logging

VERBOSE = flags.DEFINE_bool(
    "verbose",
    False,
    "Show the libraries' INFO logs, and the full traceback when the launcher stops on an error.",
)

USER_ERRORS = (OSError, ValueError, RuntimeError, ImportError)
"""What bad input raises in psm-jax (its messages name the file or flag and what to do)."""


def run(main) -> None:
    """`absl.app.run(main)`, with the errors of bad input ending in one message (module doc)."""

    def guarded(argv):
        if not VERBOSE.value and not flags.FLAGS["verbosity"].present:
            logging.set_verbosity(logging.WARNING)
        try:
            return main(argv)
        except USER_ERRORS as error:
            if VERBOSE.value:
                raise
            sys.stderr.write(
                f"{Path(sys.argv[0]).name}: error: {error}\n(--verbose shows the traceback)\n"
            )
            return 1

    app.run(guarded)
