"""NAB score of a detector on the shared NAB development subset, next to the published scores.

    python -m bench.nab [--detector ensemble_likelihood] [--nab ../shared/data/nab] [--out DIR]
    python -m bench.nab --loco      # leave one category out: an estimate of the score on unseen series

Runs ``aiops backtest``'s code (``pipeline.backtest``) over ``<nab>/data``, so the numbers are
those of the detector the pipeline runs, then scores the output with the shared, independent
scorer ``../shared/tools/nab_score.py`` (all three NAB profiles, one corpus-wide threshold each).
Prints the scores, points per second, peak memory, the state per series after 20,000 points,
and a markdown table with the published full-corpus results. The data is not part of the
project: without it the benchmark says so and exits cleanly.
"""

from __future__ import annotations

import argparse
import csv
import functools
import json
import pickle
import platform
import resource
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from aiops.cli import terminal_progress
from pipeline.backtest import run_backtest
from pipeline.detectors import DETECTORS, make_detector

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_NAB = ROOT.parent / "shared" / "data" / "nab"
DEFAULT_SCORER = ROOT.parent / "shared" / "tools" / "nab_score.py"
PROFILES = ("standard", "reward_low_FP_rate", "reward_low_FN_rate")
PUBLISHED = (
    ("ARTime", 74.9, 65.1, 80.4),
    ("Numenta HTM", 70.5, 62.6, 75.2),
    ("CAD OSE", 69.9, 67.0, 73.2),
    ("KNN CAD", 58.0, 43.4, 64.8),
    ("Random Cut Forest", 51.7, 38.4, 59.7),
    ("Twitter ADVec", 47.1, 33.6, 53.5),
    ("Windowed Gaussian", 39.6, 20.9, 47.4),
)
PUBLISHED_LOCO = (("ARTime", 70.3), ("Numenta HTM", 69.6), ("CAD OSE", 67.9))
"""Standard-profile LOCO means of the published detectors on the dev categories: their own parameters,
each left-out category scored at the threshold chosen on the other three, from their stored NAB results."""

CANDIDATES: dict[str, dict[str, object]] = {
    "defaults": {},
    "tail 0.97": {"tail_quantile": 0.97},
    "normal tail": {"tail_quantile": None},
    "range by width": {"range_extremes": 0},
    "no seasonal discount": {"seasonal_discount": False},
}
"""The parameter sets the tuning procedure chooses among, as constructor arguments of the detector.

Each is a different answer to the question the detector cannot settle by itself, how much of a
series' life is normal: ``defaults`` reads each calibration's spread from its own 95th
percentile (bursts 5 % of the time are normal); ``tail 0.97`` is more sceptical (only 3 %);
``normal tail`` trusts a normal tail as Numenta's anomaly likelihood does; ``range by width``
lets a new extreme count once it passes the old one by 2 % of the range, whatever the spacing of
the series' own extremes; ``no seasonal discount`` judges a value's deviation from the mean
even where a learned cycle explains it (a nightly batch job at its usual hour). The shipped
defaults are the first only because :func:`choose` picks them on all four categories; ``--loco``
shows what it picks without each one.

The procedure (:func:`choose`) picks the set and the alert threshold that score best on the
series it is given; ``--loco`` runs it on three categories and scores the fourth. Keep this list
short: every entry is one more chance to fit the development series instead of the problem."""


def peak_memory_mib() -> float:
    """Peak resident memory of this process (Linux reports KiB, macOS bytes)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def score(nab: Path, results: Path, scorer: Path) -> dict[str, float]:
    """The three normalised NAB scores of ``results``, from the shared scorer's JSON output."""
    return {name: result["score"] for name, result in scorer_report(nab, results, scorer).items()}


