"""How every launcher runs: `runner.run(main)` instead of `absl.app.run(main)`.

Before the flags are parsed, `run` applies psm-jax's measured XLA:CPU flags and allocator
settings (`psm_jax.xla_defaults.apply`; `PSM_JAX_XLA_DEFAULTS=0` opts out) and registers the
datasets with TFDS (`tfds_builders.register`): importing psm_jax does neither, so these are the
launchers' to do, before JAX starts a backend.

Each launcher adopts this module's flags (`flags.adopt_module_key_flags(runner)`), so that
`--verbose` shows in its --help. The libraries' INFO logs (TFDS, Orbax) are off unless `--verbose`
(or absl's `--verbosity`) asks for them: warnings still show, each on one line
("warning: <message>", `one_line_warnings`). An error that bad input raises (a
missing or malformed file, a bad flag value, a workdir of the wrong kind: OSError, ValueError,
RuntimeError, ImportError with a message that says what and where) ends the launcher with that
message and exit status 1, not a traceback; `--verbose` shows the traceback. Errors of other types
are bugs and keep theirs. A training run stopped by SIGTERM or Ctrl-C after saving its checkpoint
(`psm_jax.train.loop.Stopped`) ends in its one line with its `exit_status` (143 for SIGTERM, 130
for SIGINT); a Ctrl-C anywhere else ends in one line too, with 130.
"""

from __future__ import annotations

import difflib
import importlib.util
import logging as std_logging
import os
import shlex
import sys
import warnings
from pathlib import Path

PACKAGES = ("absl", "ml_collections", "numpy", "jax", "flax", "psm_jax", "tfds_builders")
"""What a launcher imports: without them it stops in `missing_packages`'s one line."""


def missing_packages(names: tuple[str, ...] = PACKAGES) -> str | None:
    """One line saying what to run when this Python lacks any of `names` (e.g. `python3
    launch/main.py` outside the project's virtualenv), else None. Checked before absl or the
    library is imported, so that the launcher does not end in a ModuleNotFoundError's traceback."""
    missing = [name for name in names if importlib.util.find_spec(name) is None]
    if not missing:
        return None
    venv_python = Path(__file__).resolve().parents[1] / ".venv" / "bin" / "python"
    shown = os.path.relpath(venv_python)
    command = f"{shown} {shlex.join(sys.argv) or 'launch/<launcher>.py'}"
    then = "run" if venv_python.exists() else "run `make venv` once (it creates .venv), then"
    return (
        f"psm-jax's packages ({', '.join(missing)}) are not installed in this Python "
        f"({sys.executable}): {then} `{command}`."
    )


if _MISSING := missing_packages():
    sys.stderr.write(_MISSING + "\n")
    sys.exit(1)

from absl import app, flags, logging  # noqa: E402 - after the check above
from ml_collections import ConfigDict  # noqa: E402

import tfds_builders  # noqa: E402
from psm_jax import cli, xla_defaults  # noqa: E402

VERBOSE = flags.DEFINE_bool(
    "verbose",
    False,
    "Show the libraries' INFO logs, and the full traceback when the launcher stops on an error.",
)

USER_ERRORS = (OSError, ValueError, RuntimeError, ImportError)
"""What bad input raises in psm-jax (its messages name the file or flag and what to do)."""


def run(main) -> None:
    """`absl.app.run(main)` after the process settings and the dataset registration, with the
    errors of bad input ending in one message (module docstring)."""
    xla_defaults.apply()  # before JAX starts a backend
    tfds_builders.register()

    def guarded(argv):
        if not VERBOSE.value and not flags.FLAGS["verbosity"].present:
            logging.set_verbosity(logging.WARNING)
            one_line_warnings()
        script = Path(sys.argv[0]).name
        try:
            return main(argv)
        except KeyboardInterrupt:
            if VERBOSE.value:
                raise
            sys.stderr.write(
                f"\n{script}: interrupted (Ctrl-C). A training run resumes from its last "
                "checkpoint when the same command runs again.\n"
            )
            return 130
        except USER_ERRORS as error:
            if VERBOSE.value:
                raise
            if getattr(error, "exit_status", None):  # stopped on request, the checkpoint saved
                sys.stderr.write(f"{script}: {error}\n")
                return error.exit_status
            sys.stderr.write(f"{script}: error: {error}\n(--verbose shows the traceback)\n")
            return 1

    app.run(guarded, flags_parser=_parse_flags)


HELP_NOTES: list[str] = []
"""What --help prints after the flags (`define_config` adds where the config fields are listed)."""


def one_line_warnings() -> None:
    """absl's log lines and Python's warnings as "warning: <message>" on one line, without
    absl's prefix (level, date, thread, file:line) or the source line Python's warnings add:
    what a user reads (`--verbose` keeps the libraries' own formats)."""
    logging.get_absl_handler().setFormatter(_OneLine())
    logging.get_absl_handler().addFilter(_not_noise)
    warnings.formatwarning = _one_line_warning


