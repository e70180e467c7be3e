"""Every fault the Notify simulator can serve, driven through the list extract.

Each fault is injected on the first page and mid-walk (page 2). A transient fault is retried to success
and the warehouse ends exactly as after a clean run; a persistent one fails the task with a message that
names the cause, and the watermark (`pipeline_state` 'gc_notify_list_watermark') stays where it was even
though earlier chunks committed. A status mailtrace cannot map is stored raw (delivery_status NULL),
reported, and never turned into a verdict.

Already covered elsewhere, not repeated here (tests/test_notify_pipeline.py): 429 with Retry-After
honoured as the sleep, exponential backoff without it, a `links.next` loop on the first page, a
persistent 500, an unknown status stored raw, and the advisory lock refusing a second extract.

Soak (MAILTRACE_SOAK=1): hundreds of random faults over thousands of notifications whose statuses move
between runs; the warehouse must end as a fault-free extraction would leave it.
"""

from __future__ import annotations

import logging
import os
import random
import re
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
import requests
from psycopg import sql

from devtools.notify_sim.server import FAULT_KINDS, UNKNOWN_STATUS
from mailtrace.notify_extract import WATERMARK_STATE, extract_list, lookup_open_events
from mailtrace.providers.gc_notify import NotifyApiError, NotifyClient, PaginationLoopError
from mailtrace.reconcile import reconcile
from mailtrace.warehouse import get_state

NOW = datetime.now(UTC).replace(microsecond=0)
PAGE_SIZE = 5
ROWS = 12  # pages of 5, 5, 2, then the empty page Notify links to after any non-empty one
BACKOFF = 0.01
# A timeout fault holds the answer well past the client's timeout; other scenarios never come near it.
TIMEOUT_CLIENT = 0.5
TIMEOUT_DELAY = 2.0
PERSISTENT_ATTEMPTS = 3
SOAK = os.environ.get("MAILTRACE_SOAK") == "1"

STATUS_CYCLE = ("delivered", "permanent-failure", "temporary-failure", "sending")
VERDICTS = {
    "delivered": ("delivered", None),
    "permanent-failure": ("permanent_failure", "invalid_address"),
    "temporary-failure": ("temporary_failure", "unknown"),  # the simulator names no cause
    "sending": ("pending", None),
    "technical-failure": ("technical_failure", "provider_error"),
}

# Faults the client must retry: (scenario id, add_fault kind, add_fault kwargs, what a persistent one says).
RETRIED = [
    ("429-retry-after", "status", {"status": 429, "retry_after": 3}, r"Notify answered 429"),
    ("429-no-retry-after", "status", {"status": 429, "retry_after": -1}, r"Notify answered 429"),
    ("500", "status", {"status": 500}, r"Notify answered 500"),
    ("502", "status", {"status": 502}, r"Notify answered 502"),
    ("503", "status", {"status": 503}, r"Notify answered 503"),
    ("504", "status", {"status": 504}, r"Notify answered 504"),
    ("timeout", "delay", {"delay_seconds": TIMEOUT_DELAY}, r"no answer from Notify \(ReadTimeout"),
    ("reset", "reset", {}, r"no answer from Notify \(ConnectionError"),
    ("truncated-json", "truncated_json", {}, r"Notify answered 200: No JSON response"),
    ("malformed-json", "malformed_json", {}, r"Notify answered 200: No JSON response"),
]
# Faults that are not retried: the walk fails at once, or the data is kept raw and reported, or the one
# malformed notification is set aside ("patch": tests/test_notify_poison.py).
NOT_RETRIED = ("loop_next", "drop_field", "unknown_status", "patch")

FAULTS_SERVED: Counter[str] = Counter()


@pytest.fixture(scope="module", autouse=True)
def _figures():
    yield
    if os.environ.get("MAILTRACE_RELIABILITY_FIGURES") == "1":
        print(f"\n[figures] faults served by the simulator: {dict(FAULTS_SERVED)}")  # noqa: T201


# One warehouse database and one simulator for the module, emptied before each test: the matrix has many
# small cases, and creating a database per case would cost more than the cases themselves.
_WAREHOUSE_TABLES = (
    "mailtrace.provider_event, mailtrace.notification_event, mailtrace.pipeline_state, "
    "mailtrace.orphan_notification, mailtrace.provider_lookup, mailtrace.delivery, "
    "mailtrace.event_reference_alias"
)


