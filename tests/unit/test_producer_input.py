"""Reading samples for `aiops produce`: JSON lines and CSV, bad lines reported with their number, progress counted."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

from aiops.producer import BadLine, lines_with_progress, read_csv, read_json_lines, regular_file_size


def test_json_lines_take_samples_and_batches_and_report_bad_lines():
    def sample(second: int, value: object) -> dict:
        return {"timestamp": f"2026-01-05T10:00:0{second}Z", "service_name": "a", "metric_name": "m", "value": value}

    lines = [
        json.dumps(sample(0, 1)),
        "",
        json.dumps({"metrics": [sample(1, 2), sample(2, "x")]}),
        "{broken",
    ]
    items = list(read_json_lines(lines))
    assert [i.value for i in items if not isinstance(i, BadLine)] == [1.0, 2.0]
    bad = [i for i in items if isinstance(i, BadLine)]
    assert [(b.number, b.reason.split(":")[0]) for b in bad] == [(3, "metrics.1.value"), (4, "record")]


def test_csv_keeps_extra_columns_as_tags_and_reports_bad_rows():
    lines = [
        "timestamp,service_name,metric_name,value,region",
        "2026-01-05T10:00:00Z,payment-api,latency_p95,182.5,eu",
        "2026-01-05T10:00:01Z,payment-api,latency_p95,fast,eu",
        "2026-01-05T10:00:02Z,payment-api,latency_p95,nan,eu",
    ]
    items = list(read_csv(lines))
    assert items[0].tags == {"region": "eu"} and items[0].value == 182.5
    assert items[1] == BadLine(3, "value: not a number: 'fast'")
    assert isinstance(items[2], BadLine) and items[2].reason.startswith("value: Input should be a finite number")


def test_csv_without_the_needed_columns_says_which():
    [bad] = list(read_csv(["time,service,value", "1,a,2"]))
    assert bad.number == 1 and "timestamp, service_name, metric_name" in bad.reason


def test_a_file_is_counted_in_bytes_up_to_its_size(tmp_path: Path):
    path = tmp_path / "samples.jsonl"
    # Non-ASCII text: counting characters instead of bytes would stop short of the size.
    path.write_text("".join(f'{{"service_name": "zürich-{i}"}}\n' for i in range(2_500)), encoding="utf-8")
    told: list[tuple[int, int | None]] = []
    with path.open(newline="", encoding="utf-8") as stream:
        assert regular_file_size(stream) == path.stat().st_size
        lines = list(lines_with_progress(stream, lambda done, total: told.append((done, total)), every=1_000))
    assert "".join(lines) == path.read_text(encoding="utf-8")
    assert len(told) == 3 and all(total == path.stat().st_size for _, total in told)
    counts = [done for done, _ in told]
    assert counts == sorted(counts) and 0 < counts[0] and counts[-1] == path.stat().st_size


def test_a_pipe_or_memory_stream_is_counted_in_lines_without_a_total():
    told: list[tuple[int, int | None]] = []
    stream = io.StringIO("a\n" * 2_500)
    assert regular_file_size(stream) is None
    assert len(list(lines_with_progress(stream, lambda done, total: told.append((done, total)), every=1_000))) == 2_500
    assert told == [(1_000, None), (2_000, None), (2_500, None)]

    reading, writing = os.pipe()
    os.close(writing)
    with open(reading) as pipe:
        assert regular_file_size(pipe) is None