def scorer_report(nab: Path, results: Path, scorer: Path, thresholds: Path | None = None) -> dict[str, dict]:
    """The shared scorer's result per profile (``score``, ``threshold``...): at the thresholds that
    score best on ``nab``'s series, or at those of a NAB-format ``thresholds`` file."""
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "nab.json"
        command = [sys.executable, str(scorer), "--nab", str(nab), "--results", str(results), "--json", str(report)]
        if thresholds is not None:
            command += ["--detector", LOCO_NAME, "--thresholds", str(thresholds)]
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
        profiles = json.loads(report.read_text())["profiles"]
    return {name: profiles[name] for name in PROFILES}


LOCO_NAME = "candidate"
"""The detector name the thresholds files use (the results are in the flat layout, found without it)."""


def categories(nab: Path) -> list[str]:
    return sorted(path.name for path in (nab / "data").iterdir() if path.is_dir())


def nab_subset(nab: Path, keep: list[str], into: Path) -> Path:
    """A NAB folder at ``into`` that labels only the series of the categories ``keep``: what the
    scorer reads as its corpus."""
    windows = json.loads((nab / "labels" / "combined_windows.json").read_text())
    (into / "labels").mkdir(parents=True)
    kept = {name: spans for name, spans in windows.items() if name.split("/")[0] in keep}
    (into / "labels" / "combined_windows.json").write_text(json.dumps(kept))
    (into / "data").symlink_to((nab / "data").resolve())
    if (nab / "config").is_dir():
        (into / "config").symlink_to((nab / "config").resolve())
    return into


@dataclass(frozen=True)
class Choice:
    candidate: str
    thresholds: dict[str, float | None]
    """Per profile, the threshold that scored best on the series the choice was made on."""
    score: float
    """The standard profile's score there."""


def choose(nab: Path, results: dict[str, Path], scorer: Path) -> Choice:
    """The tuning procedure: the candidate whose best-threshold standard score on ``nab`` is highest,
    with that score's thresholds. It sees only the series ``nab`` labels."""
    choices = []
    for name, path in results.items():
        report = scorer_report(nab, path, scorer)
        choices.append(Choice(name, {p: report[p]["threshold"] for p in PROFILES}, report["standard"]["score"]))
    return max(choices, key=lambda choice: choice.score)


@dataclass(frozen=True)
class Row:
    category: str
    candidate: str
    scores: dict[str, float]
    thresholds: dict[str, float | None]
    """The thresholds chosen (on the other categories; for the last row, on all of them)."""


def loco(nab: Path, scorer: Path, detector: str, work: Path) -> list[Row]:
    """Leave one category out: for each category, :func:`choose` on the other three, then score the
    left-out one at the chosen candidate and thresholds. Last row: the choice on every category, as
    shipped, scored on all of them."""
    results = {}
    for name, arguments in CANDIDATES.items():
        results[name] = work / "results" / name
        new_detector = functools.partial(DETECTORS[detector], **arguments)
        run_backtest(nab / "data", results[name], new_detector if arguments else detector)
    rows = []
    every = categories(nab)
    for left_out in every:
        others = nab_subset(nab, [c for c in every if c != left_out], work / f"train-{left_out}")
        choice = choose(others, results, scorer)
        thresholds = work / f"thresholds-{left_out}.json"
        thresholds.write_text(json.dumps({LOCO_NAME: {p: {"threshold": t} for p, t in choice.thresholds.items()}}))
        test = nab_subset(nab, [left_out], work / f"test-{left_out}")
        report = scorer_report(test, results[choice.candidate], scorer, thresholds)
        rows.append(Row(left_out, choice.candidate, {p: report[p]["score"] for p in PROFILES}, choice.thresholds))
    shipped = choose(nab, results, scorer)
    rows.append(
        Row(
            "all 26 (as shipped)", shipped.candidate, score(nab, results[shipped.candidate], scorer), shipped.thresholds
        )
    )
    return rows


