"""The five benchmark scenarios of issue 8. Each takes the server and the run's config, returns Measures."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from contextlib import closing
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import psycopg
from psycopg import sql

from devtools.bench import data
from devtools.bench.harness import REPO, Measure, Server, log, timed
from devtools.pgcluster import airflow_connection_json
from mailtrace.events import PROVIDER_EVENT_COLUMNS, ProviderEvent
from mailtrace.load import load_provider_events
from mailtrace.reconcile import WORK_MEM as RECONCILE_WORK_MEM
from mailtrace.reconcile import reconcile
from mailtrace.warehouse import tune_bulk_transaction

MEMORY_LIMIT_MB = 300


@dataclass(frozen=True)
class Config:
    scale: float = 1.0
    reps: int = 5
    # The slow baseline, the memory children and the rate-limited resend are run fewer times.
    naive_reps: int = 2
    memory_reps: int = 2
    resend_reps: int = 2
    resend_rate_per_minute: int = 600
    resend_batch: int = 600

    def size(self, full: int, minimum: int = 10) -> int:
        return max(minimum, round(full * self.scale))


def _now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def _vacuum_analyze(dsn: str, *tables: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        for table in tables:
            conn.execute(sql.SQL("VACUUM ANALYZE {}").format(sql.Identifier("mailtrace", table)))


def _event_log_database(server: Server, prefix: str, count: int, now: datetime, spacing: float) -> str:
    """A migrated database holding `count` logged events (no verdicts yet), vacuumed and analysed."""
    name = server.create(prefix)
    with psycopg.connect(server.dsn(name)) as conn:
        data.insert_events(conn, 1, count, newest_sent_at=now - timedelta(minutes=1), spacing_seconds=spacing)
        conn.commit()
    _vacuum_analyze(server.dsn(name), "notification_event")
    return name


def _load_and_reconcile(conn: psycopg.Connection, events: list[ProviderEvent], now: datetime) -> dict:
    load_seconds, inserted = timed(lambda: load_provider_events(conn, events))
    reconcile_seconds, summary = timed(lambda: reconcile(conn, now=now))
    return {"load_s": load_seconds, "reconcile_s": reconcile_seconds, "inserted": inserted, **summary}


_UNINDEXED_TABLE = """
CREATE TABLE bench_bare_copy (
    provider text, provider_reference text, raw_status text, delivery_status text, event_at timestamptz,
    source text, recipient_email text, client_reference text, failure_reason text, detail text)
"""


def _aws_and_warehouse_env(endpoint: str, warehouse_dsn: str) -> dict[str, str]:
    """Credentials and connections: `aws_default` at moto, `mailtrace_warehouse` at a scratch DB."""
    return {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "ca-central-1",
        "AIRFLOW_CONN_MAILTRACE_WAREHOUSE": airflow_connection_json(warehouse_dsn),
        "AIRFLOW_CONN_AWS_DEFAULT": json.dumps(
            {
                "conn_type": "aws",
                "login": "testing",
                "password": "testing",
                "extra": {"region_name": "ca-central-1", "endpoint_url": endpoint},
            }
        ),
    }


def _copy_rows(conn: psycopg.Connection, events: list[ProviderEvent], table: sql.Identifier) -> None:
    """COPY `events` into `table` by the loader's own client path (cursor.copy + write_row).

    Into the unindexed `bench_bare_copy` this is the physical limit every ratio of the throughput scenario
    is taken against."""
    columns = sql.SQL(", ").join(sql.Identifier(c) for c in PROVIDER_EVENT_COLUMNS)
    with conn.cursor() as cursor:
        with cursor.copy(sql.SQL("COPY {} ({}) FROM STDIN").format(table, columns)) as copy:
            for event in events:
                copy.write_row(event.copy_row())
    conn.commit()


BARE_COPY_TABLE = sql.Identifier("bench_bare_copy")

# The floors: the least work the contract's writes need, each timed alone against the same bare COPY.
# The history with nothing but its identity key (no de-duplication key, no look-up index).
_KEY_ONLY_HISTORY = (
    """CREATE TABLE bench_key_only_history
       (LIKE mailtrace.provider_event INCLUDING DEFAULTS INCLUDING IDENTITY)""",
    "ALTER TABLE bench_key_only_history ADD PRIMARY KEY (id)",
)
# ... plus the unique observation key that makes re-loading the same statuses add nothing (idempotence).
_IDEMPOTENT_HISTORY = (
    """CREATE TABLE bench_idempotent_history
       (LIKE mailtrace.provider_event INCLUDING DEFAULTS INCLUDING IDENTITY)""",
    "ALTER TABLE bench_idempotent_history ADD PRIMARY KEY (id)",
    """CREATE UNIQUE INDEX ON bench_idempotent_history
       (provider, provider_reference, recipient_email, raw_status, event_at)""",
)
# Verdicts kept apart from the application's table, one narrow row per event (a contract change).
_SIDE_VERDICTS = (
    """CREATE TABLE bench_side_verdict (event_id text PRIMARY KEY, delivery_status text, failure_reason text,
       delivery_detail text, delivery_updated_at timestamptz NOT NULL DEFAULT now())""",
)
_WRITE_SIDE_VERDICTS = """INSERT INTO bench_side_verdict
    (event_id, delivery_status, failure_reason, delivery_detail)
