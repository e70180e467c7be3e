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

from mailtrace.paths import SQL_DIR
from mailtrace.warehouse import LOAD_LOCK, get_state, require_no_open_transaction, set_state

log = logging.getLogger(__name__)

CURSOR_STATE = "reconcile_cursor"
DEFAULT_GRACE = timedelta(hours=2)
# Events without any verdict are revisited while they are this young; beyond it the provider
# has long dropped them (Notify keeps ~7 days), so nothing new can be learnt about them.
DEFAULT_OPEN_WINDOW = timedelta(days=10)


def _statements() -> list[tuple[str, str]]:
    return [
        (path.name, path.read_text(encoding="utf-8"))
        for path in sorted((SQL_DIR / "reconcile").glob("*.sql"))
    ]


def reconcile(
    conn: psycopg.Connection,
    *,
    grace: timedelta = DEFAULT_GRACE,
    open_window: timedelta = DEFAULT_OPEN_WINDOW,
    now: datetime | None = None,
) -> dict[str, int]:
    """Bring `delivery_status` & co. up to date; return counts of what was done."""
    require_no_open_transaction(conn, "reconcile")
    now = now or datetime.now(UTC)
    counts: dict[str, int] = {}
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (LOAD_LOCK,))
        cursor = int(get_state(conn, CURSOR_STATE) or 0)
        (high_water,) = conn.execute("SELECT coalesce(max(id), 0) FROM mailtrace.provider_event").fetchone()
        params = {
            "cursor": cursor,
            "high_water": high_water,
            "grace": grace,
            "open_since": now - open_window,
        }
        for name, statement in _statements():
            result = conn.execute(statement, params)
            counts[name.removesuffix(".sql")] = result.rowcount
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
