"""The backtest: same tree out as in, one score per row, scored by the pipeline's own detectors."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import pytest

from pipeline import backtest
from pipeline.backtest import run_backtest, score_series
from pipeline.detectors import make_detector


def write_series(path: Path, values: list[float]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(("timestamp", "value"))
        for i, value in enumerate(values):
            writer.writerow((f"2026-01-05 00:{i // 60:02d}:{i % 60:02d}", value))


def read_scores(path: Path) -> list[tuple[str, float]]:
    with path.open(newline="") as handle:
        rows = list(csv.reader(handle))
    assert rows[0] == ["timestamp", "anomaly_score"]
    return [(stamp, float(score)) for stamp, score in rows[1:]]


def test_tree_layout_preserved_and_one_score_per_row(tmp_path: Path):
    source, out = tmp_path / "in", tmp_path / "out"
    write_series(source / "a" / "one.csv", [float(i % 7) for i in range(120)])
    write_series(source / "b" / "c" / "two.csv", [10.0] * 50)
    ticks: list[tuple[int, int]] = []
    result = run_backtest(source, out, "robust_zscore", progress=lambda done, total: ticks.append((done, total)))
    assert (result.files, result.points) == (2, 170)
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*.csv")) == ["a/one.csv", "b/c/two.csv"]
    one = read_scores(out / "a" / "one.csv")
    assert len(one) == 120 and one[0][0] == "2026-01-05 00:00:00"
    assert all(0.0 <= score <= 1.0 for _, score in one)
    assert ticks[-1] == (170, 170)


def test_scores_are_those_of_make_detector_scoring_before_learning(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    values = [100.0 + (i % 5) for i in range(200)] + [400.0]
    write_series(tmp_path / "s.csv", values)
    made: list[str] = []

    def spy(name: str):
        made.append(name)
        return make_detector(name)

    monkeypatch.setattr(backtest, "make_detector", spy)
    run_backtest(tmp_path / "s.csv", tmp_path / "scored.csv", "robust_zscore")
    assert "robust_zscore" in made
    detector = make_detector("robust_zscore")
    expected = []
    for x in values:
        expected.append(detector.score_one(x))
        detector.learn_one(x)
    got = [score for _, score in read_scores(tmp_path / "scored.csv")]
    assert got == pytest.approx(expected, abs=1e-6)
    assert got[-1] > 0.9


def test_warmup_and_bad_values_score_zero():
    scores = list(score_series([1.0, 2.0, math.nan, 3.0, 50.0], "robust_zscore", warmup=2))
    assert scores[:3] == [0.0, 0.0, 0.0] and len(scores) == 5


def test_unknown_detector_fails_before_writing(tmp_path: Path):
    write_series(tmp_path / "in" / "s.csv", [1.0, 2.0])
    with pytest.raises(ValueError):
        run_backtest(tmp_path / "in", tmp_path / "out", "no_such_detector")
    assert not (tmp_path / "out").exists()


def test_cli_backtest_writes_scores(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    from aiops.cli import main

    write_series(tmp_path / "in" / "cat" / "s.csv", [float(i % 3) for i in range(40)])
    assert main(["backtest", str(tmp_path / "in"), "--out", str(tmp_path / "out"), "--detector", "robust_zscore"]) == 0
    assert len(read_scores(tmp_path / "out" / "cat" / "s.csv")) == 40
    assert "scored 40 points of 1 series" in capsys.readouterr().out
    assert main(["backtest", str(tmp_path / "missing"), "--out", str(tmp_path / "o2")]) == 2


def snapshot(folder: Path) -> dict[str, bytes | None]:
    """Every path under ``folder`` with its content (None for a folder): a new empty folder shows too."""
    return {p.relative_to(folder).as_posix(): p.read_bytes() if p.is_file() else None for p in folder.rglob("*")}


@pytest.mark.parametrize(
    ("source", "out"),
    [
        ("in", "in"),  # the folder over itself
        ("in", "in/a"),  # in/one.csv would be scored into in/a/one.csv, an input
        ("in/one.csv", "in/one.csv"),  # a file over itself
        ("in/one.csv", "in"),  # a file into its own folder, under its own name
        ("in", "alias"),  # a symbolic link to the input folder
        ("in/one.csv", "link.csv"),  # a symbolic link to the input file
    ],
)
def test_refuses_to_write_scores_over_an_input_and_writes_nothing(tmp_path: Path, source: str, out: str):
    write_series(tmp_path / "in" / "one.csv", [1.0, 2.0, 3.0])
    write_series(tmp_path / "in" / "a" / "one.csv", [4.0, 5.0])
    (tmp_path / "alias").symlink_to(tmp_path / "in", target_is_directory=True)
    (tmp_path / "link.csv").symlink_to(tmp_path / "in" / "one.csv")
    before = snapshot(tmp_path)
    with pytest.raises(ValueError, match=r"refusing to write the scores over the input .*one\.csv"):
        run_backtest(tmp_path / source, tmp_path / out, "robust_zscore")
    assert snapshot(tmp_path) == before


def test_an_output_inside_the_input_tree_that_overwrites_nothing_is_allowed(tmp_path: Path):
    write_series(tmp_path / "in" / "one.csv", [1.0, 2.0, 3.0])
    before = snapshot(tmp_path / "in")
    result = run_backtest(tmp_path / "in", tmp_path / "in" / "scores", "robust_zscore")
    assert result.files == 1 and len(read_scores(tmp_path / "in" / "scores" / "one.csv")) == 3
    assert snapshot(tmp_path / "in")["one.csv"] == before["one.csv"]


def test_cli_backtest_over_its_input_exits_2_with_one_line_and_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    from aiops.cli import main

    write_series(tmp_path / "in" / "s.csv", [1.0, 2.0, 3.0])
    before = snapshot(tmp_path)
    assert main(["backtest", str(tmp_path / "in"), "--out", str(tmp_path / "in"), "--detector", "robust_zscore"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == (
        f"aiops backtest: refusing to write the scores over the input {tmp_path / 'in' / 's.csv'}: "
        "choose an output outside the input files\n"
    )
    assert snapshot(tmp_path) == before
