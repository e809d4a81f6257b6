"""Replay recorded series through a detector, one point at a time, to measure it offline.

A backtest must judge exactly what the pipeline runs, so each series gets a fresh detector from
``make_detector`` and every value is scored before it is learned, as ``pipeline.detection`` does.
Input is ``timestamp,value`` CSV (one file, or a folder tree of them); output is one
``timestamp,anomaly_score`` row per input row, in the same tree layout, which is what NAB-style
scorers read.
"""

from __future__ import annotations

import csv
import math
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from pipeline.detectors import Detector, make_detector

Progress = Callable[[int, int], None]
"""``progress(done, total)`` in points; the command line draws it, the core only counts."""
DetectorChoice = str | Callable[[], Detector]
"""A detector's name, or a callable that makes one (a benchmark trying other parameters)."""


def _factory(detector: DetectorChoice) -> Callable[[], Detector]:
    if callable(detector):
        return detector
    make_detector(detector)  # fail before anything is read or written when the name is wrong
    return lambda: make_detector(detector)


@dataclass(frozen=True)
class BacktestResult:
    files: int
    points: int
    seconds: float

    @property
    def points_per_second(self) -> float:
        return self.points / self.seconds if self.seconds > 0 else float("inf")


def score_series(values: Iterable[float], detector: DetectorChoice, warmup: int = 0) -> Iterator[float]:
    """Scores of ``values`` in order: each one from a model that has seen only the values before it.

    ``warmup`` forces the first scores to 0 like the pipeline's warm-up. A value that is not a
    finite number gets score 0 and is not learned, so one bad row cannot poison the model.
    """
    model = _factory(detector)()
    seen = 0
    for x in values:
        if not math.isfinite(x):
            yield 0.0
            continue
        score = model.score_one(x) if seen >= warmup else 0.0
        model.learn_one(x)
        seen += 1
        yield score


def read_series(path: Path) -> tuple[list[str], list[float]]:
    """Timestamps and values of a ``timestamp,value`` CSV; an unparsable value becomes NaN."""
    stamps: list[str] = []
    values: list[float] = []
    with path.open(newline="") as handle:
        reader = csv.reader(handle)
        header = next(reader, None)
        if header is None:
            return stamps, values
        columns = [name.strip().lower() for name in header]
        t_col = columns.index("timestamp") if "timestamp" in columns else 0
        v_col = columns.index("value") if "value" in columns else len(columns) - 1
        for row in reader:
            if not row:
                continue
            stamps.append(row[t_col])
            try:
                values.append(float(row[v_col]))
            except (ValueError, IndexError):
                values.append(math.nan)
    return stamps, values


def input_files(source: Path) -> list[tuple[Path, Path]]:
    """Each CSV under ``source`` with its path relative to it (just its name for a single file)."""
    if source.is_file():
        return [(source, Path(source.name))]
    return [(path, path.relative_to(source)) for path in sorted(source.rglob("*.csv")) if path.is_file()]


def count_rows(path: Path) -> int:
    with path.open("rb") as handle:
        return max(sum(1 for _ in handle) - 1, 0)


def output_path(source: Path, out: Path, relative: Path) -> Path:
    """Where a series' scores go: ``out`` itself for a single input file when ``out`` ends in ``.csv``,
    else ``out/relative``, so the output tree mirrors the input tree."""
    return out if source.is_file() and out.suffix == ".csv" else out / relative


def refuse_overwriting_input(inputs: Iterable[Path], targets: Iterable[Path]) -> None:
    """Raise ValueError when a score file would replace one of the input series.

    Scores written over the series they came from destroy the recording, and nothing can bring it
    back: this runs before anything is written. Files are compared by device and inode, so a
    symbolic link, a hard link or a case-insensitive file system cannot hide a collision.
    """
    identities = {_identity(path): path for path in inputs}
    for target in targets:
        if target.exists() and (source := identities.get(_identity(target))) is not None:
            raise ValueError(
                f"refusing to write the scores over the input {source}: choose an output outside the input files"
            )


def _identity(path: Path) -> tuple[int, int]:
    status = path.stat()
    return status.st_dev, status.st_ino


def run_backtest(
    source: Path, out: Path, detector: DetectorChoice, warmup: int = 0, progress: Progress | None = None
) -> BacktestResult:
    """Score every series under ``source`` into ``out``; ``progress(done, total)`` is told as points go by.

    A single input file writes ``out`` itself when ``out`` ends in ``.csv``, else ``out/<name>``.
    Raises ValueError, before writing anything, when the detector is unknown or an output file
    would be one of the input files.
    """
    new_detector = _factory(detector)
    pairs = input_files(source)
    targets = [output_path(source, out, relative) for _, relative in pairs]
    refuse_overwriting_input((path for path, _ in pairs), targets)
    total = sum(count_rows(path) for path, _ in pairs)
    done = 0
    started = time.perf_counter()
    for (path, _), target in zip(pairs, targets, strict=True):
        target.parent.mkdir(parents=True, exist_ok=True)
        stamps, values = read_series(path)
        with target.open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(("timestamp", "anomaly_score"))
            for i, (stamp, score) in enumerate(zip(stamps, score_series(values, new_detector, warmup), strict=True)):
                writer.writerow((stamp, f"{score:.6f}"))
                if progress is not None and (i + 1) % 2000 == 0:
                    progress(done + i + 1, total)
        done += len(values)
        if progress is not None:
            progress(done, total)
    return BacktestResult(files=len(pairs), points=done, seconds=time.perf_counter() - started)
