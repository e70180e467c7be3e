"""What every provider item goes through on its way into the warehouse: storable text, sane times.

A remote mail server or API writes the texts we store, so odd text is made storable instead of
refused (one refused value would otherwise stop everything stored with it):

* NUL (Postgres text cannot hold it) and lone UTF-16 surrogates (not encodable as UTF-8) become
  U+FFFD, the Unicode replacement character;
* fields that land in an index (provider reference, recipient, raw status, client reference) are cut
  to `INDEXED_FIELD_MAX_BYTES` UTF-8 bytes: a btree entry must fit in about 2,700 bytes, and the
  observation key holds three of these fields;
* free-text detail is cut to `DETAIL_MAX_CHARS` characters and has every address masked.

A cut value ends with "…". Times are not repaired: a time without a zone, or later than now plus
`CLOCK_SKEW_TOLERANCE`, makes the item poison (set aside with its reason), because a 2099 timestamp
would win every "latest status" comparison and move a watermark past everything real.
"""

from __future__ import annotations

import dataclasses
import re
from datetime import datetime, timedelta
from typing import Any

from mailtrace.events import ProviderEvent
from mailtrace.privacy import mask_text

INDEXED_FIELD_MAX_BYTES = 512
DETAIL_MAX_CHARS = 2000
# Reason and error texts stored beside a set-aside item.
REASON_MAX_CHARS = 1000
CLOCK_SKEW_TOLERANCE = timedelta(minutes=5)
TRUNCATION_MARK = "…"
REPLACEMENT = "\ufffd"
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


class PoisonItem(ValueError):
    """One provider item that cannot be stored as an observation; the text says why."""


def storable_text(value: Any, *, max_bytes: int | None = None, max_chars: int | None = None) -> str:
    """`value` as text Postgres accepts: NUL and lone surrogates replaced, then cut to the limits."""
    text = _UNSTORABLE.sub(REPLACEMENT, value if isinstance(value, str) else str(value))
    if max_chars is not None and len(text) > max_chars:
        text = text[: max_chars - 1] + TRUNCATION_MARK
    if max_bytes is not None and len(text.encode("utf-8")) > max_bytes:
        room = max_bytes - len(TRUNCATION_MARK.encode("utf-8"))
        text = text.encode("utf-8")[:room].decode("utf-8", errors="ignore") + TRUNCATION_MARK
    return text


def storable_reason(error: BaseException | str) -> str:
    """A set-aside reason or error to store or log: type and message, addresses masked, bounded."""
    text = error if isinstance(error, str) else f"{type(error).__name__}: {error}"
    return storable_text(mask_text(text), max_chars=REASON_MAX_CHARS)


def storable_event(event: ProviderEvent) -> ProviderEvent:
    """`event` with every text field storable (see the module docstring for the limits)."""

    def indexed(value: str | None) -> str | None:
        return None if value is None else storable_text(value, max_bytes=INDEXED_FIELD_MAX_BYTES)

    return dataclasses.replace(
        event,
        provider_reference=indexed(event.provider_reference),
        recipient_email=indexed(event.recipient_email),
        raw_status=indexed(event.raw_status),
        client_reference=indexed(event.client_reference),
        detail=None
        if event.detail is None
        else storable_text(mask_text(event.detail), max_chars=DETAIL_MAX_CHARS),
    )


def checked_time(value: datetime, now: datetime, what: str) -> datetime:
    """`value` when it has a zone and is not in the future (beyond the clock-skew tolerance)."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise PoisonItem(f"{what} has no time zone: {value.isoformat()}")
    if value > now + CLOCK_SKEW_TOLERANCE:
        raise PoisonItem(f"{what} is in the future: {value.isoformat()}")
    return value
