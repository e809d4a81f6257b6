"""Token parsing, the role rules of the gateway and its bearer scheme in the OpenAPI document, without a broker."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from gateway import create_app
from gateway.auth import Role, TokenConfigError, TokenTable
from pipeline.config import Settings


def table(tokens: str = "", path: Path | None = None) -> TokenTable:
    return TokenTable.from_settings(Settings(api_tokens=tokens, api_tokens_file=path))


def test_tokens_from_the_variable_and_the_file_with_names(tmp_path: Path):
    tokens_file = tmp_path / "tokens"
    tokens_file.write_text("# comment\n\nfile-token-000001:viewer\nfile-token-000002:Operator:pager # inline\n")
    tokens = table("env-token-000001:operator, env-token-000002:viewer:dash", tokens_file)
    assert tokens.configured
    assert tokens.lookup("env-token-000001").name == "operator"
    assert tokens.lookup("env-token-000002").role is Role.VIEWER
    assert tokens.lookup("file-token-000002").name == "pager" and tokens.lookup("file-token-000002").can_write
    assert tokens.lookup("file-token-000001").role is Role.VIEWER
    assert tokens.lookup("nope") is None


def test_no_tokens_means_not_configured():
    assert not table().configured


@pytest.mark.parametrize(
    ("tokens", "message"),
    [
        ("just-a-token-without-role", "expected token:role"),
        ("long-enough-token:admin", "role must be viewer or operator"),
        ("short:viewer", "shorter than 8"),
        ("a:b:c:d", "expected token:role"),
    ],
)
def test_bad_entries_are_refused_with_the_entry_named(tokens: str, message: str):
    with pytest.raises(TokenConfigError, match=message) as caught:
        table(tokens)
    assert "AIOPS_API_TOKENS entry 1" in str(caught.value)


def test_a_missing_tokens_file_says_which(tmp_path: Path):
    with pytest.raises(TokenConfigError, match="cannot read AIOPS_API_TOKENS_FILE"):
        table(path=tmp_path / "missing")


# --- the bearer scheme in the OpenAPI document, and the answers it must not change ------------------

OPEN_OPERATIONS = {("get", "/health"), ("get", "/api/v1/health"), ("get", "/api/v1/healthz"), ("get", "/metrics")}
OPERATOR_TOKEN, VIEWER_TOKEN = "unit-operator-token", "unit-viewer-token"


def test_the_openapi_document_declares_the_bearer_scheme_and_the_protected_operations_use_it():
    schema = create_app(Settings(kafka_bootstrap="127.0.0.1:9")).openapi()
    schemes = schema["components"]["securitySchemes"]
    [(name, scheme)] = schemes.items()
    assert scheme["type"] == "http" and scheme["scheme"] == "bearer" and "AIOPS_API_TOKENS" in scheme["description"]
    operations = {(method, path): op for path, ops in schema["paths"].items() for method, op in ops.items()}
    assert OPEN_OPERATIONS <= set(operations)
    for key, operation in operations.items():
        if key in OPEN_OPERATIONS:
            assert "security" not in operation, key
        else:
            assert operation.get("security") == [{name: []}], key
    assert ("post", "/api/v1/rollout_restart") in operations and ("get", "/api/v1/stream") in operations


async def answer(method: str, path: str, tokens: str, authorization: str | None) -> httpx.Response:
    app = create_app(Settings(kafka_bootstrap="127.0.0.1:9", api_tokens=tokens))  # a closed port: no Kafka
    headers = {} if authorization is None else {"Authorization": authorization}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw") as client:
        return await client.request(method, path, headers=headers, json={"metrics": []})


TOKENS = f"{OPERATOR_TOKEN}:operator,{VIEWER_TOKEN}:viewer"


@pytest.mark.parametrize(
    ("method", "path", "tokens", "authorization", "status", "detail", "challenge"),
    [
        ("GET", "/api/v1/services", TOKENS, None, 401, "this gateway requires an API token", 'Bearer realm="aiops"'),
        ("GET", "/api/v1/services", TOKENS, "Basic dXNlcjpwdw==", 401, "must be 'Bearer <token>'", "invalid_request"),
        ("GET", "/api/v1/services", TOKENS, "Bearer   ", 401, "must be 'Bearer <token>'", "invalid_request"),
        ("GET", "/api/v1/services", TOKENS, "Bearer not-a-known-token", 401, "unknown API token", "invalid_token"),
        ("POST", "/api/v1/metrics", TOKENS, None, 401, "this action needs an operator token", 'realm="aiops"'),
        ("POST", "/api/v1/metrics", TOKENS, f"bearer {VIEWER_TOKEN}", 403, "has the viewer role", None),
        ("POST", "/api/v1/metrics", "", f"Bearer {OPERATOR_TOKEN}", 403, "writes are disabled", None),
    ],
)
async def test_refusals_keep_their_status_message_and_challenge(
    method: str, path: str, tokens: str, authorization: str | None, status: int, detail: str, challenge: str | None
):
    response = await answer(method, path, tokens, authorization)
    assert response.status_code == status and detail in response.json()["detail"], response.text
    if challenge is None:
        assert "www-authenticate" not in response.headers
    else:
        assert challenge in response.headers["www-authenticate"]


@pytest.mark.parametrize(
    ("tokens", "authorization"),
    [(TOKENS, f"Bearer {VIEWER_TOKEN}"), (TOKENS, f"BEARER  {OPERATOR_TOKEN} "), ("", None), ("", "Bearer unknown")],
)
async def test_reads_pass_with_any_valid_token_and_with_none_when_none_is_configured(
    tokens: str, authorization: str | None
):
    assert (await answer("GET", "/api/v1/services", tokens, authorization)).status_code == 200
