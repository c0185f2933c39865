"""Every script in benchmarks/ still runs after the code it uses has moved: each one's ``--help`` in this process
(its imports and its argument parser), and every ``.sh`` one parses."""

from __future__ import annotations

import runpy
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.mark.parametrize("script", sorted(p.name for p in BENCHMARKS.glob("*.py")))
def test_a_benchmark_script_imports_and_shows_its_help(script, monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", [script, "--help"])
    with pytest.raises(SystemExit) as done:
        runpy.run_path(str(BENCHMARKS / script), run_name="__main__")
    assert done.value.code == 0
    assert "usage:" in capsys.readouterr().out


@pytest.mark.parametrize("script", sorted(p.name for p in BENCHMARKS.glob("*.sh")))
def test_a_benchmark_shell_script_parses(script):
    assert subprocess.run(["bash", "-n", str(BENCHMARKS / script)], capture_output=True).returncode == 0