SELECT event_id, delivery_status, failure_reason, delivery_detail FROM bench_verdict"""
# Every event's verdict, ready-made (one status per event here) and in the event log's physical order
# (as reconcile writes them), so only the write is timed.
_READY_VERDICTS = (
    """CREATE TABLE bench_verdict AS
       SELECT e.event_id, p.delivery_status, p.failure_reason, p.detail AS delivery_detail
       FROM mailtrace.notification_event e
       JOIN mailtrace.provider_event p
         ON p.provider = e.provider AND p.provider_reference = e.provider_reference
       ORDER BY e.ctid""",
    "ANALYZE bench_verdict",
)
# The event log as it would have to be for the verdict UPDATE to be HOT (heap-only tuples: no index
# entries written): room left on every page (fillfactor 45, more than twice the table) and no index on a
# column the UPDATE writes, i.e. without the indexes reconcile, flags and the Delivery page find verdicts by.
_HOT_EVENT_LOG = (
    """CREATE TABLE bench_hot_event
       (LIKE mailtrace.notification_event INCLUDING DEFAULTS INCLUDING CONSTRAINTS) WITH (fillfactor = 45)""",
    "INSERT INTO bench_hot_event SELECT * FROM mailtrace.notification_event",
    "ALTER TABLE bench_hot_event ADD PRIMARY KEY (event_id)",
    "CREATE INDEX ON bench_hot_event (provider, provider_reference)",
    "CREATE INDEX ON bench_hot_event (provider, client_reference) WHERE provider_reference IS NULL",
    "CREATE INDEX ON bench_hot_event (sent_at)",
    "CREATE INDEX ON bench_hot_event (subject_type, subject_id)",
    "VACUUM ANALYZE bench_hot_event",
    # A second, identical pair for the overlapped step below.
    "CREATE TABLE bench_overlap_history (LIKE bench_idempotent_history INCLUDING ALL)",
    "CREATE TABLE bench_overlap_event (LIKE bench_hot_event INCLUDING ALL) WITH (fillfactor = 45)",
    "INSERT INTO bench_overlap_event SELECT * FROM bench_hot_event",
    "VACUUM ANALYZE bench_overlap_event",
)
# The event log as the application lays it out (pages full, so hardly an update can be HOT) with nothing
# but its own primary key: the verdict UPDATE in place, whatever indexes mailtrace keeps or drops. A second,
# identical pair serves the overlapped step.
_PK_ONLY_EVENT_LOG = (
    """CREATE TABLE bench_pk_only_event
       (LIKE mailtrace.notification_event INCLUDING DEFAULTS INCLUDING CONSTRAINTS)""",
    "INSERT INTO bench_pk_only_event SELECT * FROM mailtrace.notification_event",
    "ALTER TABLE bench_pk_only_event ADD PRIMARY KEY (event_id)",
    "VACUUM ANALYZE bench_pk_only_event",
    "CREATE TABLE bench_pk_only_overlap_history (LIKE bench_idempotent_history INCLUDING ALL)",
    "CREATE TABLE bench_pk_only_overlap_event (LIKE bench_pk_only_event INCLUDING ALL)",
    "INSERT INTO bench_pk_only_overlap_event SELECT * FROM bench_pk_only_event",
    "VACUUM ANALYZE bench_pk_only_overlap_event",
)
# The one piece of logic no design can skip: one winner per notification among the run's statuses, by
# reconcile's precedence (several statuses of one email can arrive in one run). Read-only; the join to the
# event log is left out, as the verdict UPDATE above already pays for it.
_RANK_STATUSES = """SELECT count(*) FROM (
    SELECT DISTINCT ON (provider, provider_reference, recipient_email) delivery_status
    FROM mailtrace.provider_event
    ORDER BY provider, provider_reference, recipient_email,
             (delivery_status <> 'pending') DESC,
             event_at DESC,
             array_position(ARRAY['pending', 'delivered', 'temporary_failure', 'technical_failure',
                                  'permanent_failure', 'complaint'], delivery_status) DESC,
             id DESC) AS winners"""
_WRITE_VERDICTS = """UPDATE {} e
SET delivery_status = v.delivery_status, failure_reason = v.failure_reason,
    delivery_detail = v.delivery_detail, delivery_updated_at = now()
FROM bench_verdict v WHERE e.event_id = v.event_id"""


# Each floor step leaves up to a million dead or new rows, and autovacuum would then work on them while
# the next steps are timed: in the floors' scratch database it is off for every table.
_NO_AUTOVACUUM = (
    """DO $$
    DECLARE
        name regclass;
    BEGIN
        FOR name IN SELECT c.oid::regclass FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                    WHERE c.relkind = 'r' AND n.nspname IN ('public', 'mailtrace') LOOP
            EXECUTE format('ALTER TABLE %s SET (autovacuum_enabled = off)', name);
        END LOOP;
    END $$""",
)


def _run_statements(dsn: str, statements: tuple[str, ...]) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        for statement in statements:
            conn.execute(statement)


def _checkpoint(dsn: str) -> bool:
    """Flush dirty pages before a floor step, so it pays for no earlier step's writes (nor a checkpoint
    that they would trigger half-way through it).

    Like any run after a checkpoint, the step then writes a full-page image of each page it first changes.
    Needs superuser or pg_checkpoint: without it the floors run as they come, and say so.
    """
    try:
        _run_statements(dsn, ("CHECKPOINT",))
    except psycopg.errors.InsufficientPrivilege:
        return False
    return True


def _run_in_transaction(conn: psycopg.Connection, statement: str) -> None:
    with conn.transaction():
        tune_bulk_transaction(conn, work_mem=RECONCILE_WORK_MEM)
        conn.execute(statement)


def _verdict_update(conn: psycopg.Connection, table: sql.Composable) -> float:
    """Write the ready-made verdicts into `table`; return the fraction of its row updates that were HOT.

    With reconcile's own settings, so the join is hashed in one batch and rows are written in table order.
    """
    with conn.transaction():
        tune_bulk_transaction(conn, work_mem=RECONCILE_WORK_MEM)
        conn.execute(sql.SQL(_WRITE_VERDICTS).format(table))
        updated, hot = conn.execute(
            "SELECT n_tup_upd, n_tup_hot_upd FROM pg_stat_xact_user_tables WHERE relid = %s::regclass",
            (table.as_string(conn),),
        ).fetchone()
    return hot / updated if updated else 0.0


def _rank_statuses(conn: psycopg.Connection) -> int:
    with conn.transaction():
        tune_bulk_transaction(conn, work_mem=RECONCILE_WORK_MEM)
        (winners,) = conn.execute(_RANK_STATUSES).fetchone()
    return winners


def _cpu_jiffies() -> tuple[int, int] | None:
    """All CPUs' time since boot as (total, busy) jiffies, or None where /proc/stat cannot be read."""
    try:
        with open("/proc/stat", encoding="ascii") as stat:
            values = [int(value) for value in stat.readline().split()[1:]]
    except OSError:
        return None
    idle = values[3] + values[4]  # idle and iowait
    return sum(values), sum(values) - idle