NOISE = ("has no dataset_info.json",)
"""Parts of the libraries' warnings that say nothing to a user (TFDS looking for a dataset that
is not built yet, before it builds it); `--verbose` shows them."""


def _not_noise(record: std_logging.LogRecord) -> bool:
    return not any(part in record.getMessage() for part in NOISE)


class _OneLine(std_logging.Formatter):
    def format(self, record: std_logging.LogRecord) -> str:
        return f"{record.levelname.lower()}: {record.getMessage()}"


def _one_line_warning(message, category, filename, lineno, line=None) -> str:
    return f"warning: {message} ({category.__name__}, {Path(filename).name}:{lineno})\n"


def define_config(define, *args, fields: str, **kwargs):
    """`define(*args, **kwargs)`, one of ml_collections' `config_flags.DEFINE_config_file` or
    `DEFINE_config_dict`, where a `--config.<path>` that names no field ends in one line (they
    apply the command line's overrides to a default config as the flag is defined). `fields`
    says where the config's fields are listed, for --help."""
    HELP_NOTES.append(
        f"--config.<field>=<value> sets any field of the config: {fields} lists them, with "
        "their meaning and defaults."
    )
    try:
        return define(*args, **kwargs)
    except (AttributeError, KeyError) as error:
        default = args[1] if len(args) > 1 else kwargs.get("default")
        config = default if isinstance(default, ConfigDict) else _config_file(sys.argv, default)
        _unknown_config_field(error, sys.argv, config)


def _config_file(argv: list[str], default) -> ConfigDict | None:
    """The config a `DEFINE_config_file` flag loads (`--config=<file>[:<arg>]` in `argv`, else
    `default`), without the command line's overrides; None when it cannot be loaded."""
    given = [a.split("=", 1)[1] for a in argv if a.startswith("--config=")]
    spec = given[-1] if given else default
    if not isinstance(spec, str) or not spec:
        return None
    path, _, argument = spec.partition(":")
    try:
        module_spec = importlib.util.spec_from_file_location("_psm_jax_config", path)
        module = importlib.util.module_from_spec(module_spec)
        module_spec.loader.exec_module(module)
        return module.get_config(argument) if argument else module.get_config()
    except Exception:  # noqa: BLE001 - only for a better message: fall back without it
        return None


def closest_fields(config, flag: str) -> str:
    """ "Did you mean ...?" with the fields of `config` closest to the last part of `flag`
    (`--config.<path>`), at the level the path names; "" when the level is not found.
    ml_collections' own guess misses nested typos (`widht` for `widths`)."""
    parts = flag.split("=")[0].removeprefix("--config.").split(".")
    level = config
    for part in parts[:-1]:
        try:
            level = level[part]
        except (KeyError, TypeError, AttributeError):
            return ""
    if not isinstance(level, ConfigDict | dict):
        return ""
    fields = sorted(level.keys())
    close = difflib.get_close_matches(parts[-1], fields, n=3, cutoff=0.5)
    prefix = "--config." + "".join(f"{part}." for part in parts[:-1])
    if close:
        return "Did you mean " + " or ".join(prefix + name for name in close) + "?"
    if len(fields) <= 15:
        return "Its fields there: " + ", ".join(fields) + "."
    return ""


def _unknown_config_field(error: Exception, argv: list[str], config=None) -> None:
    """Ends the process with one line naming the `--config.` flag whose field does not exist
    and the closest existing ones (`closest_fields`, or ml_collections' guess in the error when
    the config is not at hand); `--verbose` re-raises it."""
    if "--verbose" in argv:
        raise error
    text = str(error).replace("\\n", " ").replace("\n", " ").replace("\\", "")
    field = text.replace("'", " ").replace('"', " ").split()[0]
    named = [a.split("=")[0] for a in argv if a.startswith("--config.") and field in a]
    if config is None:
        try:
            config = flags.FLAGS["config"].value
        except Exception:  # noqa: BLE001 - not defined or loaded yet
            config = None
    if config is None:  # load the file the flag names
        config = _config_file(argv, None)
    guess = closest_fields(config, named[0]) if config is not None and named else ""
    if not guess and "Did you mean" in text:
        guess = text[text.index("Did you mean") :].rstrip("'\" ")
    sys.stderr.write(
        f"{Path(argv[0]).name}: error: {', '.join(named) or 'a --config. flag'}: the config has "
        f"no field {field!r}. {guess}\n".replace(" \n", "\n")
        + "(--verbose shows the traceback)\n"
    )
    sys.exit(1)


def _parse_flags(argv: list[str]) -> list[str]:
    """absl's flag parsing with --help exiting 0 (`psm_jax.cli.parse_flags`, with `HELP_NOTES`),
    where a `--config.<path>` that names no field of the config ends in one line naming the flag
    (`_unknown_config_field`)."""
    try:
        return cli.parse_flags(argv, HELP_NOTES)
    except (AttributeError, KeyError) as error:
        _unknown_config_field(error, argv)
