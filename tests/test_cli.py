"""The command line: `course info` and the dispatcher."""
import subprocess
import sys

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
    result = subprocess.run([sys.executable, "-m", "course", "info"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and "presets:" in result.stdout