def _overlapped_writes(
    dsn: str, events: list[ProviderEvent], history: sql.Identifier, event_log: sql.Identifier
) -> float:
    """The idempotent history COPY and the verdict UPDATE at once, in two sessions (two cores here).

    Returns the fraction of the machine's CPU time that was busy meanwhile (1.0: no core to spare for
    any other work), or nan where /proc/stat cannot be read."""
    start = threading.Barrier(3)
    errors: list[BaseException] = []

    def run(write) -> None:
        try:
            with psycopg.connect(dsn) as conn:
                start.wait(60)
                write(conn)
        except BaseException as error:  # re-raised in the caller's thread
            errors.append(error)
            start.abort()

    threads = [
        threading.Thread(target=run, args=(lambda c: _copy_rows(c, events, history),)),
        threading.Thread(target=run, args=(lambda c: _verdict_update(c, event_log),)),
    ]
    for thread in threads:
        thread.start()
    try:
        start.wait(60)
    except threading.BrokenBarrierError:
        pass  # a session failed before the start: its error is raised below
    before = _cpu_jiffies()
    for thread in threads:
        thread.join()
    after = _cpu_jiffies()
    if errors:
        raise errors[0]
    if before is None or after is None or after[0] == before[0]:
        return float("nan")
    return (after[1] - before[1]) / (after[0] - before[0])


def _floors(dsn: str, events: list[ProviderEvent]) -> dict[str, float]:
    """Time the contract's writes alone, with no logic around them, on a fresh copy of the event log.

    Each step starts after a checkpoint, with autovacuum off, in the settings reconcile uses. The sums are
    what a run writes at the least, one write after the other: an idempotent history plus the verdicts,
    on the application's table (as it is today; as the application lays it out with only its primary
    key, whatever indexes mailtrace dropped; laid out for HOT) or apart (a contract change). The overlapped
    steps run an in-place pair at once in two sessions, as a design with a core to spare could; adding the
    ranking of the statuses gives the least any run does, writes and logic, on that layout.
    """
    _run_statements(dsn, _KEY_ONLY_HISTORY + _IDEMPOTENT_HISTORY + _SIDE_VERDICTS + _NO_AUTOVACUUM)
    checkpoints = []
    seconds = {}

    def step(name: str, write):
        checkpoints.append(_checkpoint(dsn))
        with psycopg.connect(dsn) as conn:
            seconds[name], result = timed(lambda: write(conn))
        return result

    for name, table in (
        ("history", sql.Identifier("mailtrace", "provider_event")),
        ("idempotent_history", sql.Identifier("bench_idempotent_history")),
        ("key_only_history", sql.Identifier("bench_key_only_history")),
    ):
        step(name, lambda conn, table=table: _copy_rows(conn, events, table))
    _run_statements(dsn, ("ANALYZE mailtrace.provider_event",))
    step("ranking", _rank_statuses)
    _run_statements(dsn, _READY_VERDICTS + _HOT_EVENT_LOG + _PK_ONLY_EVENT_LOG + _NO_AUTOVACUUM)
    step("verdicts", lambda conn: _verdict_update(conn, sql.Identifier("mailtrace", "notification_event")))
    hot_fraction = step("hot_verdicts", lambda conn: _verdict_update(conn, sql.Identifier("bench_hot_event")))
    pk_only_hot_fraction = step(
        "pk_only_verdicts", lambda conn: _verdict_update(conn, sql.Identifier("bench_pk_only_event"))
    )
    step("side_verdicts", lambda conn: _run_in_transaction(conn, _WRITE_SIDE_VERDICTS))
    busy = step(
        "overlapped_in_place",
        lambda _conn: _overlapped_writes(
            dsn, events, sql.Identifier("bench_overlap_history"), sql.Identifier("bench_overlap_event")
        ),
    )
    pk_only_busy = step(
        "overlapped_pk_only",
        lambda _conn: _overlapped_writes(
            dsn,
            events,
            sql.Identifier("bench_pk_only_overlap_history"),
            sql.Identifier("bench_pk_only_overlap_event"),
        ),
    )
    for total, verdicts in (
        ("least_in_place", "hot_verdicts"),
        ("least_side_table", "side_verdicts"),
        ("least_in_place_pk_only", "pk_only_verdicts"),
        ("least_in_place_as_is", "verdicts"),
    ):
        seconds[total] = seconds["idempotent_history"] + seconds[verdicts]
    seconds["least_overall"] = seconds["overlapped_in_place"] + seconds["ranking"]
    seconds["least_overall_pk_only"] = seconds["overlapped_pk_only"] + seconds["ranking"]
    return {
        **seconds,
        "hot_fraction": hot_fraction,
        "pk_only_hot_fraction": pk_only_hot_fraction,
        "overlapped_cpu_busy": busy,
        "overlapped_pk_only_cpu_busy": pk_only_busy,
        "checkpointed": all(checkpoints),
    }


