"""NAB score of a detector on the shared NAB development subset, next to the published scores.

    python -m bench.nab [--detector ensemble_likelihood] [--nab ../shared/data/nab] [--out DIR]

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
import json
import pickle
import platform
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

from pipeline.backtest import run_backtest, text_progress
from pipeline.detectors import make_detector

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


def peak_memory_mib() -> float:
    """Peak resident memory of this process (Linux reports KiB, macOS bytes)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def score(nab: Path, results: Path, scorer: Path) -> dict[str, float]:
    """The three normalised NAB scores of ``results``, from the shared scorer's JSON output."""
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "nab.json"
        subprocess.run(
            [sys.executable, str(scorer), "--nab", str(nab), "--results", str(results), "--json", str(report)],
            check=True,
        )
        profiles = json.loads(report.read_text())["profiles"]
    return {name: float(profiles[name]["score"]) for name in PROFILES}


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
    args = parser.parse_args(argv)

    if not (args.nab / "data").is_dir() or not args.scorer.is_file():
        print(f"NAB data or scorer not found ({args.nab}, {args.scorer}); nothing to benchmark.")
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        out = args.out or Path(tmp) / "results"
        result = run_backtest(args.nab / "data", out, args.detector, progress=text_progress())
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
