"""Synthetic event-log rows and provider statuses, numbered so SQL and Python agree on every row.

Event number `i` is `bench-<i>`, sent to `person<i>@example.gov`, with Notify id
`00000000-0000-4000-8000-<i as 12 hex digits>`; its fate is fixed by `i % 100` (90 % delivered, 5 %
hard bounces, 3 % inbox full, 1 % technical failures, 1 % still sending). The application's rows are
written server-side (`INSERT … SELECT generate_series`), the provider's side is built in Python as the
`ProviderEvent`s the loader receives.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from datetime import datetime, timedelta

import psycopg
from psycopg import sql

from mailtrace.events import ProviderEvent
from mailtrace.reconcile import CATCH_UP_STATE, CURSOR_STATE, LOG_STATE, LOOKUP_STATE, SES_LINE_STATE
from mailtrace.warehouse import indexes_built_after

PROVIDER = "gc_notify"
# (first i % 100 not covered, raw status, delivery_status, failure_reason, detail)
FATES = (
    (90, "delivered", "delivered", None, None),
    (95, "permanent-failure", "permanent_failure", "invalid_address", "No such address"),
    (98, "temporary-failure", "temporary_failure", "mailbox_full", "Content or inbox issue"),
    (99, "technical-failure", "technical_failure", "provider_error", "Tech issue"),
    (100, "sending", "pending", None, None),
)
NOTIFICATION_TYPES = ("NOC", "APPROVAL", "RENEWAL_REMINDER", "CANCELLATION", "SUSPENDED")


def provider_reference(i: int) -> str:
    return f"00000000-0000-4000-8000-{i:012x}"


def fate(i: int) -> tuple[str, str, str | None, str | None]:
    bucket = i % 100
    for upper, raw, status, reason, detail in FATES:
        if bucket < upper:
            return raw, status, reason, detail
    raise AssertionError("unreachable")


# SQL twins of the functions above, over a generate_series column `i`.
SQL_PROVIDER_REFERENCE = "'00000000-0000-4000-8000-' || lpad(to_hex(i), 12, '0')"


def _sql_case(index: int) -> str:
    arms = []
    for upper, *values in FATES:
        value = values[index]
        arms.append(f"WHEN mod(i, 100) < {upper} THEN {'NULL' if value is None else repr(value)}")
    return "CASE " + " ".join(arms) + " END"


SQL_RAW_STATUS = _sql_case(0)
SQL_DELIVERY_STATUS = _sql_case(1)
SQL_FAILURE_REASON = _sql_case(2)
SQL_DETAIL = _sql_case(3)
SQL_NOTIFICATION_TYPE = (
    "(ARRAY[" + ", ".join(repr(t) for t in NOTIFICATION_TYPES) + f"])[1 + mod(i, {len(NOTIFICATION_TYPES)})]"
)

_INSERT_EVENTS = f"""
INSERT INTO mailtrace.notification_event
    (event_id, subject_type, subject_id, notification_type, recipient_email, provider, provider_reference,
     client_reference, sent_at, local_status)
SELECT 'bench-' || i, 'registration', 'STR-' || i, {SQL_NOTIFICATION_TYPE}, 'person' || i || '@example.gov',
       '{PROVIDER}', {SQL_PROVIDER_REFERENCE}, 'bench-' || i,
       %(newest_sent_at)s - make_interval(secs => (%(last)s - i) * %(spacing_seconds)s), 'SENT'
FROM generate_series(%(first)s::bigint, %(last)s::bigint) AS i
"""

# The verdicts a finished reconcile gives those events, in mailtrace's own table (history built in bulk).
_INSERT_RECONCILED_VERDICTS = f"""
INSERT INTO mailtrace.delivery
    (event_id, delivery_status, failure_reason, delivery_detail, delivery_updated_at, recipient_address,
     sent_at)
SELECT 'bench-' || i, {SQL_DELIVERY_STATUS}, {SQL_FAILURE_REASON}, {SQL_DETAIL},
       %(newest_sent_at)s - make_interval(secs => (%(last)s - i) * %(spacing_seconds)s) + interval '1 minute',
       'person' || i || '@example.gov',
       %(newest_sent_at)s - make_interval(secs => (%(last)s - i) * %(spacing_seconds)s)