def _floors_on_fresh_copy(server: Server, template: str, events: list[ProviderEvent]) -> dict[str, float]:
    name = server.create("floor", template=template)
    try:
        return _floors(server.dsn(name), events)
    finally:
        server.drop(name)


def _verdict_counts(conn: psycopg.Connection) -> dict[str, int]:
    rows = conn.execute(
        "SELECT coalesce(delivery_status, 'none'), count(*) FROM mailtrace.notification_event GROUP BY 1"
    ).fetchall()
    conn.commit()
    return dict(rows)


# ------------------------------------------------------------------------------------------ 1. throughput


_FLOORS = (
    ("history", "COPY straight into provider_event (its indexes; no staging, no de-duplication)"),
    ("idempotent_history", "COPY into a copy of provider_event with only its identity and observation keys"),
    ("key_only_history", "COPY into a copy of provider_event with only its identity key"),
    (
        "verdicts",
        "one UPDATE writing every ready-made verdict into notification_event as it is (its indexes)",
    ),
    (
        "pk_only_verdicts",
        "that UPDATE on a copy of notification_event as the application lays it out, primary key only",
    ),
    ("hot_verdicts", "that UPDATE on a copy laid out for HOT updates (fillfactor 45, no verdict index)"),
    ("side_verdicts", "the same verdicts INSERTed into a narrow table of their own (a contract change)"),
    ("ranking", "one winner per notification among the run's statuses by reconcile's precedence (a read)"),
    (
        "least_in_place_as_is",
        "idempotent history + verdict UPDATE of notification_event as it is: least writes, today's indexes",
    ),
    (
        "least_in_place_pk_only",
        "idempotent history + primary-key-only verdict UPDATE: least writes, the application's layout",
    ),
    (
        "least_in_place",
        "idempotent history + HOT verdict UPDATE: least writes, verdicts where the contract has them",
    ),
    (
        "least_side_table",
        "idempotent history + side-table verdicts: least writes, verdicts moved (contract change)",
    ),
    (
        "overlapped_pk_only",
        "idempotent history COPY and verdict UPDATE of the primary-key-only copy at once, in two sessions",
    ),
    ("overlapped_in_place", "idempotent history COPY and HOT verdict UPDATE at once, in two sessions"),
    (
        "least_overall_pk_only",
        "primary-key-only writes at once, plus the ranking: the least a run does on the application's layout",
    ),
    ("least_overall", "HOT writes at once, plus the ranking: the least a run does on a HOT layout"),
)


def throughput(server: Server, config: Config) -> list[Measure]:
    count = config.size(1_000_000)
    now = _now()
    spacing = 8 * 86400 / count  # every event sent in the last eight days
    baseline_label = "bare COPY, unindexed table"
    measure = Measure(
        "throughput",
        f"load + reconcile {count:,} statuses for {count:,} events",
        "s",
        "load_provider_events + reconcile",
        baseline_label,
        target=3,
        comparison="<=",
    )
    floors = {
        key: Measure("throughput", f"floor: {label}", "s", key.replace("_", " "), baseline_label, target=None)
        for key, label in _FLOORS
    }
    log(f"throughput: building an event log of {count:,} rows")
    template = _event_log_database(server, "throughput_tpl", count, now, spacing)
    events = list(
        data.provider_events(1, count, newest_sent_at=now - timedelta(minutes=1), spacing_seconds=spacing)
    )
    splits = []
    # Fractions measured beside the floors' seconds: (floor, name of the figure) per key _floors returns.
    fraction_of = {
        "hot_fraction": ("hot_verdicts", "hot_update_fraction_median"),
        "pk_only_hot_fraction": ("pk_only_verdicts", "hot_update_fraction_median"),
        "overlapped_cpu_busy": ("overlapped_in_place", "cpu_busy_fraction_median"),
        "overlapped_pk_only_cpu_busy": ("overlapped_pk_only", "cpu_busy_fraction_median"),
    }
    fractions: dict[str, list[float]] = {key: [] for key in fraction_of}
    checkpointed = []
    for rep in range(config.reps):
        name = server.create("throughput", template=template)
        with psycopg.connect(server.dsn(name)) as conn:
            conn.execute(_UNINDEXED_TABLE)
            conn.commit()

            def ours(conn=conn) -> None:
                seconds, split = timed(lambda: _load_and_reconcile(conn, events, now))
                measure.ours.append(seconds)
                splits.append(split)

            def baseline(conn=conn) -> None:
                measure.baseline.append(timed(lambda: _copy_rows(conn, events, BARE_COPY_TABLE))[0])

            for step in (ours, baseline) if rep % 2 else (baseline, ours):
                step()
            verdicts = _verdict_counts(conn)
        server.drop(name)
        floor = _floors_on_fresh_copy(server, template, events)
        for key, values in fractions.items():
            values.append(floor.pop(key))
        checkpointed.append(floor.pop("checkpointed"))
        for key, seconds in floor.items():
            floors[key].ours.append(seconds)
            floors[key].baseline.append(measure.baseline[-1])
        log(
            f"throughput rep {rep + 1}: ours {measure.ours[-1]:.2f}s, bare COPY {measure.baseline[-1]:.2f}s, "
            + ", ".join(f"{key} {seconds:.2f}s" for key, seconds in floor.items())
        )
    server.drop(template)
    measure.extra["load_s_median"] = round(statistics.median(s["load_s"] for s in splits), 3)
    measure.extra["reconcile_s_median"] = round(statistics.median(s["reconcile_s"] for s in splits), 3)
    measure.extra["verdicts_after_last_run"] = verdicts
    measure.conditions["every event got a verdict"] = "none" not in verdicts
    measure.notes.append(
        "each repetition runs on a fresh file copy of the same event log; the two sides alternate order"
    )
    for key, (floor_key, figure) in fraction_of.items():
        floors[floor_key].extra[figure] = round(statistics.median(fractions[key]), 3)
    for floor in floors.values():
        floor.extra["checkpoint before each floor step"] = all(checkpointed)
    for key in ("least_in_place", "least_side_table", "least_in_place_pk_only", "least_in_place_as_is"):
        floors[key].notes.append(
            "a floor, not a design: the history with only its identity and observation keys (no look-up "
            "index), then the verdict write; no staging, matching, precedence or orphan work. A "
            "repetition's floor steps run one after the other, each after a checkpoint, on one fresh copy "
            "of the event log; the baseline is the same repetition's bare COPY"
        )
    return [measure, *floors.values()]


