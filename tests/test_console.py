"""Progress off a terminal: whole lines, never carriage-return redraws in a log file."""

from __future__ import annotations

import dataclasses

from tqdm.auto import tqdm

import cephalo.console as console
from cephalo.console import LineProgress, progress_bar
from cephalo.engine.run.pipeline import train
from tests.helpers import TinyHeatmapNet


def test_training_output_off_a_terminal_is_plain_lines(tiny_config, monkeypatch, capsys):
    """``cephalo train > log.txt 2>&1``: pytest's captured streams are no terminal either."""
    monkeypatch.setattr(console, "LINE_INTERVAL_S", 0.0)  # a line at every chance, to see them all
    train(dataclasses.replace(tiny_config, progress=True, log_every=1, epochs=2), TinyHeatmapNet())
    captured = capsys.readouterr()
    assert "\r" not in captured.err and "\r" not in captured.out
    lines = captured.err.splitlines()
    assert "prepare train: 1/8 img" in captured.err  # the cache, as lines too
    epoch_lines = [line for line in lines if line.startswith("epoch 2/2: ")]
    assert [line.split(" batch")[0] for line in epoch_lines] == [f"epoch 2/2: {n}/4" for n in (1, 2, 3, 4)]
    assert all("| loss " in line and "img/s" in line for line in epoch_lines[1:])  # the postfix of the bar


def test_a_terminal_gets_a_tqdm_bar_and_disabled_progress_prints_nothing(monkeypatch, capsys):
    monkeypatch.setattr(console, "on_terminal", lambda: True)
    bar = progress_bar(range(3), desc="x")
    assert isinstance(bar, tqdm)
    bar.close()
    monkeypatch.setattr(console, "LINE_INTERVAL_S", 0.0)
    quiet = progress_bar(range(3), desc="quiet", enabled=False)
    assert isinstance(quiet, LineProgress) and list(quiet) == [0, 1, 2]
    quiet.write("a message still shows")
    quiet.close()
    captured = capsys.readouterr()
    assert "quiet" not in captured.err and "a message still shows" in captured.out


def test_line_progress_prints_at_most_every_interval_and_a_last_line(monkeypatch, capsys):
    clock = iter([0.0, 1.0, 2.0, 31.0, 31.0, 32.0, 33.0, 33.0])  # every time.monotonic() call, in order
    monkeypatch.setattr(console.time, "monotonic", lambda: next(clock))
    with LineProgress(total=5, desc="work", unit="img") as bar:  # start at 0 s
        for _ in range(5):  # updates at 1, 2, 31 (a line: 30 s since the start), 32, 33 s
            bar.update()
    lines = capsys.readouterr().err.splitlines()
    assert [line.split(",")[0] for line in lines] == ["work: 3/5 img", "work: 5/5 img"]  # the last one at close
