"""Error answers: client mistakes are 4xx that name the field; anything else is a logged 500 without internals."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError

log = logging.getLogger("aiops.gateway")


def clean_errors(errors: Sequence[Any], prefix: tuple[str | int, ...] = ()) -> list[dict[str, Any]]:
    """Pydantic errors as plain JSON: location, message and type (no echoed input, no exception objects)."""
    cleaned = []
    for item in errors:
        loc = list(prefix) + [part for part in item.get("loc", ())]
        cleaned.append(
            {"loc": loc, "msg": str(item.get("msg", "invalid")), "type": str(item.get("type", "value_error"))}
        )
    return cleaned


def summary(errors: list[dict[str, Any]]) -> str:
    return "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}" for e in errors[:10])


def validation_error(err: ValidationError, prefix: tuple[str | int, ...] = ("body",)) -> RequestValidationError:
    """A model error found inside a route (e.g. a rule across fields), answered like any other 422."""
    return RequestValidationError(clean_errors(err.errors(include_url=False), prefix))


async def _on_validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = clean_errors(exc.errors())
    return JSONResponse(status_code=422, content={"detail": errors, "message": summary(errors)})


async def _on_unexpected(request: Request, exc: Exception) -> JSONResponse:
    incident = uuid.uuid4().hex[:12]
    log.error(
        "unhandled error",
        exc_info=exc,
        extra={"incident": incident, "method": request.method, "path": request.url.path},
    )
    return JSONResponse(
        status_code=500,
        content={"detail": f"internal error; the gateway logged it as incident {incident}: report that id"},
    )


def install(app: FastAPI) -> None:
    app.add_exception_handler(RequestValidationError, _on_validation_error)
    app.add_exception_handler(Exception, _on_unexpected)
