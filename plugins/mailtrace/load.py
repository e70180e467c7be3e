"""Bulk, idempotent loading of provider observations into `mailtrace.provider_event`.

Rows are COPYed into a temporary staging table and moved with one INSERT … ON CONFLICT DO NOTHING
per chunk, so the cost is set-based and a re-run adds no duplicates. Each chunk commits on its own
(bounded memory, progress kept on failure); pipeline state passed in `state` is written in the
transaction of the last chunk, so a watermark can never move past rows that did not commit.
`state` may be a callable: it is called only once `events` is exhausted, which lets a streaming
extract commit a watermark it only knows at the end. `before_commit`, likewise called at the end in
the last chunk's transaction, stores what the extract set aside on the way (quarantined items), so
the watermark never commits without them.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable, Iterable, Mapping

import psycopg

from mailtrace.events import PROVIDER_EVENT_COLUMNS, ProviderEvent
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


StateToCommit = Mapping[str, str] | Callable[[], Mapping[str, str]] | None
BeforeCommit = Callable[[psycopg.Connection], None] | None


def _load_chunk(
    conn: psycopg.Connection, chunk: list[ProviderEvent], state: StateToCommit, before_commit: BeforeCommit
) -> int:
    with conn.transaction():
        # Serialise loaders so identity values become visible in order: reconcile's "id > cursor"
        # then never skips a row that a slower concurrent load commits later.
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (LOAD_LOCK,))
        # Room to sort a whole chunk in memory (the default spills a 50,000-row chunk to disk); no JIT.
        tune_bulk_transaction(conn, work_mem=WORK_MEM)
        conn.execute(_CREATE_STAGE)
        with conn.cursor() as cur:
            with cur.copy(_COPY_STAGE) as copy:
                for event in chunk:
                    copy.write_row(event.copy_row())
            cur.execute(read_sql("load_provider_events.sql"))
            inserted = cur.rowcount
        if callable(state):
            state = state()
        for name, value in (state or {}).items():
            set_state(conn, name, value)
        if before_commit is not None:
            before_commit(conn)
    return inserted


def load_provider_events(
    conn: psycopg.Connection,
    events: Iterable[ProviderEvent],
    *,
    state: StateToCommit = None,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    before_commit: BeforeCommit = None,
) -> int:
    """Store every observation in `events`; return how many were new.

    `state` and `before_commit` commit with the last chunk.
    """
    require_no_open_transaction(conn, "load_provider_events")
    iterator = iter(events)
    inserted = 0
    chunk = list(itertools.islice(iterator, chunk_rows))
    while True:
        following = list(itertools.islice(iterator, chunk_rows)) if chunk else []
        is_last = not following
        inserted += _load_chunk(conn, chunk, state if is_last else None, before_commit if is_last else None)
        if is_last:
            break
        chunk = following
    log.info("loaded %d new provider events", inserted)
    return inserted