# --------------------------------------------------------------------------------------------- 2. naive


_NAIVE_UPDATE = """UPDATE mailtrace.notification_event
SET delivery_status = %s, failure_reason = %s, delivery_detail = %s, delivery_updated_at = now()
WHERE provider = %s AND provider_reference = %s"""
_NAIVE_COLUMNS = [
    "provider",
    "provider_reference",
    "recipient_email",
    "client_reference",
    "raw_status",
    "delivery_status",
    "failure_reason",
    "detail",
    "event_at",
    "source",
]


def _naive(dsn: str, events: list[ProviderEvent]) -> None:
    """What a user writes first: PostgresHook.insert_rows of each status, then one UPDATE per status."""
    from airflow.providers.postgres.hooks.postgres import PostgresHook

    os.environ["AIRFLOW_CONN_MAILTRACE_BENCH_NAIVE"] = airflow_connection_json(dsn)
    hook = PostgresHook(postgres_conn_id="mailtrace_bench_naive")
    rows = [tuple(getattr(event, column) for column in _NAIVE_COLUMNS) for event in events]
    hook.insert_rows("mailtrace.provider_event", rows, target_fields=_NAIVE_COLUMNS)
    with closing(hook.get_conn()) as conn, closing(conn.cursor()) as cursor:
        for event in events:
            cursor.execute(
                _NAIVE_UPDATE,
                (
                    event.delivery_status,
                    event.failure_reason,
                    event.detail,
                    event.provider,
                    event.provider_reference,
                ),
            )
        conn.commit()


def naive(server: Server, config: Config) -> list[Measure]:
    import logging

    # insert_rows logs every 1,000 rows; that is not what is being measured.
    logging.getLogger("airflow").setLevel(logging.WARNING)
    count = config.size(100_000)
    now = _now()
    spacing = 8 * 86400 / count
    naive_reps = min(config.reps, config.naive_reps)
    measure = Measure(
        "naive",
        f"{count:,} statuses, naive vs ours",
        "s",
        "load_provider_events + reconcile",
        "insert_rows + per-row UPDATE",
        target=20,
        comparison=">=",
        speedup=True,
    )
    naive_floors = {
        key: Measure(
            "naive",
            f"floor: {count:,} statuses, naive vs {label}",
            "s",
            key.replace("_", " "),
            "insert_rows + per-row UPDATE",
            target=None,
            speedup=True,
        )
        for key, label in (
            ("least_in_place_as_is", "the least writes into the event log as it is (today's indexes)"),
            ("least_in_place", "the least writes into the event log laid out for HOT updates"),
            ("least_side_table", "the least writes with verdicts in a table of their own"),
            ("overlapped_in_place", "the least writes on a HOT layout, run at once in two sessions"),
            ("least_overall_pk_only", "the least a run does on the application's layout (primary key only)"),
            ("least_overall", "the least a run does on a HOT layout (writes at once, plus the ranking)"),
        )
    }
    for floor_measure in naive_floors.values():
        floor_measure.notes.append(
            "the throughput scenario's floor of the same name at this size: a design that did nothing but "
            "these writes could be at most this many times faster than naive"
        )
    log(f"naive: building an event log of {count:,} rows")
    template = _event_log_database(server, "naive_tpl", count, now, spacing)
    events = list(
        data.provider_events(1, count, newest_sent_at=now - timedelta(minutes=1), spacing_seconds=spacing)
    )
    for rep in range(config.reps):
        run_naive = rep < naive_reps
        ours_db = server.create("naive_ours", template=template)
        naive_db = server.create("naive_naive", template=template) if run_naive else None

        def ours(name=ours_db) -> None:
            with psycopg.connect(server.dsn(name)) as conn:
                measure.ours.append(timed(lambda: _load_and_reconcile(conn, events, now))[0])

        def baseline(name=naive_db) -> None:
            measure.baseline.append(timed(lambda: _naive(server.dsn(name), events))[0])

        steps = [ours, baseline] if rep % 2 else [baseline, ours]
        for step in steps:
            if step is ours or run_naive:
                step()
        for name in (ours_db, naive_db):
            if name:
                server.drop(name)
        if run_naive:
            floor = _floors_on_fresh_copy(server, template, events)
            for key, floor_measure in naive_floors.items():
                floor_measure.ours.append(floor[key])
                floor_measure.baseline.append(measure.baseline[-1])
        shown = f"{measure.baseline[-1]:.2f}s" if run_naive else "skipped"
        log(f"naive rep {rep + 1}: ours {measure.ours[-1]:.2f}s, naive {shown}")
    server.drop(template)
    measure.notes.append(
        f"naive side timed {naive_reps} of {config.reps} repetitions (it is slow); ours every repetition"
    )
    measure.notes.append(
        "naive side: PostgresHook.insert_rows(provider_event) with its defaults (one INSERT per row, commit "
        "every 1,000), then one UPDATE of notification_event per status on one connection, one commit"
    )
    return [measure, *naive_floors.values()]


