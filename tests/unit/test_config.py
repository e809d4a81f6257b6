"""Configuration: one settings class, read from AIOPS_* variables, and documented in the README."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from pipeline.config import Settings

README = Path(__file__).resolve().parents[2] / "README.md"


def test_environment_variables_with_the_prefix_configure_the_pipeline(monkeypatch):
    monkeypatch.setenv("AIOPS_KAFKA_BOOTSTRAP", "broker-a:9092,broker-b:9092")
    monkeypatch.setenv("AIOPS_TOPIC_PARTITIONS", "12")
    settings = Settings()
    assert settings.kafka_bootstrap == "broker-a:9092,broker-b:9092"
    assert settings.topic_partitions == 12


def test_a_bad_value_is_an_error_naming_the_setting(monkeypatch):
    monkeypatch.setenv("AIOPS_TOPIC_PARTITIONS", "zero")
    with pytest.raises(ValidationError, match="topic_partitions"):
        Settings()


def test_every_setting_is_documented_in_the_readme():
    readme = README.read_text()
    missing = [name for name in Settings.model_fields if f"`AIOPS_{name.upper()}`" not in readme]
    assert missing == []
