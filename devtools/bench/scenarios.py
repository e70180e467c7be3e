"""The benchmark scenarios. Each takes the server and the run's config, returns Measures."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
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
from mailtrace.events import ProviderEvent
from mailtrace.load import copy_provider_events, load_provider_events
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
    """COPY `events` into `table` by the loader's own client path (mailtrace.load.copy_provider_events).

    Into the unindexed `bench_bare_copy` this is the physical limit every ratio of the throughput scenario
    is taken against."""
    with conn.cursor() as cursor:
        copy_provider_events(cursor, table, events)
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
# Verdicts in a narrow table of their own (mailtrace.delivery's shape), one row per event.
_SIDE_VERDICTS = (
    """CREATE TABLE bench_side_verdict (event_id text PRIMARY KEY, delivery_status text, failure_reason text,
       delivery_detail text, delivery_updated_at timestamptz NOT NULL DEFAULT now())""",
)
_WRITE_SIDE_VERDICTS = """INSERT INTO bench_side_verdict
    (event_id, delivery_status, failure_reason, delivery_detail)
SELECT event_id, delivery_status, failure_reason, delivery_detail FROM bench_verdict"""
# Every event's verdict, ready-made (one status per event here) and in key order (as reconcile writes them),
# so only the write is timed.
_READY_VERDICTS = (
    """CREATE TABLE bench_verdict AS
       SELECT e.event_id, p.delivery_status, p.failure_reason, p.detail AS delivery_detail
       FROM mailtrace.notification_event e
       JOIN mailtrace.provider_event p
         ON p.provider = e.provider AND p.provider_reference = e.provider_reference
       ORDER BY e.event_id""",
    "ANALYZE bench_verdict",
)
# The one piece of logic no design can skip: one winner per notification among the run's statuses, by
# reconcile's precedence (several statuses of one email can arrive in one run). Read-only; the join to the
# event log is left out, as the verdict write above already pays for it.
_RANK_STATUSES = """SELECT count(*) FROM (
    SELECT DISTINCT ON (provider, provider_reference, recipient_email) delivery_status
    FROM mailtrace.provider_event
    ORDER BY provider, provider_reference, recipient_email,
             (delivery_status <> 'pending') DESC,
             event_at DESC,
             array_position(ARRAY['pending', 'delivered', 'temporary_failure', 'technical_failure',
                                  'permanent_failure', 'complaint'], delivery_status) DESC,
             id DESC) AS winners"""


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


def _rank_statuses(conn: psycopg.Connection) -> int:
    with conn.transaction():
        tune_bulk_transaction(conn, work_mem=RECONCILE_WORK_MEM)
        (winners,) = conn.execute(_RANK_STATUSES).fetchone()
    return winners


def _floors(dsn: str, events: list[ProviderEvent]) -> dict[str, float]:
    """Time the writes a run cannot avoid, with no logic around them, on a fresh copy of the event log.

    Each step starts after a checkpoint, with autovacuum off, in the settings reconcile uses. The sums are
    what a run does at the least in this layout, one step after the other: an idempotent history, the
    verdicts INSERTed into a table of their own, and the ranking of the statuses.
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
    _run_statements(dsn, _READY_VERDICTS + _NO_AUTOVACUUM)
    step("side_verdicts", lambda conn: _run_in_transaction(conn, _WRITE_SIDE_VERDICTS))
    seconds["least_side_table"] = seconds["idempotent_history"] + seconds["side_verdicts"]
    seconds["least_overall"] = seconds["least_side_table"] + seconds["ranking"]
    return {**seconds, "checkpointed": all(checkpoints)}


def _floors_on_fresh_copy(server: Server, template: str, events: list[ProviderEvent]) -> dict[str, float]:
    name = server.create("floor", template=template)
    try:
        return _floors(server.dsn(name), events)
    finally:
        server.drop(name)


def _verdict_counts(conn: psycopg.Connection) -> dict[str, int]:
    rows = conn.execute(
        "SELECT coalesce(delivery_status, 'none'), count(*) FROM mailtrace.notification_status GROUP BY 1"
    ).fetchall()
    conn.commit()
    return dict(rows)


# ------------------------------------------------------------------------------------------ 1. throughput


