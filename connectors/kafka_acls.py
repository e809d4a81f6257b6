"""Kafka ACLs and SCRAM users, through Kafka's own admin API.

The table of what each component may read and write is ``deploy/kafka-acls.yaml``; this module
turns an entry of it into ACL bindings and creates them, and creates SCRAM credentials. aiokafka's
admin client has neither call, but its protocol layer carries any request: CreateAcls (version 1,
which Kafka 4 still serves) and AlterUserScramCredentials are written out here, so no JVM tool is
needed and an administrator's script, the local broker and the tests share one path.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import IntEnum
from pathlib import Path
from typing import Any

import yaml
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.protocol.admin import CreateAclsRequest_v1, DescribeAclsRequest_v1
from aiokafka.protocol.api import Request, RequestStruct, Response
from aiokafka.protocol.types import CompactArray, CompactBytes, CompactString, Int8, Int16, Int32, Schema, TaggedFields

ACL_TABLE = Path(__file__).resolve().parents[1] / "deploy" / "kafka-acls.yaml"
"""The table in a source checkout; an installed package is given its path."""


class Resource(IntEnum):
    TOPIC = 2
    GROUP = 3


class Operation(IntEnum):
    READ = 3
    WRITE = 4
    CREATE = 5


class Pattern(IntEnum):
    LITERAL = 3
    PREFIXED = 4


ALLOW = 3
ANY = 1
ANY_HOST = "*"


@dataclass(frozen=True, order=True)
class AclBinding:
    """One allowed operation of one principal (``User:<name>``) on one resource or resource prefix."""

    principal: str
    resource: Resource
    name: str
    operation: Operation
    pattern: Pattern = Pattern.LITERAL


class KafkaAdminError(RuntimeError):
    """The broker refused an ACL or credential change; the message has its reasons."""


def load_table(path: Path = ACL_TABLE) -> dict[str, Any]:
    return yaml.safe_load(path.read_text())


def entry(table: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    """A stage's or a component's entry of the table; KeyError names the unknown one."""
    found = table["stages"].get(name) or table["components"].get(name)
    if found is None:
        known = [*table["stages"], *table["components"]]
        raise KeyError(f"{name!r} is not in the ACL table: choose from {', '.join(known)}")
    return found


def bindings(table: Mapping[str, Any], user: str, roles: Iterable[str], app_id: str) -> list[AclBinding]:
    """The bindings ``user`` needs to run ``roles`` (stages and components of the table) under ``app_id``."""
    principal = f"User:{user}"
    found: set[AclBinding] = set()
    for role in roles:
        spec = entry(table, role)
        found |= {AclBinding(principal, Resource.TOPIC, topic, Operation.READ) for topic in spec.get("read", ())}
        found |= {AclBinding(principal, Resource.TOPIC, topic, Operation.WRITE) for topic in spec.get("write", ())}
        found |= {
            AclBinding(principal, Resource.GROUP, group.format(app_id=app_id), Operation.READ)
            for group in spec.get("groups", ())
        }
        if spec.get("app_topics"):
            found |= {
                AclBinding(principal, Resource.TOPIC, f"{app_id}-", operation, Pattern.PREFIXED)
                for operation in (Operation.CREATE, Operation.READ, Operation.WRITE)
            }
    return sorted(found)


class _CreateAcls(Request[CreateAclsRequest_v1]):
    """All the bindings in one request (aiokafka's own ``CreateAclsRequest`` carries one)."""

    API_KEY = 30

    def __init__(self, acls: Iterable[AclBinding]) -> None:
        self.creations = [
            (acl.resource, acl.name, acl.pattern, acl.principal, ANY_HOST, acl.operation, ALLOW) for acl in acls
        ]

    def build(self, request_struct_class: type[CreateAclsRequest_v1]) -> CreateAclsRequest_v1:
        return request_struct_class(self.creations)


async def create_acls(admin: AIOKafkaAdminClient, acls: Iterable[AclBinding], wait_seconds: float = 30.0) -> None:
    """Create ``acls`` (creating an existing one is harmless); raises :class:`KafkaAdminError` with every refusal.

    The controller commits ACLs before it answers, but a broker's authorizer applies them a moment
    later; this returns once the broker asked lists them all, so a client started next is judged by them.
    """
    acls = list(acls)
    if not acls:
        return
    response = await admin._send_request(_CreateAcls(acls))  # noqa: SLF001 - the admin's one way to send a request
    errors = [
        f"{acl}: {code} {message}"
        for acl, (code, message) in zip(acls, response.creation_responses, strict=True)
        if code
    ]
    if errors:
        raise KafkaAdminError("the broker refused ACLs: " + "; ".join(errors))
    deadline = time.monotonic() + wait_seconds
    for principal in {acl.principal for acl in acls}:
        wanted = {acl for acl in acls if acl.principal == principal}
        while not wanted <= await acls_of(admin, principal):
            if time.monotonic() > deadline:
                raise KafkaAdminError(f"ACLs of {principal} not in force after {wait_seconds:.0f}s")
            await asyncio.sleep(0.05)


class _DescribeAcls(Request[DescribeAclsRequest_v1]):
    """Version 1 only: aiokafka's version 2 lacks the compact encoding Kafka expects of it."""

    API_KEY = 29

    def __init__(self, principal: str) -> None:
        self.principal = principal

    def build(self, request_struct_class: type[DescribeAclsRequest_v1]) -> DescribeAclsRequest_v1:
        return request_struct_class(ANY, None, ANY, self.principal, None, ANY, ANY)


async def acls_of(admin: AIOKafkaAdminClient, principal: str) -> set[AclBinding]:
    """The allowing ACLs of ``principal`` (``User:<name>``) the broker knows."""
    response = await admin._send_request(_DescribeAcls(principal))  # noqa: SLF001 - see create_acls
    if response.error_code:
        raise KafkaAdminError(f"describing the ACLs of {principal} failed: {response.error_message}")
    return {
        AclBinding(who, Resource(kind), name, Operation(operation), Pattern(pattern))
        for kind, name, pattern, entries in response.resources
        for who, _host, operation, permission in entries
        if permission == ALLOW and kind in iter(Resource) and operation in iter(Operation)
    }


class _ScramResponse(Response):
    API_KEY = 51
    API_VERSION = 0
    SCHEMA = Schema(
        ("throttle_time_ms", Int32),
        (
            "results",
            CompactArray(
                ("user", CompactString("utf-8")),
                ("error_code", Int16),
                ("error_message", CompactString("utf-8")),
                ("tags", TaggedFields),
            ),
        ),
        ("tags", TaggedFields),
    )


class _ScramRequestV0(RequestStruct):
    FLEXIBLE_VERSION = True
    API_KEY = 51
    API_VERSION = 0
    RESPONSE_TYPE = _ScramResponse
    SCHEMA = Schema(
        ("deletions", CompactArray(("name", CompactString("utf-8")), ("mechanism", Int8), ("tags", TaggedFields))),
        (
            "upsertions",
            CompactArray(
                ("name", CompactString("utf-8")),
                ("mechanism", Int8),
                ("iterations", Int32),
                ("salt", CompactBytes),
                ("salted_password", CompactBytes),
                ("tags", TaggedFields),
            ),
        ),
        ("tags", TaggedFields),
    )


SCRAM_MECHANISMS = {"SCRAM-SHA-256": (1, "sha256"), "SCRAM-SHA-512": (2, "sha512")}
SCRAM_ITERATIONS = 8192
"""Above Kafka's minimum of 4096; each login costs the broker this many hash rounds."""


class _AlterScram(Request[_ScramRequestV0]):
    API_KEY = 51

    def __init__(self, upsertions: list[tuple[Any, ...]]) -> None:
        self.upsertions = upsertions

    def build(self, request_struct_class: type[_ScramRequestV0]) -> _ScramRequestV0:
        return request_struct_class([], self.upsertions, {})


async def upsert_scram_users(
    admin: AIOKafkaAdminClient, users: Mapping[str, str], mechanisms: Iterable[str] = tuple(SCRAM_MECHANISMS)
) -> None:
    """Give each user (name: password) SCRAM credentials for ``mechanisms``, as ``kafka-configs
    --alter --add-config 'SCRAM-SHA-512=[password=...]'`` does: the broker keeps only a salted
    hash (RFC 5802), computed here, so the password itself never crosses the wire. One request
    per mechanism: the broker refuses two changes of one user in one request."""
    errors = []
    for mechanism in mechanisms:
        code, digest = SCRAM_MECHANISMS[mechanism]
        upsertions = []
        for name, password in users.items():
            salt = os.urandom(32)
            salted = hashlib.pbkdf2_hmac(digest, password.encode(), salt, SCRAM_ITERATIONS)
            upsertions.append((name, code, SCRAM_ITERATIONS, salt, salted, {}))
        if upsertions:
            response = await admin._send_request(_AlterScram(upsertions))  # noqa: SLF001 - see create_acls
            errors += [f"{user} ({mechanism}): {code} {message}" for user, code, message, _ in response.results if code]
    if errors:
        raise KafkaAdminError("the broker refused SCRAM credentials: " + "; ".join(errors))
