"""Field types shared by every event family, so each rule is written once."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, StringConstraints

SCHEMA_VERSION = 1


def _as_utc(value: datetime) -> datetime:
    # Producers in the seed sent naive `datetime.utcnow().isoformat()` strings: those are UTC.
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


def epoch_micros(moment: datetime) -> int:
    """Microseconds since the Unix epoch: exact (a float of seconds is not), and the same for any
    time zone; a naive datetime is UTC, as :data:`UtcDatetime` reads it."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return (moment - EPOCH) // _MICROSECOND


def from_epoch_micros(micros: int) -> datetime:
    return EPOCH + micros * _MICROSECOND


UtcDatetime = Annotated[datetime, AfterValidator(_as_utc)]
"""An ISO 8601 timestamp (or epoch seconds); a time zone is honoured, none means UTC."""

FiniteFloat = Annotated[float, Field(strict=True, allow_inf_nan=False)]
"""A real number: ints and floats pass, strings, booleans, NaN and infinities do not."""

UnitScore = Annotated[float, Field(strict=True, ge=0.0, le=1.0, allow_inf_nan=False)]

ServiceName = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9._:/-]*$"),
]
"""Letters, digits and ``._:/-``: the Kafka key of every topic, so it must be stable and short."""

MetricName = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=128, pattern=r"^[A-Za-z_][A-Za-z0-9_.:-]*$"),
]

ShortText = Annotated[str, StringConstraints(max_length=1024)]
LongText = Annotated[str, StringConstraints(max_length=32_768)]
TagKey = Annotated[str, StringConstraints(min_length=1, max_length=128)]
TagValue = Annotated[str, StringConstraints(max_length=256)]
Tags = Annotated[dict[TagKey, TagValue], Field(max_length=32)]


def _lower(value: object) -> object:
    return value.strip().lower() if isinstance(value, str) else value


CaseInsensitive = BeforeValidator(_lower)
"""For enums whose values are lower case: the seed's clients sent ``Critical``, ``HIGH``..."""


def utc_now() -> datetime:
    return datetime.now(UTC)


class Event(BaseModel):
    """Base of every event: unknown fields are an error, so a typo never passes silently."""

    model_config = ConfigDict(extra="forbid", frozen=True, str_max_length=32_768)

    schema_version: Literal[1] = SCHEMA_VERSION