def loco_table(rows: list[Row]) -> str:
    folds = rows[:-1]
    mean = {p: sum(r.scores[p] for r in folds) / len(folds) for p in PROFILES}

    def line(row: Row) -> str:
        threshold = row.thresholds["standard"]
        chosen = f"{row.candidate} at {threshold:.3f}" if threshold is not None else row.candidate
        return f"| {row.category} | {chosen} | " + " | ".join(f"{row.scores[p]:.1f}" for p in PROFILES) + " |"

    lines = [
        "| left-out category | chosen (standard threshold) | standard | reward_low_FP | reward_low_FN |",
        "| --- | --- | ---: | ---: | ---: |",
    ]
    lines += [line(row) for row in folds]
    lines.append("| **LOCO mean** | | " + " | ".join(f"**{mean[p]:.1f}**" for p in PROFILES) + " |")
    lines.append(line(rows[-1]))
    lines += [f"| {who} (published, LOCO mean) | | {value} | | |" for who, value in PUBLISHED_LOCO]
    return "\n".join(lines)


def markdown_table(detector: str, scores: dict[str, float]) -> str:
    rows = [
        "| detector | standard | reward_low_FP | reward_low_FN |",
        "| --- | ---: | ---: | ---: |",
        f"| **{detector}** (this run, dev subset) | "
        + " | ".join(f"**{scores[name]:.1f}**" for name in PROFILES)
        + " |",
    ]
    rows += [
        f"| {name} (published, full corpus) | {std} | {low_fp} | {low_fn} |" for name, std, low_fp, low_fn in PUBLISHED
    ]
    return "\n".join(rows)


def state_bytes(data: Path, detector: str, points: int = 20_000) -> tuple[int, int]:
    """Smallest and largest pickled size of the detector after ``points`` points of each series
    (a series shorter than that is replayed end to end until the count is reached)."""
    sizes = []
    for path in sorted(data.rglob("*.csv")):
        values = [float(row["value"]) for row in csv.DictReader(path.open())]
        model = make_detector(detector)
        for i in range(points):
            x = values[i % len(values)]
            model.score_one(x)
            model.learn_one(x)
        sizes.append(len(pickle.dumps(model, protocol=pickle.HIGHEST_PROTOCOL)))
    return min(sizes), max(sizes)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--detector", default="ensemble_likelihood")
    parser.add_argument("--nab", type=Path, default=DEFAULT_NAB, help="NAB data (data/, labels/)")
    parser.add_argument("--scorer", type=Path, default=DEFAULT_SCORER, help="the shared nab_score.py")
    parser.add_argument("--out", type=Path, default=None, help="keep the scores here (default: a temporary dir)")
    parser.add_argument("--loco", action="store_true", help="leave one category out (see loco())")
    args = parser.parse_args(argv)

    if not (args.nab / "data").is_dir() or not args.scorer.is_file():
        print(f"NAB data or scorer not found ({args.nab}, {args.scorer}); nothing to benchmark.")
        return 0
    if args.loco:
        with tempfile.TemporaryDirectory() as tmp:
            print(loco_table(loco(args.nab, args.scorer, args.detector, args.out or Path(tmp))))
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        out = args.out or Path(tmp) / "results"
        with terminal_progress("backtest", " points") as progress:
            result = run_backtest(args.nab / "data", out, args.detector, progress=progress)
        peak = peak_memory_mib()
        scores = score(args.nab, out, args.scorer)
    cpu = platform.processor() or platform.machine()
    print(
        f"\n{args.detector}: {result.files} series, {result.points} points in {result.seconds:.1f}s "
        f"= {result.points_per_second:,.0f} points/s (backtest incl. CSV I/O, one core, {cpu}); "
        f"peak memory {peak:.0f} MiB"
    )
    print(
        "NAB "
        + " ".join(f"{name}={scores[name]:.1f}" for name in PROFILES)
        + "  (26 dev series; published scores are on the full 58-series corpus)\n"
    )
    smallest, largest = state_bytes(args.nab / "data", args.detector)
    print(f"state per series after 20,000 points (pickled): {smallest:,} to {largest:,} bytes\n")
    print(markdown_table(args.detector, scores))
    return 0


if __name__ == "__main__":
    sys.exit(main())
