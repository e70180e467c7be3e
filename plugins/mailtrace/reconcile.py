"""Reconcile the provider history with the application's event log (CONTRACT.md §2).

One transaction, under the load lock: find the events affected since the last run, recompute
their verdict from their whole provider history, write the ones that changed, and keep the orphan
table current. The cursor (highest provider_event id processed) commits with the verdicts, so a
crashed run is simply repeated.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

import psycopg
from psycopg import sql

from mailtrace.paths import SQL_DIR
from mailtrace.warehouse import (
    LOAD_LOCK,
    get_state,
    require_no_open_transaction,
    set_state,
    tune_bulk_transaction,
)

log = logging.getLogger(__name__)

CURSOR_STATE = "reconcile_cursor"
DEFAULT_GRACE = timedelta(hours=2)
# SES cannot be asked about one email, so only silence is evidence that it never had it: no event at all
# (Send, Delivery, Bounce, DeliveryDelay…) this long after the send. SES retries a delivery for up to
# about 14 hours, so the wait is longer than Notify's look-up grace.
DEFAULT_SES_GRACE = timedelta(hours=24)
# Events without any verdict are revisited while they are this young; beyond it the provider
# has long dropped them (Notify keeps ~7 days), so nothing new can be learnt about them.
DEFAULT_OPEN_WINDOW = timedelta(days=10)
# Memory for the run's sorts and hashes (this transaction only): a large catch-up run then sorts and
# hashes in memory instead of spilling to temporary files.
WORK_MEM = "64MB"
# Statements that create a temporary table the next statements join: ANALYZE it at once, so they are
# planned for the rows it really holds (10 or 10 million), not for a guess.
# A run whose new provider rows exceed this fraction of what the statistics know re-analyses first.
ANALYZE_FRACTION = 0.1
_ANALYZE_AFTER = {"01_affected.sql": "reconcile_affected", "02_verdict.sql": "reconcile_verdict"}


def _statements() -> list[tuple[str, str]]:
    return [
        (path.name, path.read_text(encoding="utf-8"))
        for path in sorted((SQL_DIR / "reconcile").glob("*.sql"))
    ]


def _refresh_statistics(conn: psycopg.Connection, new_rows: int) -> None:
    """ANALYZE provider_event when this run's rows are a large part of it (a first or catch-up load).

    The statements below pick index look-ups for a small delta and hash joins for a large one, but
    only if the planner knows how many rows "id > cursor" holds; autovacuum would re-analyse the table
    after such a load anyway (its default threshold is the same 10 %), just not before this run.
    """
    (known_rows,) = conn.execute(
        "SELECT reltuples FROM pg_class WHERE oid = 'mailtrace.provider_event'::regclass"
    ).fetchone()
    if new_rows > 0 and new_rows > ANALYZE_FRACTION * max(known_rows, 0):
        conn.execute("ANALYZE mailtrace.provider_event")


def _hours(span: timedelta) -> str:
    hours = span.total_seconds() / 3600
    return f"{hours:g} hours"


def reconcile(
    conn: psycopg.Connection,
    *,
    grace: timedelta = DEFAULT_GRACE,
    ses_grace: timedelta = DEFAULT_SES_GRACE,
    open_window: timedelta = DEFAULT_OPEN_WINDOW,
    now: datetime | None = None,
) -> dict[str, int]:
    """Bring `delivery_status` & co. up to date; return counts of what was done."""
    require_no_open_transaction(conn, "reconcile")
    now = now or datetime.now(UTC)
    counts: dict[str, int] = {}
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (LOAD_LOCK,))
        tune_bulk_transaction(conn, work_mem=WORK_MEM)
        cursor = int(get_state(conn, CURSOR_STATE) or 0)
        (high_water,) = conn.execute("SELECT coalesce(max(id), 0) FROM mailtrace.provider_event").fetchone()
        _refresh_statistics(conn, high_water - cursor)
        params = {
            "cursor": cursor,
            "high_water": high_water,
            "grace": grace,
            "open_since": now - open_window,
            "ses_silent_before": now - ses_grace,
            "ses_grace_text": _hours(ses_grace),
        }
        for name, statement in _statements():
            result = conn.execute(statement, params)
            counts[name.removesuffix(".sql")] = result.rowcount
            if name in _ANALYZE_AFTER:
                conn.execute(sql.SQL("ANALYZE {}").format(sql.Identifier(_ANALYZE_AFTER[name])))
        set_state(conn, CURSOR_STATE, str(high_water))
    summary = {
        "provider_events": high_water - cursor,
        "affected": counts["01_affected"],
        "updated": counts["03_apply"],
        "orphans_seen": counts["04_orphans"],
        "orphans_adopted": counts["05_adopted_orphans"],
    }
    log.info("reconcile: %s", summary)
    return summary
