"""Conventions of the `aiops` command line: --version, and progress bars only on a terminal."""

from __future__ import annotations

import csv
import io
import os
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import pytest

from aiops.cli import main, terminal_progress


class Terminal(io.StringIO):
    """stderr as a terminal would present it: the only place a progress bar belongs."""

    def isatty(self) -> bool:
        return True


def write_series(path: Path, count: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(("timestamp", "value"))
        writer.writerows((f"2026-01-05 00:{i // 60:02d}:{i % 60:02d}", float(i % 3)) for i in range(count))


def test_version_prints_the_installed_distribution_version(capsys: pytest.CaptureFixture[str]):
    with pytest.raises(SystemExit) as exit:
        main(["--version"])
    assert exit.value.code == 0
    assert capsys.readouterr().out == f"aiops {version('aiops-sentry')}\n"


def test_the_installed_command_answers_version():
    command = Path(sys.executable).with_name("aiops")
    if not command.exists():
        pytest.skip("the aiops entry point is not installed next to this interpreter")
    done = subprocess.run([str(command), "--version"], capture_output=True, text=True, timeout=60)
    assert (done.returncode, done.stdout) == (0, f"aiops {version('aiops-sentry')}\n")


def test_no_bar_when_stderr_is_not_a_terminal(capsys: pytest.CaptureFixture[str]):
    with terminal_progress("work", " points") as progress:
        assert progress is None
    assert capsys.readouterr().err == ""


def test_a_bar_on_a_terminal_follows_the_counts_and_an_unknown_total(monkeypatch: pytest.MonkeyPatch):
    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    with terminal_progress("work", " points") as progress:
        assert progress is not None
        progress(5, 10)
        progress(10, 10)
    drawn = terminal.getvalue()
    assert "\r" in drawn and "work: 100%" in drawn and "10/10" in drawn

    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    with terminal_progress("read", " lines") as progress:
        progress(3, None)
    assert "read: 3 lines" in terminal.getvalue() and "%" not in terminal.getvalue()


def test_backtest_draws_its_bar_on_a_terminal_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
):
    write_series(tmp_path / "in" / "s.csv", 40)
    command = ["backtest", str(tmp_path / "in"), "--detector", "robust_zscore", "--out"]
    assert main([*command, str(tmp_path / "out1")]) == 0
    assert capsys.readouterr().err == ""

    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    assert main([*command, str(tmp_path / "out2")]) == 0
    assert "backtest: 100%" in terminal.getvalue() and "40/40" in terminal.getvalue()


def test_a_refused_backtest_draws_no_bar_on_a_terminal(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    write_series(tmp_path / "in" / "s.csv", 40)
    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    assert main(["backtest", str(tmp_path / "in"), "--out", str(tmp_path / "in"), "--detector", "robust_zscore"]) == 2
    assert terminal.getvalue().startswith("aiops backtest: refusing") and terminal.getvalue().count("\n") == 1
    assert "\r" not in terminal.getvalue()


def test_a_worker_with_a_bad_policy_file_stops_before_kafka_with_exit_code_2(tmp_path):
    policy = tmp_path / "policy.yaml"
    policy.write_text("rules: [\n")
    env = os.environ | {"AIOPS_POLICY_FILE": str(policy), "AIOPS_KAFKA_BOOTSTRAP": "127.0.0.1:1"}
    done = subprocess.run(
        [sys.executable, "-m", "aiops.cli", "worker"], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 2
    assert done.stderr.startswith("aiops worker: bad policy file:") and str(policy) in done.stderr