# --------------------------------------------------------------------------------------- 3. incremental


def incremental(server: Server, config: Config) -> list[Measure]:
    small, big = config.size(100_000, 100), config.size(10_000_000, 1000)
    delta = config.size(10_000)
    now = _now()
    measure = Measure(
        "incremental",
        f"run of {delta:,} new statuses, {big:,}- vs {small:,}-row history",
        "s",
        f"{big:,}-row history",
        f"{small:,}-row history",
        target=1.5,
        comparison="<=",
    )
    histories = {}
    span = 2 * 365 * 86400  # two years of history, the newest an hour old
    for label, count in (("small", small), ("big", big)):
        log(f"incremental: building a reconciled history of {count:,} events")
        name = server.create(f"incremental_{label}")
        with psycopg.connect(server.dsn(name)) as conn:
            seconds, _ = timed(
                lambda conn=conn, count=count: data.build_reconciled_history(
                    conn, count, newest_sent_at=now - timedelta(hours=1), spacing_seconds=span / count
                )
            )
        measure.extra[f"{label}_history_build_s"] = round(seconds, 1)
        histories[label] = name
    for rep in range(config.reps):
        first = 10**9 + rep * delta
        events = list(
            data.provider_events(first, delta, newest_sent_at=now - timedelta(minutes=1), spacing_seconds=1.0)
        )
        for label in ("small", "big") if rep % 2 == 0 else ("big", "small"):
            with psycopg.connect(server.dsn(histories[label])) as conn:
                # The application logged these sends since the last run (not part of the timed run).
                data.insert_events(
                    conn, first, delta, newest_sent_at=now - timedelta(minutes=1), spacing_seconds=1.0
                )
                conn.commit()
                seconds, result = timed(
                    lambda conn=conn, events=events: _load_and_reconcile(conn, events, now)
                )
                (measure.ours if label == "big" else measure.baseline).append(seconds)
                if result["updated"] != delta:
                    measure.conditions["every new event got its verdict"] = False
        log(f"incremental rep {rep + 1}: big {measure.ours[-1]:.3f}s, small {measure.baseline[-1]:.3f}s")
    measure.conditions.setdefault("every new event got its verdict", True)
    for name in histories.values():
        server.drop(name)
    measure.notes.append(
        "history built server-side (INSERT … SELECT generate_series) with final verdicts and the reconcile "
        "cursor past it, then VACUUM ANALYZE; each repetition logs new events (untimed) then times "
        "load_provider_events + reconcile of their statuses on both histories, alternating which goes first"
    )
    return [measure]


# -------------------------------------------------------------------------------------------- 4. memory


def _child_env(extra: dict[str, str]) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO / "plugins"), str(REPO)])
    env.update(extra)
    return env


def measure_rss(task: str, env: dict[str, str]) -> tuple[float, dict]:
    """Run `devtools.bench.memwork <task>` under `devtools.bench.rss`; (peak RSS in MB, the task's result)."""
    command = [
        sys.executable,
        "-m",
        "devtools.bench.rss",
        sys.executable,
        "-m",
        "devtools.bench.memwork",
        task,
    ]
    completed = subprocess.run(
        command, cwd=REPO, env=_child_env(env), capture_output=True, text=True, timeout=3600, check=False
    )
    if completed.returncode != 0:
        raise RuntimeError(
            f"memory child {task} failed:\n{completed.stdout[-3000:]}\n{completed.stderr[-3000:]}"
        )
    report = json.loads(completed.stdout.strip().splitlines()[-1])
    return report["maxrss_kb"] / 1024, report["result"]


def _seed_simulator(sim, count: int, now: datetime) -> None:
    """`count` notifications created over the last six days, added in chunks (the store is SQLite)."""
    spacing = 6 * 86400 / count
    chunk: list[dict] = []
    for i in range(1, count + 1):
        raw, status, _reason, detail = data.fate(i)
        created_at = now - timedelta(seconds=(count - i) * spacing + 60)
        chunk.append(
            {
                "id": data.provider_reference(i),
                "reference": f"bench-{i}",
                "email_address": f"person{i}@example.gov",
                "status": raw,
                "provider_response": detail,
                "created_at": created_at,
                "sent_at": created_at + timedelta(seconds=1),
                "completed_at": created_at + timedelta(seconds=20) if status != "pending" else None,
                "subject": f"Registration STR-{i}",
                "body": f"Registration STR-{i}: see your account for details.",
            }
        )
        if len(chunk) == 20_000:
            sim.add_notifications(chunk)
            chunk = []
    if chunk:
        sim.add_notifications(chunk)