_FLOORS = (
    ("history", "COPY straight into provider_event (its indexes; no staging, no de-duplication)"),
    ("idempotent_history", "COPY into a copy of provider_event with only its identity and observation keys"),
    ("key_only_history", "COPY into a copy of provider_event with only its identity key"),
    ("side_verdicts", "every ready-made verdict INSERTed into a narrow table of its own"),
    ("ranking", "one winner per notification among the run's statuses by reconcile's precedence (a read)"),
    ("least_side_table", "idempotent history + verdicts in their own table: the least writes"),
)
LEAST_LABEL = "history COPY + verdicts INSERTed in their own table + the ranking (the least a run does)"


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
        target=4,
        comparison="<=",
    )
    against_least = Measure(
        "throughput",
        f"load + reconcile {count:,} statuses vs the least a run does in this layout",
        "s",
        "load_provider_events + reconcile",
        LEAST_LABEL,
        target=1.25,
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
        checkpointed.append(floor.pop("checkpointed"))
        least = floor.pop("least_overall")
        against_least.ours.append(measure.ours[-1])
        against_least.baseline.append(least)
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
    for floor in floors.values():
        floor.extra["checkpoint before each floor step"] = all(checkpointed)
    against_least.extra["checkpoint before each floor step"] = all(checkpointed)
    against_least.notes.append(
        "the least a run does: the history with only its identity and observation keys (no look-up index), "
        "the verdicts INSERTed into a narrow table, and the ranking of the statuses, one after the other, "
        "each after a checkpoint, on a fresh copy of the event log; no staging, matching or orphan work"
    )
    return [measure, against_least, *floors.values()]


# --------------------------------------------------------------------------------------------- 2. naive


_NAIVE_UPSERT = """INSERT INTO mailtrace.delivery AS d
    (event_id, delivery_status, failure_reason, delivery_detail, recipient_address, sent_at)
SELECT event_id, %s, %s, %s, lower(recipient_email), sent_at
FROM mailtrace.notification_event WHERE provider = %s AND provider_reference = %s
ON CONFLICT (event_id) DO UPDATE
SET delivery_status = EXCLUDED.delivery_status, failure_reason = EXCLUDED.failure_reason,
    delivery_detail = EXCLUDED.delivery_detail, delivery_updated_at = now()"""
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
    """What a user writes first: PostgresHook.insert_rows of each status, then one upsert per status."""
    from airflow.providers.postgres.hooks.postgres import PostgresHook

    os.environ["AIRFLOW_CONN_MAILTRACE_BENCH_NAIVE"] = airflow_connection_json(dsn)
    hook = PostgresHook(postgres_conn_id="mailtrace_bench_naive")
    rows = [tuple(getattr(event, column) for column in _NAIVE_COLUMNS) for event in events]
    hook.insert_rows("mailtrace.provider_event", rows, target_fields=_NAIVE_COLUMNS)
    with closing(hook.get_conn()) as conn, closing(conn.cursor()) as cursor:
        for event in events:
            cursor.execute(
                _NAIVE_UPSERT,
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
        "insert_rows + per-row upsert",
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
            "insert_rows + per-row upsert",
            target=None,
            speedup=True,
        )
        for key, label in (
            ("least_side_table", "the least writes (history, verdicts in their own table)"),
            ("least_overall", "the least a run does (the least writes plus the ranking)"),
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
        "every 1,000), then one upsert into mailtrace.delivery per status on one connection, one commit"
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


_FAILED_ROWS = (
    """
INSERT INTO mailtrace.notification_event
    (event_id, subject_type, subject_id, notification_type, recipient_email, provider, provider_reference,
     client_reference, sent_at, local_status)
SELECT 'bench-' || i, 'registration', 'STR-' || i, 'RENEWAL_REMINDER', 'person' || i || '@example.gov',
       'gc_notify', '00000000-0000-4000-8000-' || lpad(to_hex(i), 12, '0'), 'bench-' || i,
       %(start)s + make_interval(secs => i * %(spacing)s), 'SENT'
FROM generate_series(1, %(count)s::bigint) AS i
""",
    """
INSERT INTO mailtrace.delivery
    (event_id, delivery_status, failure_reason, delivery_detail, delivery_updated_at, recipient_address,
     sent_at)
SELECT 'bench-' || i,
       (ARRAY['permanent_failure', 'temporary_failure', 'technical_failure'])[1 + mod(i, 3)],
       (ARRAY['invalid_address', 'mailbox_full', 'provider_error'])[1 + mod(i, 3)],
       'No such address, said the "provider" | bounce',
       %(start)s + make_interval(secs => i * %(spacing)s) + interval '1 minute',
       'person' || i || '@example.gov',
       %(start)s + make_interval(secs => i * %(spacing)s)
FROM generate_series(1, %(count)s::bigint) AS i
""",
)


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
        for statement in _FAILED_ROWS:
            conn.execute(statement, {"start": period.start, "spacing": spacing, "count": count})
        conn.commit()
    _vacuum_analyze(server.dsn(name), "notification_event", "delivery")
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


# ---------------------------------------------------------------------------------- 6. application's cost


# The event log as an application lays it out on its own: the contract's columns and indexes (CONTRACT.md §1).
_APPLICATION_ONLY_LOG = (
    "CREATE SCHEMA mailtrace",
    """CREATE TABLE mailtrace.notification_event (
           event_id text PRIMARY KEY, subject_type text NOT NULL, subject_id text NOT NULL,
           notification_type text NOT NULL, recipient_email text NOT NULL, provider text NOT NULL,
           provider_reference text, client_reference text, sent_at timestamptz NOT NULL,
           local_status text NOT NULL)""",
    "CREATE INDEX ON mailtrace.notification_event (provider, provider_reference)",
    "CREATE INDEX ON mailtrace.notification_event (provider, client_reference)",
    "CREATE INDEX ON mailtrace.notification_event (sent_at)",
)
_APPLICATION_INSERT = f"""INSERT INTO mailtrace.notification_event
    (event_id, subject_type, subject_id, notification_type, recipient_email, provider, provider_reference,
     client_reference, sent_at, local_status)
VALUES (%s, 'registration', %s, 'NOC', %s, '{data.PROVIDER}', %s, %s, %s, 'SENT')"""


def _application_inserts(dsn: str, first: int, count: int, now: datetime) -> None:
    """The application logging `count` sends, one INSERT per send, committed in batches of 1,000."""
    with psycopg.connect(dsn) as conn, conn.cursor() as cursor:
        for start in range(first, first + count, 1000):
            numbers = range(start, min(start + 1000, first + count))
            cursor.executemany(
                _APPLICATION_INSERT,
                [
                    (
                        f"app-{i}",
                        f"STR-{i}",
                        f"person{i}@example.gov",
                        data.provider_reference(i),
                        f"app-{i}",
                        now,
                    )
                    for i in numbers
                ],
            )
            conn.commit()


def application_cost(server: Server, config: Config) -> list[Measure]:
    count = config.size(100_000)
    now = _now()
    measure = Measure(
        "application_cost",
        f"the application inserting {count:,} events into its event log",
        "s",
        "with mailtrace installed",
        "without mailtrace",
        target=1.05,
        comparison="<=",
    )
    with_mailtrace = server.create("app_cost_with")
    without = server.create("app_cost_without", migrate=False)
    _run_statements(server.dsn(without), _APPLICATION_ONLY_LOG)
    for rep in range(config.reps):
        first = 1 + rep * count
        sides = [(with_mailtrace, measure.ours), (without, measure.baseline)]
        for name, runs in sides if rep % 2 == 0 else reversed(sides):
            _checkpoint(server.dsn(name))
            dsn = server.dsn(name)
            runs.append(timed(lambda dsn=dsn, first=first: _application_inserts(dsn, first, count, now))[0])
        with_s, without_s = measure.ours[-1], measure.baseline[-1]
        log(f"application cost rep {rep + 1}: with {with_s:.2f}s, without {without_s:.2f}s")
    for name in (with_mailtrace, without):
        server.drop(name)
    measure.notes.append(
        "one INSERT per event (executemany), a commit every 1,000, into the same table and indexes "
        "(CONTRACT.md §1) in two databases, one migrated by mailtrace, one not; the two sides alternate order"
    )
    return [measure]


SCENARIOS = {
    "throughput": throughput,
    "naive": naive,
    "incremental": incremental,
    "memory": memory,
    "resend": resend,
    "application_cost": application_cost,
}
