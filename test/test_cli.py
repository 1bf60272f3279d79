"""The `perception-edge` command line: every command answers --help, the dispatcher's own flags, and
the old entry points (python -m perception_edge.tools.cli, the deprecated module path) still run it."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from perception_edge.cli import COMMANDS, main

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_command_answers_help(command, capsys):
    with pytest.raises(SystemExit) as exit_:
        main([command, "--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: perception-edge {command}"), out[:200]


def test_dispatcher_lists_every_command_and_rejects_unknown_ones(capsys):
    assert main([]) == 2
    listing = capsys.readouterr().out
    assert all(f"  {name} " in listing for name in COMMANDS)
    assert main(["no-such-command"]) == 2
    assert "unknown command 'no-such-command'" in capsys.readouterr().err


@pytest.mark.parametrize("module", ["perception_edge.cli", "perception_edge.tools.cli"])
def test_python_dash_m_runs_the_command_line(module):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.run([sys.executable, "-W", "error::DeprecationWarning", "-m", module, "--help"],
                          capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "commands:" in proc.stdout and "bench-ros" in proc.stdout
