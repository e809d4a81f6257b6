"""Token parsing and the role rules of the gateway, without a broker."""

from __future__ import annotations

from pathlib import Path

import pytest

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
