"""A worker that would carry actions out for real refuses to start without allow-lists, before Kafka."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from agents.topology import build_app
from pipeline.config import Settings
from pipeline.policy import PolicyFileError


def worker(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    env = os.environ | {"AIOPS_KAFKA_BOOTSTRAP": "127.0.0.1:1"} | env
    return subprocess.run(
        [sys.executable, "-m", "aiops.cli", "worker"], env=env, capture_output=True, text=True, timeout=120
    )


@pytest.mark.parametrize("guardrails", [None, {"allowed_clusters": ["prod"], "allowed_projects": []}])
def test_executing_without_allow_lists_stops_the_worker_with_exit_code_2(tmp_path: Path, guardrails):
    env = {"AIOPS_ACTIONS_EXECUTE": "true"}
    if guardrails is not None:
        policy = tmp_path / "policy.yaml"
        policy.write_text(yaml.safe_dump({"guardrails": guardrails}))
        env["AIOPS_POLICY_FILE"] = str(policy)
    done = worker(env)
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith("aiops worker: bad policy file:")
    assert "AIOPS_ACTIONS_EXECUTE=true needs" in done.stderr and "guardrails.allowed_namespaces" in done.stderr
    if guardrails is not None:
        assert str(tmp_path / "policy.yaml") in done.stderr and "allowed_clusters" not in done.stderr


def test_only_an_executing_actuator_needs_them(tmp_path: Path):
    dry_run = Settings(worker_agents="actuate", data_dir=tmp_path)
    assert build_app(dry_run) is not None
    others = Settings(worker_agents="ingest,detect,sink", actions_execute=True, data_dir=tmp_path)
    assert build_app(others) is not None
    with pytest.raises(PolicyFileError, match="allowed_namespaces"):
        build_app(Settings(worker_agents="actuate", actions_execute=True, data_dir=tmp_path))