@pytest.fixture(scope="module")
def _module_warehouse(pg_admin_dsn, warehouse_template):
    name = f"mailtrace_faults_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(pg_admin_dsn, autocommit=True) as admin:
        admin.execute(
            sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
                sql.Identifier(name), sql.Identifier(warehouse_template)
            )
        )
    try:
        with psycopg.connect(psycopg.conninfo.make_conninfo(pg_admin_dsn, dbname=name)) as conn:
            yield conn
    finally:
        with psycopg.connect(pg_admin_dsn, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture
def warehouse_conn(_module_warehouse):
    conn = _module_warehouse
    conn.rollback()
    conn.execute(f"TRUNCATE {_WAREHOUSE_TABLES} RESTART IDENTITY CASCADE")
    conn.commit()
    return conn


@pytest.fixture(scope="module")
def _module_sim(tmp_path_factory):
    from devtools.notify_sim import NotifySimulator

    simulator = NotifySimulator(tmp_path_factory.mktemp("faults") / "notify-sim.sqlite")
    simulator.start()
    yield simulator
    simulator.stop()


@pytest.fixture
def sim(_module_sim, request):
    _module_sim.reset()
    _module_sim.configure(page_size=PAGE_SIZE, rate_limit_per_minute=6000)
    yield _module_sim
    FAULTS_SERVED[request.node.originalname] += _module_sim.stats()["faults_served"]


def client_for(sim, delays: list[float], *, timeout: float = 30, max_attempts: int = 6) -> NotifyClient:
    return NotifyClient(
        sim.api_key,
        sim.base_url,
        timeout=timeout,
        max_attempts=max_attempts,
        backoff_base=BACKOFF,
        sleep=delays.append,
    )


def seed(sim, conn, count: int = ROWS, *, newest: datetime = NOW - timedelta(minutes=1), prefix: str = "e"):
    """`count` notifications one minute apart (newest first) and the app's event row for each."""
    rows = []
    for n in range(count):
        created = newest - timedelta(minutes=n)
        status = STATUS_CYCLE[n % len(STATUS_CYCLE)]
        rows.append(
            {
                "id": str(uuid.uuid4()),
                "email_address": f"person{n}@example.gov",
                "status": status,
                "created_at": created,
                "sent_at": created + timedelta(seconds=1),
                "completed_at": None if status == "sending" else created + timedelta(seconds=5),
                "reference": f"{prefix}{n}",
            }
        )
    sim.add_notifications(rows)
    with conn.transaction():
        for n, row in enumerate(rows):
            conn.execute(
                """INSERT INTO mailtrace.notification_event (event_id, subject_type, subject_id,
                       notification_type, recipient_email, provider, provider_reference, client_reference,
                       sent_at, local_status)
                   VALUES (%s, 'registration', %s, 'NOC', %s, 'gc_notify', %s, %s, %s, 'SENT')""",
                (
                    row["reference"],
                    f"STR-{n:06d}",
                    row["email_address"],
                    row["id"],
                    row["reference"],
                    row["created_at"],
                ),
            )
    return rows


def inject(sim, position: str, kind: str, count: int = 1, **kwargs) -> int:
    """Queue `count` faults for the first request or, behind a harmless one, for page 2. Returns extras."""
    extras = 0
    if position == "mid":
        sim.add_fault("delay", delay_seconds=0)  # consumed by page 1 without changing it
        extras = 1
    sim.add_fault(kind, count=count, **kwargs)
    return extras


def stored(conn) -> list[tuple]:
    rows = conn.execute(
        "SELECT provider_reference, raw_status, delivery_status FROM mailtrace.provider_event ORDER BY 1, 2"
    ).fetchall()
    conn.commit()
    return rows


def duplicates(conn) -> int:
    """Observations stored more than once (the same status of the same notification twice)."""
    (count,) = conn.execute(
        """SELECT count(*) - count(DISTINCT (provider_reference, raw_status)) FROM mailtrace.provider_event"""
    ).fetchone()
    conn.commit()
    return count


def verdicts(conn) -> dict[str, tuple]:
    rows = conn.execute(
        "SELECT event_id, delivery_status, failure_reason FROM mailtrace.notification_status"
    ).fetchall()
    conn.commit()
    return {event_id: (status, reason) for event_id, status, reason in rows}


def watermark(conn) -> datetime | None:
    value = get_state(conn, WATERMARK_STATE)
    conn.commit()
    return datetime.fromisoformat(value) if value else None


def expected_rows(rows) -> list[tuple]:
    return sorted((r["id"], r["status"], VERDICTS[r["status"]][0]) for r in rows)


def expected_verdicts(rows) -> dict[str, tuple]:
    return {r["reference"]: VERDICTS[r["status"]] for r in rows}


# ------------------------------------------------------------------------------------ the matrix


def test_matrix_covers_every_simulator_fault_kind():
    assert {kind for _, kind, _, _ in RETRIED} | set(NOT_RETRIED) == set(FAULT_KINDS)


def test_429_fault_can_omit_retry_after(sim):
    """The simulator option the no-Retry-After scenario relies on really drops the header."""
    sim.add_fault("status", status=429, retry_after=-1)
    sim.add_fault("status", status=429, retry_after=0)
    url = f"{sim.base_url}/v2/notifications"
    # Authentication comes after faults, so a bare request shows the fault's own answer.
    without = requests.get(url, timeout=10)
    with_zero = requests.get(url, timeout=10)
    assert without.status_code == with_zero.status_code == 429
    assert "Retry-After" not in without.headers
    assert with_zero.headers["Retry-After"] == "0"


@pytest.mark.parametrize("position", ["first", "mid"])
@pytest.mark.parametrize(("scenario", "kind", "kwargs", "message"), RETRIED, ids=[r[0] for r in RETRIED])
def test_transient_fault_is_retried_to_the_same_state_as_a_clean_run(
    warehouse_conn, sim, position, scenario, kind, kwargs, message
):
    rows = seed(sim, warehouse_conn)
    count = 2
    extras = inject(sim, position, kind, count, **kwargs)
    delays: list[float] = []
    timeout = TIMEOUT_CLIENT if kind == "delay" else 30
    client = client_for(sim, delays, timeout=timeout)

    result = extract_list(warehouse_conn, client, now=NOW)
    reconcile(warehouse_conn, now=NOW)

    assert sim.stats()["faults_served"] == count + extras
    assert client.retries == len(delays) == count
    if scenario == "429-retry-after":
        assert delays == [3.0, 3.0]
    else:
        # Our own backoff: base * 2**attempt, jittered down to half, never the simulator's default 1 s.
        assert all(delay <= BACKOFF * 2**n for n, delay in enumerate(delays))
    assert result["inserted"] == ROWS and result["unmapped_statuses"] == {}
    assert stored(warehouse_conn) == expected_rows(rows)
    assert duplicates(warehouse_conn) == 0
    assert watermark(warehouse_conn) == rows[0]["created_at"]
    assert verdicts(warehouse_conn) == expected_verdicts(rows)


@pytest.mark.parametrize(("scenario", "kind", "kwargs", "message"), RETRIED, ids=[r[0] for r in RETRIED])
def test_persistent_fault_fails_clearly_and_keeps_the_watermark(
    warehouse_conn, sim, scenario, kind, kwargs, message
):
    """Mid-walk, after a chunk committed: the message names the cause; the watermark does not move."""
    old = seed(sim, warehouse_conn, 3, newest=NOW - timedelta(hours=1), prefix="old")
    extract_list(warehouse_conn, client_for(sim, []), now=NOW)
    before = watermark(warehouse_conn)
    assert before == old[0]["created_at"]
    new = seed(sim, warehouse_conn)
    inject(sim, "mid", kind, PERSISTENT_ATTEMPTS, **kwargs)
    timeout = TIMEOUT_CLIENT if kind == "delay" else 30
    client = client_for(sim, [], timeout=timeout, max_attempts=PERSISTENT_ATTEMPTS)

    with pytest.raises(
        NotifyApiError, match=rf"still failing after {PERSISTENT_ATTEMPTS} attempts"
    ) as raised:
        extract_list(warehouse_conn, client, now=NOW, chunk_rows=2)
    assert re.search(rf"\(last: {message}", str(raised.value)), str(raised.value)

    partial = stored(warehouse_conn)
    # Page 1 went in as committed chunks (re-reading them later adds nothing) ...
    assert len(partial) > len(old)
    assert set(partial) < set(expected_rows(old + new))
    # ... but the watermark stays at the last complete walk, so the next run walks the same ground.
    assert watermark(warehouse_conn) == before

    rerun = extract_list(warehouse_conn, client_for(sim, []), now=NOW)
    reconcile(warehouse_conn, now=NOW)
    assert rerun["inserted"] == len(old) + len(new) - len(partial)
    assert stored(warehouse_conn) == expected_rows(old + new)
    assert duplicates(warehouse_conn) == 0
    assert watermark(warehouse_conn) == new[0]["created_at"]
    assert verdicts(warehouse_conn) == expected_verdicts(old + new)


@pytest.mark.parametrize(
    ("position", "message"),
    [("first", "points back at the first page"), ("mid", "loops back to older_than=")],
)
def test_links_next_loop_fails_without_retrying_or_moving_the_watermark(
    warehouse_conn, sim, position, message
):
    rows = seed(sim, warehouse_conn)
    inject(sim, position, "loop_next")
    delays: list[float] = []
    with pytest.raises(PaginationLoopError, match=message):
        extract_list(warehouse_conn, client_for(sim, delays), now=NOW, chunk_rows=2)
    assert delays == []  # a loop is a provider bug: retrying would only loop again
    assert watermark(warehouse_conn) is None
    assert set(stored(warehouse_conn)) <= set(expected_rows(rows))

    extract_list(warehouse_conn, client_for(sim, []), now=NOW)
    assert stored(warehouse_conn) == expected_rows(rows)
    assert watermark(warehouse_conn) == rows[0]["created_at"]


@pytest.mark.parametrize(
    ("kind", "raw_status"), [("drop_field", "missing-status"), ("unknown_status", UNKNOWN_STATUS)]
)
@pytest.mark.parametrize("position", ["first", "mid"])
def test_unmappable_status_is_kept_raw_reported_and_never_a_verdict(
    warehouse_conn, sim, caplog, kind, raw_status, position
):
    rows = seed(sim, warehouse_conn)
    inject(sim, position, kind)
    faulted = rows[:PAGE_SIZE] if position == "first" else rows[PAGE_SIZE : 2 * PAGE_SIZE]
    faulted_ids = {r["id"] for r in faulted}

    with caplog.at_level(logging.WARNING, logger="mailtrace"):
        result = extract_list(warehouse_conn, client_for(sim, []), now=NOW)
    reconcile(warehouse_conn, now=NOW)

    assert result["unmapped_statuses"] == {raw_status: PAGE_SIZE}
    assert f"{raw_status!r}: {PAGE_SIZE}" in caplog.text and "does not map" in caplog.text
    raw = [(ref, status, mapped) for ref, status, mapped in stored(warehouse_conn) if ref in faulted_ids]
    assert sorted(raw) == sorted((i, raw_status, None) for i in faulted_ids)
    found = verdicts(warehouse_conn)
    assert all(found[r["reference"]] == (None, None) for r in faulted)  # not guessed
    others = [r for r in rows if r["id"] not in faulted_ids]
    assert all(found[r["reference"]] == VERDICTS[r["status"]] for r in others)
    # The walk itself completed and loaded everything: the watermark may move.
    assert watermark(warehouse_conn) == rows[0]["created_at"]
    # The warning is kept for the Delivery page's health panel, open until a walk no longer meets it.
    open_warnings = (
        "SELECT kind, subject, run_count FROM mailtrace.pipeline_warning WHERE resolved_at IS NULL"
    )
    assert warehouse_conn.execute(open_warnings).fetchall() == [("unmapped_notify_status", raw_status, 1)]

    # Next run (inside the overlap) reads the real statuses; the raw rows stay as history.
    extract_list(warehouse_conn, client_for(sim, []), now=NOW)
    reconcile(warehouse_conn, now=NOW)
    assert verdicts(warehouse_conn) == expected_verdicts(rows)
    assert len(stored(warehouse_conn)) == ROWS + PAGE_SIZE
    assert warehouse_conn.execute(open_warnings).fetchall() == []


# ---------------------------------------------------------------------------------- id look-ups


def _old_pending_event(sim, conn):
    """A logged email older than the list window, known to Notify, with no verdict yet."""
    notification_id = str(uuid.uuid4())
    created = NOW - timedelta(hours=5)
    sim.add_notifications(
        [
            {
                "id": notification_id,
                "email_address": "old@example.gov",
                "status": "delivered",
                "created_at": created,
                "completed_at": created + timedelta(seconds=5),
            }
        ]
    )
    with conn.transaction():
        conn.execute(
            """INSERT INTO mailtrace.notification_event (event_id, subject_type, subject_id,
                   notification_type, recipient_email, provider, provider_reference, sent_at, local_status)
               VALUES ('old', 'registration', 'STR-000999', 'NOC', 'old@example.gov', 'gc_notify', %s, %s,
                       'SENT')""",
            (notification_id, created),
        )
    return notification_id


@pytest.mark.parametrize(("scenario", "kind", "kwargs", "message"), RETRIED, ids=[r[0] for r in RETRIED])
def test_lookup_failure_is_never_taken_for_a_missing_notification(
    warehouse_conn, sim, scenario, kind, kwargs, message
):
    """Only Notify's 404 is evidence for not_at_provider; a fault that outlasts the retries is not."""
    _old_pending_event(sim, warehouse_conn)
    sim.add_fault(kind, count=PERSISTENT_ATTEMPTS, path_prefix="/v2/notifications/", **kwargs)
    timeout = TIMEOUT_CLIENT if kind == "delay" else 30
    client = client_for(sim, [], timeout=timeout, max_attempts=PERSISTENT_ATTEMPTS)
    with pytest.raises(NotifyApiError, match=message):
        lookup_open_events(warehouse_conn, client, now=NOW)
    warehouse_conn.rollback()
    assert warehouse_conn.execute("SELECT count(*) FROM mailtrace.provider_lookup").fetchone() == (0,)
    warehouse_conn.commit()
    reconcile(warehouse_conn, now=NOW)
    assert verdicts(warehouse_conn)["old"] == (None, None)

    # The same fault once, then an answer: retried, found, delivered.
    sim.add_fault(kind, path_prefix="/v2/notifications/", **kwargs)
    looked_up = lookup_open_events(warehouse_conn, client_for(sim, [], timeout=timeout), now=NOW)
    reconcile(warehouse_conn, now=NOW)
    assert looked_up == {"checked": 1, "missing": 0, "inserted": 1, "quarantined": 0}
    assert verdicts(warehouse_conn)["old"] == ("delivered", None)


def test_lookup_of_an_unmappable_status_is_stored_raw_and_reported(warehouse_conn, sim, caplog):
    notification_id = _old_pending_event(sim, warehouse_conn)
    sim.add_fault("unknown_status", path_prefix="/v2/notifications/")
    with caplog.at_level(logging.WARNING, logger="mailtrace"):
        lookup_open_events(warehouse_conn, client_for(sim, []), now=NOW)
    reconcile(warehouse_conn, now=NOW)
    assert stored(warehouse_conn) == [(notification_id, UNKNOWN_STATUS, None)]
    assert "does not map" in caplog.text
    assert verdicts(warehouse_conn)["old"] == (None, None)


# --------------------------------------------------------------------------------------------- soak

SOAK_FAULTS = [
    *[(kind, kwargs) for _, kind, kwargs, _ in RETRIED if kind != "delay"],
    ("delay", {"delay_seconds": 0.6}),
    ("loop_next", {}),
    ("drop_field", {}),
    ("unknown_status", {}),
]


@pytest.mark.soak
@pytest.mark.skipif(not SOAK, reason="soak mode: set MAILTRACE_SOAK=1")
@pytest.mark.parametrize("seed_value", [11, 29, 47])
def test_soak_random_faults_over_moving_data_converge(warehouse_conn, sim, seed_value):
    """Many runs, each with random faults, while statuses settle and new mail arrives between runs."""
    rng = random.Random(seed_value)
    sim.configure(page_size=50)
    rows = seed(sim, warehouse_conn, 1500, newest=NOW - timedelta(minutes=90))
    injected = failures = 0
    for run in range(40):
        for _ in range(rng.randint(0, 8)):
            kind, kwargs = rng.choice(SOAK_FAULTS)
            sim.add_fault(kind, count=rng.randint(1, 3), **kwargs)
            injected += 1
        if run % 5 == 0:
            # New mail, newer than anything so far, and some pending mail settles.
            rows += seed(sim, warehouse_conn, 20, newest=NOW - timedelta(minutes=80 - run), prefix=f"r{run}-")
        still_sending = [r for r in rows if r["status"] == "sending"]
        for row in rng.sample(still_sending, k=min(3, len(still_sending))):
            row["status"] = rng.choice(["delivered", "permanent-failure", "technical-failure"])
            sim.set_status(row["id"], row["status"], completed_at=NOW - timedelta(minutes=1))
        client = client_for(sim, [], timeout=0.3, max_attempts=4)
        try:
            extract_list(warehouse_conn, client, now=NOW, overlap=timedelta(days=2), chunk_rows=137)
        except NotifyApiError:
            failures += 1
        reconcile(warehouse_conn, now=NOW)
        assert duplicates(warehouse_conn) == 0
    # Faults drained (or cleared), one clean run: every notification's current status is in, none twice.
    sim.configure(page_size=250)
    with sim._lock:  # noqa: SLF001 - test control: forget the faults not yet served
        sim._faults.clear()  # noqa: SLF001
    extract_list(warehouse_conn, client_for(sim, []), now=NOW, overlap=timedelta(days=2))
    reconcile(warehouse_conn, now=NOW)
    assert duplicates(warehouse_conn) == 0
    assert verdicts(warehouse_conn) == expected_verdicts(rows)
    assert watermark(warehouse_conn) == max(r["created_at"] for r in rows)
    assert injected > 100 and failures > 0
