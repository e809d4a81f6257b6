"""Bearer tokens with roles: viewers read, operators also write and approve.

Tokens come from ``AIOPS_API_TOKENS`` ("token:role,token:role") and ``AIOPS_API_TOKENS_FILE``
(one ``token:role`` per line, ``#`` comments). An entry may carry a third part, a name
(``token:operator:oncall``), which is what actions record as who asked; without one, the role is.

With no token configured, reads are open and every write is refused: a gateway started without
configuration must not let anyone restart production.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Annotated

from fastapi import HTTPException, Request, Security, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from pipeline.config import Settings

HOW_TO_CONFIGURE = (
    'set AIOPS_API_TOKENS="<token>:operator" (or AIOPS_API_TOKENS_FILE with one token:role per line) '
    "and send it as 'Authorization: Bearer <token>'"
)


class Role(StrEnum):
    VIEWER = "viewer"
    OPERATOR = "operator"


@dataclass(frozen=True)
class Principal:
    """Who is asking: the name recorded with their actions, and what they may do."""

    name: str
    role: Role

    @property
    def can_write(self) -> bool:
        return self.role is Role.OPERATOR


ANONYMOUS = Principal("anonymous", Role.VIEWER)


class TokenConfigError(ValueError):
    """The token settings cannot be parsed; the message names the entry and the expected form."""


@dataclass(frozen=True)
class _Entry:
    token: bytes
    principal: Principal


class TokenTable:
    def __init__(self, entries: list[_Entry]) -> None:
        self._entries = entries

    @property
    def configured(self) -> bool:
        return bool(self._entries)

    @classmethod
    def from_settings(cls, settings: Settings) -> TokenTable:
        texts = [(f"AIOPS_API_TOKENS entry {n}", part) for n, part in enumerate(settings.api_tokens.split(","), 1)]
        if settings.api_tokens_file is not None:
            path = Path(settings.api_tokens_file)
            try:
                lines = path.read_text().splitlines()
            except OSError as err:
                raise TokenConfigError(f"cannot read AIOPS_API_TOKENS_FILE {path}: {err.strerror}") from None
            texts += [(f"{path}:{n}", line.split("#", 1)[0]) for n, line in enumerate(lines, 1)]
        return cls([entry for where, text in texts if (entry := _parse(where, text.strip())) is not None])

    def lookup(self, token: str) -> Principal | None:
        """The token's principal; every entry is compared in constant time so timing says nothing."""
        found = None
        candidate = token.encode()
        for entry in self._entries:
            if hmac.compare_digest(entry.token, candidate):
                found = entry.principal
        return found


def _parse(where: str, text: str) -> _Entry | None:
    if not text:
        return None
    parts = text.split(":")
    if len(parts) not in (2, 3) or not parts[0]:
        raise TokenConfigError(f"{where}: expected token:role or token:role:name, got {len(parts)} part(s)")
    token, role = parts[0], parts[1].strip().lower()
    if role not in Role.__members__.values():
        raise TokenConfigError(f"{where}: role must be viewer or operator, got {role!r}")
    if len(token) < 8:
        raise TokenConfigError(f"{where}: token is shorter than 8 characters; use a long random string")
    name = parts[2].strip() if len(parts) == 3 and parts[2].strip() else role
    return _Entry(token.encode(), Principal(name, Role(role)))


BEARER = HTTPBearer(
    scheme_name="bearerAuth",
    description="An API token of AIOPS_API_TOKENS: a viewer's reads, an operator's also writes and approves.",
    auto_error=False,
)
"""Declares the scheme in the OpenAPI document (so /docs can send a token) and parses the header;
``auto_error=False`` leaves the answers to a missing or bad token to the checks below."""
Credentials = Annotated[HTTPAuthorizationCredentials | None, Security(BEARER)]


def _unauthorized(detail: str, error: str | None = None) -> HTTPException:
    challenge = 'Bearer realm="aiops"' + (f', error="{error}"' if error else "")
    return HTTPException(status.HTTP_401_UNAUTHORIZED, detail, headers={"WWW-Authenticate": challenge})


def identify(request: Request, credentials: HTTPAuthorizationCredentials | None) -> Principal | None:
    """The caller from the Authorization header: None if anonymous; 401 if a token is given but unknown."""
    table: TokenTable = request.app.state.tokens
    if credentials is None:
        if request.headers.get("authorization"):
            raise _unauthorized("the Authorization header must be 'Bearer <token>'", "invalid_request")
        return None
    principal = table.lookup(credentials.credentials) if table.configured else None
    if principal is None:
        raise _unauthorized("unknown API token: check the token, or ask for one of AIOPS_API_TOKENS", "invalid_token")
    return principal


def require_viewer(request: Request, credentials: Credentials) -> Principal:
    """Reads: open when no token is configured, otherwise any valid token."""
    table: TokenTable = request.app.state.tokens
    if not table.configured:
        return ANONYMOUS
    principal = identify(request, credentials)
    if principal is None:
        raise _unauthorized("this gateway requires an API token: send 'Authorization: Bearer <token>'")
    return principal


def require_operator(request: Request, credentials: Credentials) -> Principal:
    """Writes and approvals: an operator token, always; refused outright when no token is configured."""
    table: TokenTable = request.app.state.tokens
    if not table.configured:
        raise HTTPException(
            status.HTTP_403_FORBIDDEN, f"writes are disabled because no API token is configured: {HOW_TO_CONFIGURE}"
        )
    principal = identify(request, credentials)
    if principal is None:
        raise _unauthorized(f"this action needs an operator token: {HOW_TO_CONFIGURE}")
    if not principal.can_write:
        raise HTTPException(
            status.HTTP_403_FORBIDDEN,
            f"the token of {principal.name!r} has the viewer role, which may only read; this needs an operator token",
        )
    return principal
