"""Reconcile the provider history with the event log (CONTRACT.md §2).

One transaction, under the load lock: find the events affected since the last run, recompute
their verdict from their whole provider history, write the new or changed ones into mailtrace's own
`mailtrace.delivery`, and keep the orphan table current. The application's log is only read.

The log may be the application's view over its own tables, indexed only as CONTRACT.md §1 asks, so
reconcile never needs an index of its own on it: provider references are stored normalised, matched to
the log's column as it is (the application's index), and to the few log rows whose references are not in
normal form (spaces around them, a Notify id in upper case) through mailtrace's own
`event_reference_alias`, kept current from the log rows each run reads. Which log rows a run reads: those
sent since the previous run's newest (`sent_at`, with an overlap for rows that commit late), events with
new provider rows, new look-up outcomes or an SES silence that just became long enough; and, once per
`catch_up_every`, the whole log for aliases plus every event still without a verdict, for rows the
application changed after the overlap had passed.

The cursors (provider_event id, the log's sent_at, look-ups, the SES silence line) commit with the
verdicts, so a crashed run is simply repeated.
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime, timedelta

import psycopg
from psycopg import sql

from mailtrace.input_indexes import INPUT_LOOKUPS, warn_missing_input_indexes
from mailtrace.paths import SQL_DIR
from mailtrace.warehouse import (
    LOAD_LOCK,
    get_state,
    indexes_built_after,
    require_no_open_transaction,
    set_state,
    tune_bulk_transaction,
)

log = logging.getLogger(__name__)

CURSOR_STATE = "reconcile_cursor"
LOG_STATE = "reconcile_log_watermark"
LOOKUP_STATE = "reconcile_lookup_watermark"
SES_LINE_STATE = "reconcile_ses_silence_line"
CATCH_UP_STATE = "reconcile_catch_up_at"
# How far behind each watermark a run reads again: longer than an application transaction stays open
# between stamping sent_at and committing (or filling in the provider reference).
DEFAULT_OVERLAP = timedelta(hours=1)
# How often a run also reads the whole log (aliases, events still without a verdict).
DEFAULT_CATCH_UP_EVERY = timedelta(days=1)
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
# A large run's work tables are filled through a Gather of up to millions of rows; at the default price of
# that hand-over (0.1 a row) the planner keeps the join and the reference keys in one process, which made
# building reconcile_events for 1,000,000 events take 5.9 s instead of 3.6 s (in the former 04_events.sql).
PARALLEL_TUPLE_COST = "0.01"
# The work tables (sql/reconcile/01, 03, 05): UNLOGGED tables in mailtrace's schema, created and dropped in
# the run's own transaction (09_drop_work_tables.sql), so no other session ever sees them. Not temporary
# tables: a scan of a temporary table can use no parallel worker, and the verdict over 1,000,000 events took
# 10 s that way against 7.4 s with two workers. The events are ANALYZEd at once, so the verdict is planned
# for the rows they really hold (10 or 10 million), not for a guess.
_ANALYZE_AFTER = {"03_events.sql": "reconcile_events"}
# The statistics target of the ANALYZEs a run makes for its own plans (_quick_analyze).
QUICK_STATISTICS_TARGET = 10
# The provider_event columns reconcile's statements filter and join on: what _refresh_statistics samples.
_PROVIDER_EVENT_PLANNED_COLUMNS = (
    "id",
    "provider",
    "provider_reference",
    "client_reference",
    "recipient_email",
    "delivery_status",
)
# A run whose new provider rows exceed this fraction of what the statistics know re-analyses first.
ANALYZE_FRACTION = 0.1
# A run that gives at least this many first verdicts to an empty mailtrace.delivery (the first run on an
# existing log) builds delivery's indexes after the INSERT instead of maintaining them row by row.
FIRST_FILL_MIN_ROWS = 10_000
# Memory for each of those index builds' sorts (that run only).
INDEX_BUILD_MEM = "256MB"
# How long that run waits for sessions already reading delivery (through notification_status, say) before
# it keeps the indexes in place instead; once it has the table, readers wait for the run to commit.
FIRST_FILL_LOCK_WAIT = "5s"


def _statements() -> list[tuple[str, str]]:
    return [
        (path.name, path.read_text(encoding="utf-8"))
        for path in sorted((SQL_DIR / "reconcile").glob("*.sql"))
    ]


def _refresh_statistics(conn: psycopg.Connection, new_rows: int) -> None:
    """Re-sample provider_event when this run's rows are a large part of it (a first or catch-up load).

    The statements below pick index look-ups for a small delta and hash joins for a large one, but
    only if the planner knows how many rows "id > cursor" holds. A quick sample of the columns they filter
    and join on is enough for that. Naming the columns leaves autovacuum's count of changed rows as it is,
    so autovacuum usually analyses the whole table at its full target afterwards. Not always: this sample
    raises the row count autovacuum's threshold (10 % by default) is taken of, so a load of 10-11 % of the
    table stays under it; and if autovacuum had analysed the new rows before this run, the six columns keep
    this run's coarser statistics until the next 10 % of changes.
    """
    (known_rows,) = conn.execute(
        "SELECT reltuples FROM pg_class WHERE oid = 'mailtrace.provider_event'::regclass"
    ).fetchone()
    if new_rows > 0 and new_rows > ANALYZE_FRACTION * max(known_rows, 0):
        _quick_analyze(conn, "provider_event", _PROVIDER_EVENT_PLANNED_COLUMNS)


def _quick_analyze(conn: psycopg.Connection, table: str, columns: tuple[str, ...] = ()) -> None:
    """ANALYZE mailtrace.`table` (only `columns`, if given) from 300 × QUICK_STATISTICS_TARGET sampled rows.

    Reconcile's plans need row counts and the share of rows that are NULL or SES, not fine histograms: at
    the default target ANALYZE sorts a 30,000-row sample of text columns in the database's collation, which
    took 0.2-0.4 s of a run each time (100,000 and 1,000,000 statuses), against 0.03 s for 3,000 rows.
    The target stays lowered for the rest of the run's transaction: only ANALYZE reads it.
    """
    conn.execute("SELECT set_config('default_statistics_target', %s, true)", (str(QUICK_STATISTICS_TARGET),))
    column_list = (
        sql.SQL("({})").format(sql.SQL(", ").join(map(sql.Identifier, columns))) if columns else sql.SQL("")
    )
    conn.execute(sql.SQL("ANALYZE {} {}").format(sql.Identifier("mailtrace", table), column_list))


def _fill_empty_delivery(
    conn: psycopg.Connection, statement: str, params: dict, verdicts: int
) -> psycopg.Cursor:
    """Run 06_apply_new.sql into the empty delivery with its indexes built after (FIRST_FILL_MIN_ROWS)."""
    try:
        with indexes_built_after(
            conn,
            "mailtrace.delivery",
            maintenance_work_mem=INDEX_BUILD_MEM,
            lock_timeout=FIRST_FILL_LOCK_WAIT,
        ):
            result = conn.execute(statement, params)
    except psycopg.errors.LockNotAvailable:
        log.warning(
            "reconcile: mailtrace.delivery was in use for %s; %d first verdicts go in through its indexes",
            FIRST_FILL_LOCK_WAIT,
            verdicts,
        )
        return conn.execute(statement, params)
    log.info(
        "reconcile: %d first verdicts into an empty mailtrace.delivery: its indexes built after", verdicts
    )
    return result


def _hours(span: timedelta) -> str:
    hours = span.total_seconds() / 3600
    return f"{hours:g} hours"


def _since(value: str | None, overlap: timedelta, first_run: datetime) -> datetime:
    return datetime.fromisoformat(value) - overlap if value else first_run


def reconcile(
    conn: psycopg.Connection,
    *,
    grace: timedelta = DEFAULT_GRACE,
    ses_grace: timedelta = DEFAULT_SES_GRACE,
    open_window: timedelta = DEFAULT_OPEN_WINDOW,
    overlap: timedelta = DEFAULT_OVERLAP,
    catch_up_every: timedelta = DEFAULT_CATCH_UP_EVERY,
    now: datetime | None = None,
) -> dict[str, int]:
    """Bring `mailtrace.delivery` up to date; return counts of what was done."""
    require_no_open_transaction(conn, "reconcile")
    now = now or datetime.now(UTC)
    counts: dict[str, int] = {}
    seconds: dict[str, float] = {}
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (LOAD_LOCK,))
        tune_bulk_transaction(conn, work_mem=WORK_MEM)
        conn.execute("SELECT set_config('parallel_tuple_cost', %s, true)", (PARALLEL_TUPLE_COST,))
        warn_missing_input_indexes(conn, INPUT_LOOKUPS["notification_event"])
        cursor = int(get_state(conn, CURSOR_STATE) or 0)
        (high_water,) = conn.execute("SELECT coalesce(max(id), 0) FROM mailtrace.provider_event").fetchone()
        (newest_sent,) = conn.execute("SELECT max(sent_at) FROM mailtrace.event_log").fetchone()
        (newest_lookup,) = conn.execute(
            "SELECT max(last_checked_at) FROM mailtrace.provider_lookup"
        ).fetchone()
        _refresh_statistics(conn, high_water - cursor)
        (delivery_empty,) = conn.execute("SELECT NOT EXISTS (SELECT 1 FROM mailtrace.delivery)").fetchone()
        open_since = now - open_window
        last_catch_up = get_state(conn, CATCH_UP_STATE)
        catch_up = last_catch_up is None or datetime.fromisoformat(last_catch_up) <= now - catch_up_every
        log_since = _since(get_state(conn, LOG_STATE), overlap, open_since)
        ses_silent_before = now - ses_grace
        params = {
            "cursor": cursor,
            "high_water": high_water,
            "grace": grace,
            "open_since": open_since,
            "log_since": log_since,
            "alias_since": datetime.min.replace(tzinfo=UTC) if catch_up else log_since,
            "lookups_since": _since(get_state(conn, LOOKUP_STATE), overlap, open_since),
            "ses_line_since": _since(get_state(conn, SES_LINE_STATE), overlap, open_since),
            "ses_silent_before": ses_silent_before,
            "ses_grace_text": _hours(ses_grace),
            "catch_up": catch_up,
        }
        for name, statement in _statements():
            started = time.perf_counter()
            if name == "06_apply_new.sql" and delivery_empty and counts["05_verdict"] >= FIRST_FILL_MIN_ROWS:
                result = _fill_empty_delivery(conn, statement, params, counts["05_verdict"])
            else:
                result = conn.execute(statement, params)
            counts[name.removesuffix(".sql")] = result.rowcount
            if name in _ANALYZE_AFTER:
                _quick_analyze(conn, _ANALYZE_AFTER[name])
            seconds[name.removesuffix(".sql")] = round(time.perf_counter() - started, 3)
        set_state(conn, CURSOR_STATE, str(high_water))
        if newest_sent is not None:
            # never past now: a row stamped in the future must not make the rows before it look read
            set_state(conn, LOG_STATE, max(min(newest_sent, now), log_since + overlap).isoformat())
        if newest_lookup is not None:
            set_state(conn, LOOKUP_STATE, newest_lookup.isoformat())
        set_state(conn, SES_LINE_STATE, ses_silent_before.isoformat())
        if catch_up:
            set_state(conn, CATCH_UP_STATE, now.isoformat())
    summary = {
        "provider_events": high_water - cursor,
        "affected": counts["03_events"],  # the events judged: those affected that are in the log
        "updated": counts["06_apply_changed"] + counts["06_apply_new"],
        "orphans_seen": counts["02_unclaimed_and_orphans"],
        "orphans_adopted": counts["08_adopted_orphans"],
        "catch_up": int(catch_up),
    }
    # which step a slow run spent its time in (each step's seconds, its ANALYZE included)
    log.info("reconcile: %s; seconds per step: %s", summary, seconds)
    return summary