_FAILED_ROWS = """
INSERT INTO mailtrace.notification_event
    (event_id, subject_type, subject_id, notification_type, recipient_email, provider, provider_reference,
     client_reference, sent_at, local_status, delivery_status, failure_reason, delivery_detail,
     delivery_updated_at)
SELECT 'bench-' || i, 'registration', 'STR-' || i, 'RENEWAL_REMINDER', 'person' || i || '@example.gov',
       'gc_notify', '00000000-0000-4000-8000-' || lpad(to_hex(i), 12, '0'), 'bench-' || i,
       %(start)s + make_interval(secs => i * %(spacing)s), 'SENT',
       (ARRAY['permanent_failure', 'temporary_failure', 'technical_failure'])[1 + mod(i, 3)],
       (ARRAY['invalid_address', 'mailbox_full', 'provider_error'])[1 + mod(i, 3)],
       'No such address, said the "provider" | bounce',
       %(start)s + make_interval(secs => i * %(spacing)s) + interval '1 minute'
FROM generate_series(1, %(count)s::bigint) AS i
"""


def memory(server: Server, config: Config) -> list[Measure]:
    from moto.server import ThreadedMotoServer

    from devtools.notify_sim import NotifySimulator
    from mailtrace.report import weekly_period

    count = config.size(1_000_000)
    reps = min(config.reps, config.memory_reps)
    now = _now()
    extract = Measure(
        "memory",
        f"extract {count:,} notifications from the simulator and load them",
        "MB",
        "peak RSS",
        "budget",
        target=1,
        comparison="<",
    )
    report = Measure(
        "memory",
        f"weekly report of {count:,} failed rows to S3",
        "MB",
        "peak RSS",
        "budget",
        target=1,
        comparison="<",
    )
    airflow_home = tempfile.mkdtemp(prefix="mailtrace-bench-airflow-")
    base_env = {"AIRFLOW_HOME": airflow_home, "AIRFLOW__CORE__LOAD_EXAMPLES": "false"}

    idle_mb, _ = measure_rss("idle", base_env)

    log(f"memory: seeding the simulator with {count:,} notifications")
    sim = NotifySimulator(rate_limit_per_minute=10**9)
    url = sim.start()
    try:
        seed_seconds, _ = timed(lambda: _seed_simulator(sim, count, now))
        extract.extra["simulator_seed_s"] = round(seed_seconds, 1)
        name = server.create("memory_extract")
        for rep in range(reps):
            env = {**base_env, "BENCH_DSN": server.dsn(name), "BENCH_NOTIFY_URL": url}
            env["BENCH_NOTIFY_KEY"] = sim.api_key
            env["BENCH_NOW"] = now.isoformat()
            seconds, (peak_mb, result) = timed(lambda env=env: measure_rss("extract", env))
            extract.ours.append(peak_mb)
            extract.baseline.append(MEMORY_LIMIT_MB)
            extract.extra["extract_s"] = round(seconds, 1)
            extract.extra["extract_result"] = {k: result[k] for k in ("pages", "notifications", "inserted")}
            extract.conditions["every notification loaded"] = result["notifications"] == count
            log(f"memory extract rep {rep + 1}: {peak_mb:.1f} MB in {seconds:.0f}s")
            with psycopg.connect(server.dsn(name)) as conn:
                conn.execute("TRUNCATE mailtrace.provider_event")
                conn.execute("DELETE FROM mailtrace.pipeline_state")
                conn.commit()
        server.drop(name)
    finally:
        sim.stop()

    log(f"memory: building {count:,} failed rows for the report")
    period = weekly_period(now)
    name = server.create("memory_report")
    with psycopg.connect(server.dsn(name)) as conn:
        spacing = (period.end - period.start).total_seconds() / (count + 2)
        conn.execute(_FAILED_ROWS, {"start": period.start, "spacing": spacing, "count": count})
        conn.commit()
    _vacuum_analyze(server.dsn(name), "notification_event")
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    moto.start()
    try:
        port = moto.get_host_and_port()[1]  # port 0: ask the server which port it took
        endpoint = f"http://127.0.0.1:{port}"
        env = {
            **base_env,
            **_aws_and_warehouse_env(endpoint, server.dsn(name)),
            "BENCH_NOW": now.isoformat(),
        }
        import boto3

        s3 = boto3.client(
            "s3",
            endpoint_url=endpoint,
            region_name="ca-central-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )
        for rep in range(reps):
            bucket = f"mailtrace-bench-{uuid.uuid4().hex[:10]}"
            s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": "ca-central-1"})
            seconds, (peak_mb, result) = timed(
                lambda bucket=bucket: measure_rss("report", {**env, "BENCH_BUCKET": bucket})
            )
            report.ours.append(peak_mb)
            report.baseline.append(MEMORY_LIMIT_MB)
            report.extra["report_s"] = round(seconds, 1)
            report.extra["report_result"] = {k: result[k] for k in ("row_count", "byte_count")}
            report.conditions["every failed row in the CSV"] = result["row_count"] == count
            log(f"memory report rep {rep + 1}: {peak_mb:.1f} MB in {seconds:.0f}s")
    finally:
        moto.stop()
        server.drop(name)
    for measure in (extract, report):
        measure.extra["idle_child_rss_mb"] = round(idle_mb, 1)
        measure.notes.append(
            f"peak RSS (ru_maxrss) of a fresh child per repetition ({reps} repetitions), against the "
            f"{MEMORY_LIMIT_MB} MB budget; ratio = peak / budget. A child that only imports the same modules "
            f"peaks at {idle_mb:.0f} MB"
        )
    extract.notes.append(
        "the simulator runs in the parent (rate limit raised, 250 per page); the child walks the list with "
        "mailtrace.notify_extract.extract_list, which loads into provider_event as it goes"
    )
    report.notes.append(
        "the child runs mailtrace.report.build_report (CSV to a temp file, upload to moto S3)"
    )
    return [extract, report]


# -------------------------------------------------------------------------------------------- 5. resend


class _TimedClient:
    """A NotifyClient that remembers when each accepted POST returned."""

    def __init__(self, client):
        self._client = client
        self.accepted_at: list[float] = []

    def __getattr__(self, name):
        return getattr(self._client, name)

    def send_email(self, *args, **kwargs):
        response = self._client.send_email(*args, **kwargs)
        self.accepted_at.append(time.monotonic())
        return response


def resend(server: Server, config: Config) -> list[Measure]:
    from moto.server import ThreadedMotoServer

    from devtools.notify_sim import NotifySimulator
    from mailtrace import resend as resend_module
    from mailtrace.providers.gc_notify import NotifyClient

    rate = config.resend_rate_per_minute
    batch = config.size(config.resend_batch, 20)
    reps = min(config.reps, config.resend_reps)
    measure = Measure(
        "resend",
        f"resend {batch:,} emails, simulator limited to {rate}/min",
        "req/min",
        "sustained send rate",
        "simulator limit R",
        target=0.9,
        comparison=">=",
    )
    name = server.create("resend")
    with psycopg.connect(server.dsn(name)) as conn:
        conn.execute(
            """INSERT INTO mailtrace.contact (subject_type, subject_id, email)
               SELECT 'registration', 'STR-' || lpad(i::text, 6, '0'), 'delivered+' || i || '@example.gov'
               FROM generate_series(1, %s) AS i""",
            (batch,),
        )
        conn.commit()
    ids = " ".join(f"STR-{i:06d}" for i in range(1, batch + 1))
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    moto.start()
    sim = NotifySimulator(rate_limit_per_minute=rate)
    url = sim.start()
    saved_env = dict(os.environ)
    try:
        import boto3

        port = moto.get_host_and_port()[1]
        endpoint = f"http://127.0.0.1:{port}"
        bucket = f"mailtrace-bench-{uuid.uuid4().hex[:10]}"
        boto3.client(
            "s3",
            endpoint_url=endpoint,
            region_name="ca-central-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        ).create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": "ca-central-1"})
        os.environ.update(
            {
                **_aws_and_warehouse_env(endpoint, server.dsn(name)),
                "AIRFLOW_VAR_MAILTRACE_REPORT_BUCKET": bucket,
                "AIRFLOW_VAR_MAILTRACE_NOTIFY_TEMPLATE_ID": str(uuid.uuid4()),
                "AIRFLOW_VAR_MAILTRACE_ENVIRONMENT": "production",
            }
        )
        duplicates_total = 0
        for rep in range(reps):
            sim.reset()  # also empties its rolling rate window: each repetition starts from a fresh minute
            params = resend_module.ResendParams(
                incident_id=f"BENCH-{rep}",
                id_type="registration",
                inline_ids=ids,
                dry_run=False,
                max_recipients=batch,
                rate_per_minute=rate,
                chunk_size=min(batch, resend_module.MAX_CHUNK_SIZE),
            )
            run_id = f"bench__{uuid.uuid4().hex}"
            chunks = resend_module.plan_resend(params, run_id=run_id)
            client = _TimedClient(NotifyClient(sim.api_key, url))
            started = time.monotonic()
            for chunk in chunks:
                resend_module.send_chunk(
                    params, run_id=run_id, chunk_index=chunk["chunk_index"], client=client
                )
            elapsed = time.monotonic() - started
            summary = resend_module.summarize_run(params, run_id=run_id)
            references = Counter(body.get("reference") for body in sim.sent_requests())
            duplicates = sum(n - 1 for n in references.values() if n > 1)
            duplicates_total += duplicates
            stamps = client.accepted_at
            sustained = (len(stamps) - 1) / (stamps[-1] - stamps[0]) * 60 if len(stamps) > 1 else 0.0
            measure.ours.append(sustained)
            measure.baseline.append(rate)
            measure.extra[f"rep_{rep + 1}"] = {
                "sent": summary["sent"],
                "posts_accepted": sim.stats()["posts_accepted"],
                "rate_limited_429": sim.stats()["rate_limited"],
                "duplicates": duplicates,
                "send_phase_s": round(elapsed, 1),
            }
            measure.conditions["every email sent exactly once"] = measure.conditions.get(
                "every email sent exactly once", True
            ) and (summary["sent"] == batch and len(references) == batch and duplicates == 0)
            log(f"resend rep {rep + 1}: {sustained:.1f}/min of {rate}/min, {duplicates} duplicates")
        measure.extra["duplicates_total"] = duplicates_total
    finally:
        os.environ.clear()
        os.environ.update(saved_env)
        sim.stop()
        moto.stop()
        server.drop(name)
    measure.notes.append(
        f"R = {rate}/min in the simulator's rolling 60 s window and as the run's rate_per_minute; a batch of "
        f"{batch} emails in one run ({reps} repetitions, each with a fresh incident and an emptied window). "
        "Rate = (accepted POSTs - 1) / (last accepted - first accepted); planning is not counted"
    )
    return [measure]


SCENARIOS = {
    "throughput": throughput,
    "naive": naive,
    "incremental": incremental,
    "memory": memory,
    "resend": resend,
}
