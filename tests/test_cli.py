"""The command line: `course info` and the dispatcher."""

import subprocess
import sys

import pytest

from course.cli import COMMANDS, main


def test_info_prints_versions_device_and_presets(capsys):
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    assert "torch" in out and "device:" in out
    assert "gpt2-small" in out and "124,439,808" in out


def test_help_and_unknown_command(capsys):
    assert main([]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in COMMANDS)
    assert main(["frobnicate"]) == 2
    assert "unknown command 'frobnicate'" in capsys.readouterr().err


def test_console_entry_point_runs():
    result = subprocess.run(
        [sys.executable, "-m", "course", "info"], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0 and "presets:" in result.stdout


def test_version(capsys):
    from course import __version__

    assert main(["--version"]) == 0 and main(["-V"]) == 0
    out, err = capsys.readouterr()
    assert out == f"course {__version__}\n" * 2 and err == ""


def test_unknown_command_or_option_usage_goes_to_stderr(capsys):
    for argv, what in ((["frobnicate"], "command 'frobnicate'"), (["--frob"], "option '--frob'")):
        assert main(argv) == 2
        out, err = capsys.readouterr()
        assert out == "" and "usage: course" in err and f"unknown {what}" in err
        assert all(name in err for name in COMMANDS)


def test_bad_options_exit_2_with_the_message_on_stderr(capsys):
    assert main(["info", "--nope"]) == 2
    out, err = capsys.readouterr()
    assert out == "" and "unrecognized arguments: --nope" in err
    assert main(["train", "--task", "copy", "--steps", "0"]) == 2
    assert "--steps: 0 must be a positive integer" in capsys.readouterr().err
    assert main(["info", "--help"]) == 0
    assert "usage: course info" in capsys.readouterr().out


def test_train_rejects_options_a_recipe_would_ignore(capsys):
    assert main(["train", "copy", "--set", "n_layers=3", "--length", "5"]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert "--length and --set only apply to a custom model" in err
    assert "course train --task copy --length --set" in err
    assert main(["train", "sort", "--n-symbols", "4"]) == 2
    assert "--n-symbols only apply" in capsys.readouterr().err
    assert main(["train", "all", "--name", "x"]) == 2
    assert "--name names one model" in capsys.readouterr().err


def test_the_issues_train_command_exits_2_in_a_real_process():
    result = subprocess.run(
        [sys.executable, "-m", "course", "train", "copy", "--set", "n_layers=3", "--length", "5"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2 and result.stdout == ""
    assert "only apply to a custom model" in result.stderr


def test_site_errors_go_to_stderr(capsys):
    assert main(["site", "--only", "no-such-chapter"]) == 2
    out, err = capsys.readouterr()
    assert out == "" and "course site: --only ['no-such-chapter'] matches no notebook" in err


def _options(parser):
    """Every option and positional of a parser and of its sub-parsers: (prog, action)."""
    import argparse

    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                yield from _options(sub)
        elif not isinstance(action, (argparse._HelpAction, argparse._VersionAction)):
            yield parser.prog, action


def test_every_option_of_every_command_has_help_text():
    from course.cli import build_parser

    missing = [
        f"{prog} {action.option_strings or action.dest}"
        for name in COMMANDS
        for prog, action in _options(build_parser(name))
        if not (action.help or "").strip()
    ]
    assert not missing, f"options without help text: {missing}"


def test_a_missing_extra_is_named(monkeypatch, capsys):
    import course.extras

    real = course.extras.available
    monkeypatch.setattr(
        course.extras, "available", lambda module: module not in ("voila", "transformers") and real(module)
    )
    assert main(["explore"]) == 1
    out, err = capsys.readouterr()
    assert out == "" and "course explore" in err and "[app]" in err and "'voila'" in err
    assert main(["bench", "--only", "hf"]) == 1
    err = capsys.readouterr().err
    assert "transformer-anatomy[hf]" in err and "--only" in err


def test_an_import_error_of_an_extra_names_it(monkeypatch, capsys):
    import course.site

    def run(args):
        raise ModuleNotFoundError("No module named 'kaleido'", name="kaleido")

    monkeypatch.setattr(course.site, "run", run)
    assert main(["site"]) == 1
    assert "[png]" in capsys.readouterr().err
    monkeypatch.setattr(course.site, "run", lambda args: __import__("no_such_module_xyz"))
    with pytest.raises(ModuleNotFoundError):  # not an extra's: a real bug, left loud
        main(["site"])
