"""The README's topic table says what the topic registry (schemas/topics.py) says: every topic,
the model its records hold, its partitions and its cleanup policy (the retention setting that
applies, or compacted), and nothing else."""

from __future__ import annotations

from pathlib import Path

from schemas.topics import ALL_TOPICS, TopicSpec

README = Path(__file__).resolve().parents[2] / "README.md"
COLUMNS = ["topic", "model", "partitions", "retention"]


def cells(line: str) -> list[str]:
    return [cell.strip() for cell in line.strip().strip("|").split("|")]


def readme_topic_table(text: str) -> dict[str, dict[str, str]]:
    """The rows of the table under ``## Topics``, by topic name (backticks removed)."""
    section = text.split("\n## Topics\n", 1)[1].split("\n## ", 1)[0]
    lines = [line for line in section.splitlines() if line.startswith("|")]
    header, rows = cells(lines[0]), lines[2:]
    assert header == COLUMNS, f"the README's topic table should have the columns {COLUMNS}, not {header}"
    table: dict[str, dict[str, str]] = {}
    for line in rows:
        row = dict(zip(header, cells(line), strict=True))
        name = row["topic"].strip("`")
        assert name not in table, f"{name} is listed twice in the README's topic table"
        table[name] = row
    return table


def expected_row(spec: TopicSpec) -> dict[str, str]:
    setting = "AIOPS_METRICS_RETENTION_HOURS" if spec.retention == "metrics" else "AIOPS_EVENTS_RETENTION_HOURS"
    return {
        "topic": f"`{spec.name}`",
        "model": f"`{spec.model.__name__}`",
        "partitions": "1" if spec.single_partition else "`AIOPS_TOPIC_PARTITIONS`",
        "retention": "compacted" if spec.compacted else f"`{setting}`",
    }


def test_the_readme_lists_exactly_the_topics_of_the_registry():
    listed = readme_topic_table(README.read_text())
    assert sorted(listed) == sorted(spec.name for spec in ALL_TOPICS)


def test_the_readme_gives_each_topic_its_model_partitions_and_retention():
    listed = readme_topic_table(README.read_text())
    wrong = {
        spec.name: {"readme": listed.get(spec.name), "registry": expected_row(spec)}
        for spec in ALL_TOPICS
        if listed.get(spec.name) != expected_row(spec)
    }
    assert wrong == {}