FROM generate_series(%(first)s::bigint, %(last)s::bigint) AS i
"""

_INSERT_PROVIDER_EVENTS = f"""
INSERT INTO mailtrace.provider_event
    (provider, provider_reference, recipient_email, client_reference, raw_status, delivery_status,
     failure_reason, detail, event_at, source)
SELECT '{PROVIDER}', {SQL_PROVIDER_REFERENCE}, 'person' || i || '@example.gov', 'bench-' || i,
       {SQL_RAW_STATUS}, {SQL_DELIVERY_STATUS}, {SQL_FAILURE_REASON}, {SQL_DETAIL},
       %(newest_sent_at)s - make_interval(secs => (%(last)s - i) * %(spacing_seconds)s)
           + interval '30 seconds',
       'notify_list'
FROM generate_series(%(first)s::bigint, %(last)s::bigint) AS i
ORDER BY i
"""


def insert_events(
    conn: psycopg.Connection, first: int, count: int, *, newest_sent_at: datetime, spacing_seconds: float
) -> None:
    """The application's rows for events first … first+count-1 (no verdict yet); the caller commits."""
    conn.execute(
        _INSERT_EVENTS,
        {
            "first": first,
            "last": first + count - 1,
            "newest_sent_at": newest_sent_at,
            "spacing_seconds": spacing_seconds,
        },
    )


def provider_events(
    first: int, count: int, *, newest_sent_at: datetime, spacing_seconds: float
) -> Iterator[ProviderEvent]:
    """Notify's status for each of events first … first+count-1, as extract hands it to the loader."""
    last = first + count - 1
    for i in range(first, first + count):
        raw, status, reason, detail = fate(i)
        yield ProviderEvent(
            provider=PROVIDER,
            provider_reference=provider_reference(i),
            raw_status=raw,
            delivery_status=status,
            event_at=newest_sent_at - timedelta(seconds=(last - i) * spacing_seconds - 30),
            source="notify_list",
            recipient_email=f"person{i}@example.gov",
            client_reference=f"bench-{i}",
            failure_reason=reason,
            detail=detail,
        )


def build_reconciled_history(
    conn: psycopg.Connection, count: int, *, newest_sent_at: datetime, spacing_seconds: float
) -> None:
    """`count` events with their provider history and final verdicts, as years of runs would leave them.

    The tables' indexes are dropped while the rows go in and built again after (mailtrace's own
    indexes_built_after: their definitions come from the catalogue); the reconcile cursors are set past the
    history (its catch-up just done), and the tables are VACUUM ANALYZEd like a warehouse that has been
    running for a while.
    """
    params = {
        "first": 1,
        "last": count,
        "newest_sent_at": newest_sent_at,
        "spacing_seconds": spacing_seconds,
    }
    conn.autocommit = True
    conn.execute("SET maintenance_work_mem = '512MB'")
    tables = ("notification_event", "provider_event", "delivery")
    with contextlib.ExitStack() as stack:
        stack.enter_context(conn.transaction())
        for table in tables:
            stack.enter_context(indexes_built_after(conn, f"mailtrace.{table}"))
        conn.execute(_INSERT_EVENTS, params)
        conn.execute(_INSERT_RECONCILED_VERDICTS, params)
        conn.execute(_INSERT_PROVIDER_EVENTS, params)
    conn.execute(
        """INSERT INTO mailtrace.pipeline_state (name, value)
           SELECT %s, coalesce(max(id), 0)::text FROM mailtrace.provider_event
           ON CONFLICT (name) DO UPDATE SET value = EXCLUDED.value""",
        (CURSOR_STATE,),
    )
    for name, value in (
        (LOG_STATE, newest_sent_at),
        (SES_LINE_STATE, newest_sent_at),
        (LOOKUP_STATE, newest_sent_at),
        (CATCH_UP_STATE, newest_sent_at),
    ):
        conn.execute(
            """INSERT INTO mailtrace.pipeline_state (name, value) VALUES (%s, %s)
               ON CONFLICT (name) DO UPDATE SET value = EXCLUDED.value""",
            (name, value.isoformat()),
        )
    for table in tables:
        conn.execute(sql.SQL("VACUUM ANALYZE {}").format(sql.Identifier("mailtrace", table)))
    conn.autocommit = False
