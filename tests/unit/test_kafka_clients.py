"""Kafka security configured once: the settings, the client options made from them, every client
built through :mod:`connectors.kafka_client`, and the ACL table that matches the topology."""

from __future__ import annotations

import ast
import ssl
from pathlib import Path

import faust
import pytest
from pydantic import ValidationError

from agents.runtime.consumer import stage_group
from agents.topology import STAGES
from connectors.kafka_acls import AclBinding, Operation, Pattern, Resource, bindings, entry, load_table
from connectors.kafka_client import KafkaSecurity
from pipeline.config import Settings
from schemas import topics

ROOT = Path(__file__).resolve().parents[2]
CLIENT_SOURCES = ("connectors", "agents", "gateway", "aiops", "bench")
KAFKA_CLIENTS = {"AIOKafkaProducer", "AIOKafkaConsumer", "AIOKafkaAdminClient", "AIOKafkaClient"}
THE_ONE_PLACE = ROOT / "connectors" / "kafka_client.py"


def client_constructions(path: Path) -> list[str]:
    """Calls of aiokafka's client classes, and Faust apps made without ``broker_credentials``."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        name = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else ""
        if name in KAFKA_CLIENTS:
            found.append(f"{path.relative_to(ROOT)}:{node.lineno} calls {name}")
        elif name.endswith("App") and not any(keyword.arg == "broker_credentials" for keyword in node.keywords):
            found.append(f"{path.relative_to(ROOT)}:{node.lineno} makes a Faust app without broker_credentials")
    return found


def test_every_kafka_client_is_made_in_connectors_kafka_client():
    paths = [path for package in CLIENT_SOURCES for path in sorted((ROOT / package).rglob("*.py"))]
    paths.append(ROOT / "tests" / "support.py")
    offending = [found for path in paths if path != THE_ONE_PLACE for found in client_constructions(path)]
    assert offending == []


def test_the_client_check_notices_a_client_made_elsewhere(tmp_path, monkeypatch):
    monkeypatch.setattr(f"{__name__}.ROOT", tmp_path)
    module = tmp_path / "rogue.py"
    module.write_text(
        "import aiokafka, faust\n"
        "p = aiokafka.AIOKafkaProducer(bootstrap_servers='x')\n"
        "app = faust.App('id', broker='kafka://x')\n"
        "ok = faust.App('id', broker_credentials=None)\n"
    )
    assert client_constructions(module) == [
        "rogue.py:2 calls AIOKafkaProducer",
        "rogue.py:3 makes a Faust app without broker_credentials",
    ]


def settings(**fields) -> Settings:
    return Settings(_env_file=None, **fields)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"kafka_security_protocol": "SASL_SSL"}, "needs AIOPS_KAFKA_SASL_USERNAME and AIOPS_KAFKA_SASL_PASSWORD"),
        ({"kafka_security_protocol": "SASL_SSL", "kafka_sasl_username": "w"}, "needs AIOPS_KAFKA_SASL_USERNAME"),
        ({"kafka_sasl_username": "w", "kafka_sasl_password": "p"}, "does not use SASL"),
        (
            {
                "kafka_security_protocol": "SASL_PLAINTEXT",
                "kafka_sasl_username": "w",
                "kafka_sasl_password": "p",
                "kafka_ssl_cafile": "/ca.pem",
            },
            "does not use TLS",
        ),  # fmt: skip
        ({"kafka_security_protocol": "SSL", "kafka_ssl_keyfile": "/k.pem"}, "needs AIOPS_KAFKA_SSL_CERTFILE"),
        ({"kafka_security_protocol": "SASL_SSL", "kafka_sasl_mechanism": "OAUTHBEARER"}, "kafka_sasl_mechanism"),
    ],
)
def test_a_half_configured_kafka_security_is_refused_with_what_is_missing(fields, message):
    with pytest.raises(ValidationError, match=message):
        settings(**fields)


def test_the_default_is_plaintext_and_the_clients_take_it():
    security = KafkaSecurity.from_settings(settings())
    assert security.client_options() == {"security_protocol": "PLAINTEXT"}
    assert security.faust_credentials() is None


def test_sasl_over_tls_gives_aiokafka_a_verifying_context_and_the_credentials():
    security = KafkaSecurity.from_settings(
        settings(
            kafka_security_protocol="SASL_SSL",
            kafka_sasl_mechanism="SCRAM-SHA-256",
            kafka_sasl_username="worker",
            kafka_sasl_password="s3cret",
        )
    )
    options = security.client_options()
    context = options.pop("ssl_context")
    assert options == {
        "security_protocol": "SASL_SSL",
        "sasl_mechanism": "SCRAM-SHA-256",
        "sasl_plain_username": "worker",
        "sasl_plain_password": "s3cret",
    }
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    assert "s3cret" not in repr(security)


def test_faust_gets_the_same_security():
    sasl = KafkaSecurity("SASL_PLAINTEXT", "SCRAM-SHA-512", "worker", "pw").faust_credentials()
    assert isinstance(sasl, faust.SASLCredentials)
    assert (sasl.protocol.value, sasl.mechanism.value, sasl.username, sasl.password) == (
        "SASL_PLAINTEXT", "SCRAM-SHA-512", "worker", "pw",
    )  # fmt: skip
    assert KafkaSecurity("SASL_SSL", "PLAIN", "worker", "pw").faust_credentials().protocol.value == "SASL_SSL"
    assert isinstance(KafkaSecurity("SSL").faust_credentials(), faust.SSLCredentials)


def test_the_acl_table_gives_each_stage_what_the_topology_says_it_reads_and_writes():
    table = load_table()
    assert set(table["stages"]) == {stage.name for stage in STAGES}
    for stage in STAGES:
        spec = entry(table, stage.name)
        assert set(spec["read"]) == {topic.name for topic in stage.reads}, stage.name
        assert set(spec["write"]) == {topic.name for topic in stage.writes} | {topics.METRICS_DLQ.name}, stage.name
        own_group = stage.name in ("ingest", "sink")
        expected = stage_group("{app_id}", stage.name) if own_group else "{app_id}"
        assert spec["groups"] == [expected], stage.name


def test_the_acl_table_names_only_registered_topics():
    table = load_table()
    named = {
        topic
        for section in ("stages", "components")
        for spec in table[section].values()
        for key in ("read", "write")
        for topic in spec[key]
    }
    assert named <= {spec.name for spec in topics.ALL_TOPICS}


def test_only_the_gateway_and_the_policy_request_actions_and_only_the_gateway_approves():
    table = load_table()
    roles = [*table["stages"], *table["components"]]
    writers = {
        topic: {role for role in roles if topic in entry(table, role)["write"]}
        for topic in (topics.ACTION_REQUESTS.name, topics.ACTION_APPROVALS.name)
    }
    assert writers == {topics.ACTION_REQUESTS.name: {"gateway", "policy"}, topics.ACTION_APPROVALS.name: {"gateway"}}
    assert [role for role in roles if entry(table, role).get("app_topics")] == list(table["stages"])


def test_bindings_put_a_stage_under_its_deployments_app_id():
    acls = bindings(load_table(), "actuator", ["actuate"], app_id="aiops-actuator")
    assert AclBinding("User:actuator", Resource.GROUP, "aiops-actuator", Operation.READ) in acls
    assert AclBinding("User:actuator", Resource.TOPIC, "aiops-actuator-", Operation.WRITE, Pattern.PREFIXED) in acls
    assert AclBinding("User:actuator", Resource.TOPIC, topics.ACTION_REQUESTS.name, Operation.WRITE) not in acls
    with pytest.raises(KeyError, match="choose from"):
        bindings(load_table(), "x", ["notify"], app_id="a")
