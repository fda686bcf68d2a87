"""What every command-line entry point (launch/, studies/, benchmarks/) shares: absl's flag parsing
with a `--help` that exits 0 and marks the required flags.

absl's --help, --helpshort and --helpfull print the usage and end with exit status 1, as an error
would, and its usage does not say which flags are required (`flags.mark_flag_as_required` or
`required=True` only add a validator). `parse_flags` answers a help request itself, before absl
parses anything: the script's docstring and flags as absl prints them, each required flag's help
starting with "(required)", then the entry point's notes (e.g. where its `--config.<field>`s are
listed), and exit status 0. Pass it as `absl.app.run(main, flags_parser=cli.parse_flags)`;
launch/runner.py does for every launcher.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from absl import app, flags

SHORT_HELP = ("--help", "-help", "-h", "-?", "--helpshort", "-helpshort")
FULL_HELP = ("--helpfull", "-helpfull")
REQUIRED = "(required) "
"""What a required flag's help starts with in --help."""


def help_requested(argv: Sequence[str]) -> str | None:
    """ "short" or "full" when `argv` (argv[0] the script) asks for help before any "--", else
    None."""
    for arg in argv[1:]:
        if arg == "--":
            break
        if arg in SHORT_HELP:
            return "short"
        if arg in FULL_HELP:
            return "full"
    return None


def required_flags(flag_values: flags.FlagValues = flags.FLAGS) -> list[str]:
    """The names of the flags marked as required (absl's not-None validator on them)."""
    names = []
    for name in flag_values:
        flag = flag_values[name]
        if flag.name != name or name in names:  # a short alias of another flag
            continue
        needed = f"Flag --{name} must have a value other than None."
        if any(getattr(validator, "message", None) == needed for validator in flag.validators):
            names.append(name)
    return names


def print_help(
    kind: str, notes: Sequence[str] = (), flag_values: flags.FlagValues = flags.FLAGS
) -> None:
    """absl's usage to stdout ("short": the script's own flags; "full": every flag), the required
    flags' help starting with `REQUIRED`, then `notes`, one per line."""
    for name in required_flags(flag_values):
        flag = flag_values[name]
        if not (flag.help or "").startswith(REQUIRED):
            flag.help = REQUIRED + (flag.help or "")
    app.usage(shorthelp=kind == "short", writeto_stdout=True)
    for note in notes:
        print(note)
    if kind == "short":
        print("--helpfull lists every flag, the libraries' too.")


def parse_flags(argv: list[str], notes: Sequence[str] = ()) -> list[str]:
    """absl's flag parsing (`flags.FLAGS(argv)`, the arguments left), where a help request prints
    the help (`print_help`) and exits 0, and a bad flag ends in absl's one-line message and exit
    status 1."""
    kind = help_requested(argv)
    if kind is not None:
        print_help(kind, notes)
        sys.exit(0)
    try:
        return flags.FLAGS(argv)
    except flags.Error as error:  # as absl reports them
        sys.stderr.write(f"FATAL Flags parsing error: {error}\n")
        sys.stderr.write("Pass --help to see help on flags.\n")
        sys.exit(1)
