"""The one JSON codec every topic uses: UTF-8 JSON of the pydantic model, validated on the way in."""

from __future__ import annotations

from typing import TypeVar

from pydantic import BaseModel, ValidationError

E = TypeVar("E", bound=BaseModel)

MAX_REPORTED_ERRORS = 10


class DecodeError(ValueError):
    """A record that does not match its schema; ``reason`` names each offending field."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def encode(event: BaseModel) -> bytes:
    return event.model_dump_json().encode()


def decode(model: type[E], raw: bytes | str) -> E:
    """Parse and validate one record, or raise :class:`DecodeError` saying what is wrong."""
    try:
        return model.model_validate_json(raw)
    except ValidationError as err:
        raise DecodeError(describe(err)) from None


def describe(err: ValidationError) -> str:
    """``field.path: message`` for each error, e.g. ``metrics.2.value: Input should be a finite number``."""
    parts = []
    for item in err.errors(include_url=False)[:MAX_REPORTED_ERRORS]:
        location = ".".join(str(part) for part in item["loc"]) or "record"
        parts.append(f"{location}: {item['msg']}")
    if err.error_count() > MAX_REPORTED_ERRORS:
        parts.append(f"... and {err.error_count() - MAX_REPORTED_ERRORS} more")
    return "; ".join(parts)
