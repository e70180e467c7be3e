"""Bulk, idempotent loading of provider observations into `mailtrace.provider_event`.

Rows are COPYed into a temporary staging table and moved with one INSERT … ON CONFLICT DO NOTHING
per chunk, so the cost is set-based and a re-run adds no duplicates. Each chunk commits on its own
(bounded memory, progress kept on failure); pipeline state passed in `state` is written in the
transaction of the last chunk, so a watermark can never move past rows that did not commit.
`state` may be a callable: it is called only once `events` is exhausted, which lets a streaming
extract commit a watermark it only knows at the end. `before_commit`, likewise called at the end in
the last chunk's transaction, stores what the extract set aside on the way (quarantined items), so
the watermark never commits without them.

If the warehouse refuses a chunk because of some values in it (`is_item_fault`) and the caller gave
`on_refused`, the chunk is stored again row by row, each row behind its own savepoint: the refused
rows go to `on_refused` with the error and every other row is stored.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable, Iterable, Mapping

import psycopg

from mailtrace.events import PROVIDER_EVENT_COLUMNS, ProviderEvent
from mailtrace.intake import storable_reason
from mailtrace.paths import read_sql
from mailtrace.warehouse import LOAD_LOCK, require_no_open_transaction, set_state, tune_bulk_transaction

log = logging.getLogger(__name__)

DEFAULT_CHUNK_ROWS = 50_000
WORK_MEM = "32MB"

_CREATE_STAGE = """
CREATE TEMP TABLE IF NOT EXISTS provider_event_stage (
    provider text, provider_reference text, raw_status text, delivery_status text,
    event_at timestamptz, source text, recipient_email text, client_reference text,
    failure_reason text, detail text
) ON COMMIT DELETE ROWS
"""
_COPY_STAGE = "COPY provider_event_stage ({}) FROM STDIN".format(", ".join(PROVIDER_EVENT_COLUMNS))


# SQLSTATE classes that blame the values stored, not the warehouse: data exception (22),
# integrity constraint violation (23), program limit exceeded (54, e.g. an index row too large).
ITEM_FAULT_SQLSTATE_CLASSES = frozenset({"22", "23", "54"})

StateToCommit = Mapping[str, str] | Callable[[], Mapping[str, str]] | None
BeforeCommit = Callable[[psycopg.Connection], None] | None
OnRefused = Callable[[ProviderEvent, BaseException], None] | None


def is_item_fault(conn: psycopg.Connection, error: BaseException) -> bool:
    """Whether `error`, raised while storing some items, blames those items rather than the warehouse.

    A database error blames the items only when its SQLSTATE class says the values were refused
    and the connection still works; a Python error raised while turning values into rows does too.
    """
    if isinstance(error, psycopg.Error):
        if conn.closed or conn.broken:
            return False
        if error.sqlstate is None:
            return isinstance(error, psycopg.DataError)
        return error.sqlstate[:2] in ITEM_FAULT_SQLSTATE_CLASSES
    return isinstance(error, Exception)


def _load_chunk(
    conn: psycopg.Connection,
    chunk: list[ProviderEvent],
    state: StateToCommit,
    before_commit: BeforeCommit,
    on_refused: OnRefused,
) -> int:
    try:
        return _store_chunk(conn, chunk, state, before_commit, None)
    except Exception as error:
        if on_refused is None or not is_item_fault(conn, error):
            raise
        log.warning(
            "the warehouse refused part of a chunk (%s); storing it row by row", storable_reason(error)
        )
    return _store_chunk(conn, chunk, state, before_commit, on_refused)


def _store_chunk(
    conn: psycopg.Connection,
    chunk: list[ProviderEvent],
    state: StateToCommit,
    before_commit: BeforeCommit,
    row_by_row_refusing_to: OnRefused,
) -> int:
    with conn.transaction():
        # Serialise loaders so identity values become visible in order: reconcile's "id > cursor"
        # then never skips a row that a slower concurrent load commits later.
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (LOAD_LOCK,))
        # Room to sort a whole chunk in memory (the default spills a 50,000-row chunk to disk); no JIT.
        tune_bulk_transaction(conn, work_mem=WORK_MEM)
        conn.execute(_CREATE_STAGE)
        with conn.cursor() as cur:
            if row_by_row_refusing_to is None:
                inserted = _insert(cur, chunk)
            else:
                inserted = 0
                for event in chunk:
                    try:
                        with conn.transaction():  # a savepoint: a refused row undoes only itself
                            inserted += _insert(cur, [event])
                            cur.execute("DELETE FROM provider_event_stage")
                    except Exception as error:
                        if not is_item_fault(conn, error):
                            raise
                        row_by_row_refusing_to(event, error)
        if callable(state):
            state = state()
        for name, value in (state or {}).items():
            set_state(conn, name, value)
        if before_commit is not None:
            before_commit(conn)
    return inserted


def _insert(cur: psycopg.Cursor, events: list[ProviderEvent]) -> int:
    with cur.copy(_COPY_STAGE) as copy:
        for event in events:
            copy.write_row(event.copy_row())
    cur.execute(read_sql("load_provider_events.sql"))
    return cur.rowcount


def load_provider_events(
    conn: psycopg.Connection,
    events: Iterable[ProviderEvent],
    *,
    state: StateToCommit = None,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    before_commit: BeforeCommit = None,
    on_refused: OnRefused = None,
) -> int:
    """Store every observation in `events`; return how many were new.

    `state` and `before_commit` commit with the last chunk; `on_refused` receives each row the
    warehouse refuses for its values (without it, such a refusal raises).
    """
    require_no_open_transaction(conn, "load_provider_events")
    iterator = iter(events)
    inserted = 0
    chunk = list(itertools.islice(iterator, chunk_rows))
    while True:
        following = list(itertools.islice(iterator, chunk_rows)) if chunk else []
        is_last = not following
        inserted += _load_chunk(
            conn, chunk, state if is_last else None, before_commit if is_last else None, on_refused
        )
        if is_last:
            break
        chunk = following
    log.info("loaded %d new provider events", inserted)
    return inserted
