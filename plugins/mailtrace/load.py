"""Bulk, idempotent loading of provider observations into `mailtrace.provider_event`.

A chunk of new observations whose references are already in matched form is COPYed straight into
`provider_event` (behind a savepoint); any other chunk, and one that turns out to repeat a stored
observation, is COPYed into a temporary staging table and moved with one INSERT … ON CONFLICT DO NOTHING,
so the cost is set-based and a re-run adds no duplicates. Each chunk commits on its own
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
import operator
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

import psycopg
from psycopg import sql

from mailtrace.events import PROVIDER_EVENT_COLUMNS, PROVIDER_EVENT_COPY_TYPES, ProviderEvent
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
_STAGE = sql.Identifier("provider_event_stage")
_HISTORY = sql.Identifier("mailtrace", "provider_event")
# What mailtrace.reference_key() and client_reference_key() trim (sql/migrations/013_contract_v2.sql).
_TRIMMED = " \t\n\r\f\x0b"


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


@dataclass
class _Route:
    """Whether the next chunk is first tried by a COPY straight into the history.

    Cleared for the rest of a load once a chunk repeats a stored observation: a load that re-reads an
    overlapping window then pays for one wasted COPY, not one per chunk.
    """

    copy_straight: bool = True


def _in_stored_form(event: ProviderEvent) -> bool:
    """Whether load_provider_events.sql would store this event exactly as it is.

    Its provider reference is already mailtrace.reference_key() of itself (not blank, nothing to trim, and
    for GC Notify, plain ASCII already in lower case: no case rule of the server's collation is assumed), and
    so is its client reference under client_reference_key(). Anything else goes through the staging table,
    where the SQL functions alone normalise it.
    """
    reference = event.provider_reference
    if not reference or reference != reference.strip(_TRIMMED):
        return False
    if event.provider == "gc_notify" and not (reference.isascii() and reference == reference.lower()):
        return False
    client = event.client_reference
    return client is None or (client != "" and client == client.strip(_TRIMMED))


# A stored observation's identity (provider_event_observation_key), and its time.
_OBSERVATION_KEY = operator.attrgetter(
    "provider", "provider_reference", "recipient_email", "raw_status", "event_at"
)
_EVENT_AT = operator.attrgetter("event_at")


def _observes_a_status_twice(in_time_order: list[ProviderEvent]) -> bool:
    """Whether two events of the chunk, given in event_at order, are one observation.

    Only events at the same instant can be, and in this order they are neighbours: only the events that
    share their timestamp with a neighbour have their observation keys compared. On 1,000,000 events,
    hashing every key took 1.1-2.2 s of a load; comparing neighbours' timestamps takes about 0.1 s.
    """
    times = list(map(_EVENT_AT, in_time_order))
    same_as_next = itertools.compress(
        itertools.count(), map(operator.eq, times, itertools.islice(times, 1, None))
    )
    at_shared_instants = {position for first in same_as_next for position in (first, first + 1)}
    keys = [_OBSERVATION_KEY(in_time_order[position]) for position in at_shared_instants]
    return len(set(keys)) != len(keys)


def _straight_rows(chunk: list[ProviderEvent]) -> list[ProviderEvent] | None:
    """The chunk in event_at order, ready to COPY into the history as it is; None when it is not.

    None when some reference is not in stored form, or when the chunk observes one status twice (the
    staging INSERT keeps the first; a COPY would fail on the second). In event_at order like the staging
    INSERT, so identity values follow the providers' timestamps within a chunk either way.
    """
    if not all(map(_in_stored_form, chunk)):
        return None
    in_time_order = sorted(chunk, key=_EVENT_AT)
    return None if _observes_a_status_twice(in_time_order) else in_time_order


def _load_chunk(
    conn: psycopg.Connection,
    chunk: list[ProviderEvent],
    state: StateToCommit,
    before_commit: BeforeCommit,
    on_refused: OnRefused,
    route: _Route,
) -> int:
    try:
        return _store_chunk(conn, chunk, state, before_commit, None, route)
    except Exception as error:
        if on_refused is None or not is_item_fault(conn, error):
            raise
        log.warning(
            "the warehouse refused part of a chunk (%s); storing it row by row", storable_reason(error)
        )
    return _store_chunk(conn, chunk, state, before_commit, on_refused, _Route(copy_straight=False))


def _store_chunk(
    conn: psycopg.Connection,
    chunk: list[ProviderEvent],
    state: StateToCommit,
    before_commit: BeforeCommit,
    row_by_row_refusing_to: OnRefused,
    route: _Route,
) -> int:
    with conn.transaction():
        # Serialise loaders so identity values become visible in order: reconcile's "id > cursor"
        # then never skips a row that a slower concurrent load commits later.
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (LOAD_LOCK,))
        # Room to sort a whole chunk in memory (the default spills a 50,000-row chunk to disk); no JIT.
        tune_bulk_transaction(conn, work_mem=WORK_MEM)
        conn.execute(_CREATE_STAGE)
        with conn.cursor() as cur:
            straight = _straight_rows(chunk) if route.copy_straight else None
            if straight is not None and _copy_straight(conn, cur, straight):
                inserted = len(straight)
            elif row_by_row_refusing_to is None:
                if straight is not None:
                    route.copy_straight = False
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


def _copy_straight(conn: psycopg.Connection, cur: psycopg.Cursor, events: list[ProviderEvent]) -> bool:
    """COPY new observations straight into the history; False (and nothing stored) if one is already there.

    COPY writes the rows and their index entries in batches, where INSERT … ON CONFLICT inserts them one by
    one, each behind a speculative insertion: loading 1,000,000 new statuses the staging route took 1.3-1.9
    times as long as this one (two interleaved pairs; see README, Performance). The unique observation key
    still guards idempotence: a chunk that repeats a stored status fails on it, its savepoint undoes the
    COPY, and the caller stores the chunk through the staging table instead.
    """
    try:
        with conn.transaction():
            copy_provider_events(cur, _HISTORY, events)
    except psycopg.errors.UniqueViolation:
        return False
    return True


def copy_provider_events(cur: psycopg.Cursor, table: sql.Composable, events: Iterable[ProviderEvent]) -> None:
    """COPY `events` into `table` (its PROVIDER_EVENT_COLUMNS) in binary.

    The one client path for statuses: the loader's two routes and the bench's bare COPY and floors. Binary,
    because the same 1,000,000 statuses through the same client took 2.1 s this way against 5.8 s as text
    into an unindexed table, and 8.2 s against 8.8 s into provider_event (medians of three, side by side).
    """
    columns = sql.SQL(", ").join(map(sql.Identifier, PROVIDER_EVENT_COLUMNS))
    with cur.copy(sql.SQL("COPY {} ({}) FROM STDIN (FORMAT BINARY)").format(table, columns)) as copy:
        copy.set_types(PROVIDER_EVENT_COPY_TYPES)
        for event in events:
            copy.write_row(event.copy_row())


def _insert(cur: psycopg.Cursor, events: list[ProviderEvent]) -> int:
    copy_provider_events(cur, _STAGE, events)
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
    route = _Route()
    inserted = 0
    chunk = list(itertools.islice(iterator, chunk_rows))
    while True:
        following = list(itertools.islice(iterator, chunk_rows)) if chunk else []
        is_last = not following
        inserted += _load_chunk(
            conn, chunk, state if is_last else None, before_commit if is_last else None, on_refused, route
        )
        if is_last:
            break
        chunk = following
    log.info("loaded %d new provider events", inserted)
    return inserted
