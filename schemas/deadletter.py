"""Dead letters: a record we could not accept, kept with the reason instead of being lost."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from schemas.common import Event, LongText, ShortText, UtcDatetime, utc_now

MAX_PAYLOAD_CHARS = 32_768


class DeadLetter(Event):
    source_topic: ShortText
    partition: Annotated[int, Field(ge=0)] | None = None
    offset: Annotated[int, Field(ge=0)] | None = None
    key: ShortText | None = None
    payload: LongText
    payload_truncated: bool = False
    reason: LongText
    received_at: UtcDatetime = Field(default_factory=utc_now)

    @classmethod
    def for_record(
        cls,
        raw: bytes | str,
        reason: str,
        *,
        source_topic: str,
        partition: int | None = None,
        offset: int | None = None,
        key: bytes | str | None = None,
    ) -> DeadLetter:
        """Wrap whatever arrived, even bytes that are not UTF-8, so the record is kept."""
        text = raw.decode("utf-8", "backslashreplace") if isinstance(raw, bytes) else raw
        key_text = key.decode("utf-8", "backslashreplace") if isinstance(key, bytes) else key
        return cls(
            source_topic=source_topic,
            partition=partition,
            offset=offset,
            key=key_text[:1024] if key_text is not None else None,
            payload=text[:MAX_PAYLOAD_CHARS],
            payload_truncated=len(text) > MAX_PAYLOAD_CHARS,
            reason=reason[:MAX_PAYLOAD_CHARS],
        )
