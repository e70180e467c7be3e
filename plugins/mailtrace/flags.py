"""Invalid-address flags that set and clear themselves (CONTRACT.md §3).

A subject's flag is a pure function of the verdicts (`mailtrace.delivery`) and the contact table (the
rule is spelled out in `sql/flags_verdict.sql`), so the incremental run and a full rebuild run the same
statements over a different set of subjects and cannot disagree. Each run compares what the rule says with
`mailtrace.address_flag`, writes one `mailtrace.flag_history` row per flag set or cleared
(`sql/flags_apply.sql`), and updates the state; a run with nothing new writes nothing.

The flag judges the address: the evidence is every notification sent to the subject's current address,
whichever subject it was about, so subjects sharing an address are flagged and cleared together.

The incremental run looks only at subjects touched since the previous run started: subjects whose
address got a notification whose verdict changed (`delivery_updated_at`, stamped by reconcile) and
contacts changed (`updated_at`), with an overlap, because those timestamps are taken when a transaction
starts and it may commit later. Flagged subjects whose contact address changed are always looked at,
whatever the timestamps say.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

import psycopg

from mailtrace.input_indexes import INPUT_LOOKUPS, warn_missing_input_indexes
from mailtrace.locks import FLAGS_LOCK
from mailtrace.paths import read_sql
from mailtrace.warehouse import get_state, require_no_open_transaction, set_state

log = logging.getLogger(__name__)

# When the last run started (database clock); the next one looks at what changed after it.
CURSOR_STATE = "flags_cursor"
THRESHOLD_STATE = "flags_soft_failure_threshold"
# How far behind its cursor the incremental run looks again: longer than any transaction that
# stamps delivery_updated_at or contact.updated_at stays open before it commits.
DEFAULT_OVERLAP = timedelta(hours=1)
THRESHOLD_SETTING = "soft_failure_flag_threshold"


def threshold_from_settings() -> int | None:
    """The soft-failure threshold from Variable `mailtrace_soft_failure_flag_threshold` (unset: off).

    For DAG tasks: the flag functions themselves take the threshold as a plain argument.
    """
    from mailtrace.settings import setting

    return _checked_threshold(setting(THRESHOLD_SETTING))


def update_flags(
    conn: psycopg.Connection,
    *,
    soft_failure_threshold: int | None = None,
    overlap: timedelta = DEFAULT_OVERLAP,
) -> dict:
    """Set and clear flags for the subjects touched since the last run; commit; return counts.

    Run after every reconcile. The first run, and any run whose threshold differs from the previous
    run's, looks at every subject instead (a changed threshold can change any soft-failure flag).
    """
    threshold = _checked_threshold(soft_failure_threshold)
    return _run(conn, threshold=threshold, full=False, overlap=overlap, dry_run=False)


def rebuild_flags(
    conn: psycopg.Connection,
    *,
    soft_failure_threshold: int | None = None,
    dry_run: bool = False,
) -> dict:
    """Recompute every subject's flag from the event log and the contact table; return counts.

    After correct incremental runs this finds nothing to change. Whatever it does change is recorded
    in flag_history like any other transition. With `dry_run`, report the counts and roll back.
    """
    threshold = _checked_threshold(soft_failure_threshold)
    return _run(conn, threshold=threshold, full=True, overlap=DEFAULT_OVERLAP, dry_run=dry_run)


def _checked_threshold(threshold: int | None) -> int | None:
    if threshold is not None and (isinstance(threshold, bool) or threshold < 1):
        raise ValueError(f"soft_failure_threshold must be a positive integer or None, got {threshold!r}")
    return threshold


def _run(
    conn: psycopg.Connection, *, threshold: int | None, full: bool, overlap: timedelta, dry_run: bool
) -> dict:
    require_no_open_transaction(conn, "rebuild_flags" if full else "update_flags")
    with conn.transaction(force_rollback=dry_run):
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (FLAGS_LOCK,))
        warn_missing_input_indexes(conn, INPUT_LOOKUPS["contact"])
        (started_at,) = conn.execute("SELECT now()").fetchone()
        cursor = get_state(conn, CURSOR_STATE)
        threshold_text = "off" if threshold is None else str(threshold)
        full = full or cursor is None or get_state(conn, THRESHOLD_STATE) != threshold_text
        since = None if full else datetime.fromisoformat(cursor) - overlap
        conn.execute(read_sql("flags_prepare.sql"))
        conn.execute(read_sql("flags_scope.sql"), {"full": full, "since": since})
        conn.execute("ANALYZE pg_temp.flag_scope")
        conn.execute(read_sql("flags_verdict.sql"), {"soft_failure_threshold": threshold})
        conn.execute("ANALYZE pg_temp.flag_verdict")
        set_count, cleared_count = conn.execute(read_sql("flags_apply.sql")).fetchone()
        (evaluated,) = conn.execute("SELECT count(*) FROM pg_temp.flag_scope").fetchone()
        set_state(conn, CURSOR_STATE, started_at.isoformat())
        set_state(conn, THRESHOLD_STATE, threshold_text)
        counts = {"full": full, "evaluated": evaluated, "set": set_count, "cleared": cleared_count}
    log.info("address flags%s: %s", " (dry run, rolled back)" if dry_run else "", counts)
    return counts
