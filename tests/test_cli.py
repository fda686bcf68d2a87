"""psm_jax.cli: the help request each entry point answers (exit 0, required flags marked)."""

import pytest
from absl import flags

from psm_jax import cli


@pytest.mark.parametrize(
    "argv, kind",
    [
        (["x.py", "--help"], "short"),
        (["x.py", "--workdir=a", "-h"], "short"),
        (["x.py", "--helpshort"], "short"),
        (["x.py", "--helpfull"], "full"),
        (["x.py", "--workdir=--help"], None),  # a value, not the flag
        (["x.py", "--", "--help"], None),  # after "--": an argument of the script
        (["x.py", "--workdir=a"], None),
    ],
)
def test_help_requested(argv, kind):
    assert cli.help_requested(argv) == kind


def test_the_required_flags_are_found_and_marked_in_the_help(capsys, monkeypatch):
    flag_values = flags.FlagValues()
    flags.DEFINE_string("workdir", None, "Where runs go.", flag_values=flag_values)
    flags.DEFINE_string("dataset", None, "The dataset.", flag_values=flag_values, required=True)
    flags.DEFINE_integer("steps", 3, "Steps.", flag_values=flag_values)
    flags.mark_flag_as_required("workdir", flag_values=flag_values)
    assert sorted(cli.required_flags(flag_values)) == ["dataset", "workdir"]

    printed = {}
    monkeypatch.setattr(cli.app, "usage", lambda **kwargs: printed.update(kwargs))
    cli.print_help("short", ["--config.<field>: see x.py."], flag_values)
    cli.print_help("short", [], flag_values)  # a second call does not mark twice
    assert flag_values["workdir"].help == "(required) Where runs go."
    assert flag_values["dataset"].help == "(required) The dataset."
    assert flag_values["steps"].help == "Steps."
    assert printed == {"shorthelp": True, "writeto_stdout": True}
    assert "--config.<field>: see x.py." in capsys.readouterr().out
