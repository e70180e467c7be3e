"""Concurrent runs cannot corrupt state, and reconcile racing the application loses nothing.

Threads, each with its own connection to a real warehouse, against a real Notify simulator:

* two list extracts at once: the advisory lock refuses the second (deterministically, while the first
  holds it), and in a free race either one is refused or both complete one after the other; never a
  duplicate, never a watermark behind the data;
* the extract's session (it holds that lock) asks the server to drop it within about two minutes of its
  client vanishing, instead of the operating system's two-hour TCP keepalive;
* reconcile running in a loop while the application inserts events (some logged QUEUED first and only
  later marked SENT with the provider's id) and provider observations keep arriving, in any order:
  after a final reconcile every event has the verdict its history gives, and no orphan is left.

Already covered (tests/test_notify_pipeline.py): a held lock refuses extract_list; an orphan is adopted
when its event row commits late.
"""

from __future__ import annotations

import os
import random
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from mailtrace.events import ProviderEvent
from mailtrace.load import load_provider_events
from mailtrace.locks import EXTRACT_LOCK_BASE
from mailtrace.notify_extract import WATERMARK_STATE, extract_list
from mailtrace.providers.gc_notify import NotifyClient
from mailtrace.reconcile import reconcile

NOW = datetime.now(UTC).replace(microsecond=0)
SOAK = os.environ.get("MAILTRACE_SOAK") == "1"
LOCK_REFUSED = "another Notify extract is running"


def client(sim) -> NotifyClient:
    return NotifyClient(sim.api_key, sim.base_url, backoff_base=0.01, sleep=lambda _: None)


def add_notifications(sim, count: int, newest: datetime) -> list[dict]:
    rows = [
        {
            "id": str(uuid.uuid4()),
            "email_address": f"p{n}@example.gov",
            "status": "delivered",
            "created_at": newest - timedelta(seconds=n),
        }
        for n in range(count)
    ]
    sim.add_notifications(rows)
    return rows


def state(dsn: str) -> tuple[int, int, datetime | None]:
    """(rows, distinct observations, watermark)."""
    with psycopg.connect(dsn) as conn:
        rows, distinct = conn.execute(
            "SELECT count(*), count(DISTINCT (provider_reference, raw_status)) FROM mailtrace.provider_event"
        ).fetchone()
        row = conn.execute(
            "SELECT value FROM mailtrace.pipeline_state WHERE name = %s", (WATERMARK_STATE,)
        ).fetchone()
    return rows, distinct, datetime.fromisoformat(row[0]) if row else None


# ------------------------------------------------------------------------------- two extracts at once


def test_second_extract_is_refused_while_the_first_holds_the_lock(warehouse_dsn, notify_sim):
    rows = add_notifications(notify_sim, 30, NOW - timedelta(minutes=1))
    # The first extract's first request is slow, so it is certainly inside the lock when the second starts.
    notify_sim.add_fault("delay", delay_seconds=1.0)
    first_started = threading.Event()
    outcome: dict = {}

    def first():
        with psycopg.connect(warehouse_dsn) as conn:
            first_started.set()
            outcome["first"] = extract_list(conn, client(notify_sim), now=NOW)

    thread = threading.Thread(target=first)
    thread.start()
    first_started.wait(30)
    with psycopg.connect(warehouse_dsn, autocommit=True) as watcher:
        for _ in range(400):  # until the first extract holds the advisory lock
            (held,) = watcher.execute(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objid = %s AND granted",
                (EXTRACT_LOCK_BASE,),
            ).fetchone()
            if held:
                break
            time.sleep(0.01)
        assert held == 1
    with psycopg.connect(warehouse_dsn) as conn:
        with pytest.raises(RuntimeError, match=LOCK_REFUSED):
            extract_list(conn, client(notify_sim), now=NOW)
        thread.join(60)
        assert outcome["first"]["inserted"] == 30
        assert state(warehouse_dsn) == (30, 30, rows[0]["created_at"])
        # Once the first is done the lock is free again, and the second run adds nothing.
        assert extract_list(conn, client(notify_sim), now=NOW)["inserted"] == 0
    assert state(warehouse_dsn) == (30, 30, rows[0]["created_at"])


def _keepalives(conn: psycopg.Connection) -> tuple[str, ...]:
    names = ("tcp_keepalives_idle", "tcp_keepalives_interval", "tcp_keepalives_count")
    return tuple(conn.execute("SELECT current_setting(%s)", (name,)).fetchone()[0] for name in names)


def test_extract_session_is_dropped_soon_after_its_client_vanishes(warehouse_dsn, notify_sim):
    """The extract holds a session lock: its session must not outlive a crashed worker by two hours."""
    add_notifications(notify_sim, 3, NOW - timedelta(minutes=1))
    with psycopg.connect(warehouse_dsn) as conn:
        if conn.info.host.startswith("/"):
            pytest.skip("TCP keepalives do not apply over a Unix socket")
        before = _keepalives(conn)
        conn.commit()
        assert extract_list(conn, client(notify_sim), now=NOW)["inserted"] == 3
        assert _keepalives(conn) == ("60", "10", "6") != before


def _extract_once(dsn: str, sim, barrier: threading.Barrier, results: list) -> None:
    with psycopg.connect(dsn) as conn:
        barrier.wait(30)
        try:
            results.append(extract_list(conn, client(sim), now=NOW, chunk_rows=7))
        except RuntimeError as error:
            results.append(error)


def _race(dsn: str, sim, iterations: int, per_iteration: int, seed: int) -> dict:
    rng = random.Random(seed)
    outcomes = {"completed": 0, "refused": 0}
    expected = 0
    newest = None
    for iteration in range(iterations):
        # Each batch newer than the last, all in the past (a future created_at reads as 'sending').
        batch = add_notifications(sim, per_iteration, NOW - timedelta(hours=1, seconds=-20 * iteration))
        expected += per_iteration
        newest = batch[0]["created_at"]
        if rng.random() < 0.3:
            sim.add_fault("delay", delay_seconds=rng.uniform(0, 0.2))  # shift the timing a little
        barrier = threading.Barrier(2)
        results: list = []
        threads = [
            threading.Thread(target=_extract_once, args=(dsn, sim, barrier, results)) for _ in range(2)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        completed = [r for r in results if isinstance(r, dict)]
        refused = [r for r in results if not isinstance(r, dict)]
        assert len(results) == 2 and completed, results
        assert all(LOCK_REFUSED in str(error) for error in refused)
        outcomes["completed"] += len(completed)
        outcomes["refused"] += len(refused)
        # Both together inserted each notification exactly once; the watermark covers exactly the data.
        assert sum(r["inserted"] for r in completed) == per_iteration, (iteration, results)
        assert state(dsn) == (expected, expected, newest)
    return outcomes


def test_two_extracts_racing_never_duplicate_or_skip(warehouse_dsn, notify_sim):
    outcomes = _race(warehouse_dsn, notify_sim, iterations=12, per_iteration=40, seed=5)
    assert outcomes["completed"] + outcomes["refused"] == 24


# ------------------------------------------------------------------- reconcile racing the application


STATUS_ORDER = ("pending", "delivered", "temporary_failure", "permanent_failure")
RAW = {
    "pending": "sending",
    "delivered": "delivered",
    "temporary_failure": "temporary-failure",
    "permanent_failure": "permanent-failure",
}
REASON = {"temporary_failure": "mailbox_full", "permanent_failure": "invalid_address"}


def _plan(count: int, rng: random.Random) -> tuple[list[dict], list[ProviderEvent], dict[str, tuple]]:
    """Events the app will log, the provider's observations of them, and the verdict each must end with."""
    events, observations, expected = [], [], {}
    for n in range(count):
        event_id = f"ev-{n}"
        reference = str(uuid.uuid4())
        sent_at = NOW - timedelta(minutes=30) + timedelta(seconds=n)
        email = f"person{n}@example.gov"
        mode = rng.choice(["sent", "queued_then_sent", "client_reference_only"])
        events.append(
            {"event_id": event_id, "reference": reference, "sent_at": sent_at, "email": email, "mode": mode}
        )
        history = [("pending", sent_at + timedelta(seconds=1))]
        final = rng.choice(["delivered", "delivered", "temporary_failure", "permanent_failure", None])
        if final:
            history.append((final, sent_at + timedelta(seconds=30)))
        if final == "delivered" and rng.random() < 0.2:
            history.append(("permanent_failure", sent_at + timedelta(seconds=90)))  # bounce after delivery
        # Receipts arrive in any order, some twice.
        rng.shuffle(history)
        if rng.random() < 0.2:
            history.append(history[0])
        for status, at in history:
            observations.append(
                ProviderEvent(
                    provider="gc_notify",
                    provider_reference=reference,
                    raw_status=RAW[status],
                    delivery_status=status,
                    failure_reason=REASON.get(status),
                    event_at=at,
                    source="test",
                    recipient_email=email,
                    client_reference=event_id,
                )
            )
        finals = sorted((at, STATUS_ORDER.index(s), s) for s, at in history if s != "pending")
        winner = finals[-1][2] if finals else "pending"
        expected[event_id] = (winner, REASON.get(winner))
    rng.shuffle(observations)
    return events, observations, expected


def _app_writes(dsn: str, events: list[dict], rng: random.Random) -> None:
    """The application: small transactions; some events logged QUEUED first, then SENT with the id."""
    later = []
    with psycopg.connect(dsn) as conn:
        for start in range(0, len(events), 5):
            with conn.transaction():
                for event in events[start : start + 5]:
                    queued = event["mode"] == "queued_then_sent"
                    conn.execute(
                        """INSERT INTO mailtrace.notification_event (event_id, subject_type, subject_id,
                               notification_type, recipient_email, provider, provider_reference,
                               client_reference, sent_at, local_status)
                           VALUES (%s, 'registration', %s, 'NOC', %s, 'gc_notify', %s, %s, %s, %s)""",
                        (
                            event["event_id"],
                            event["event_id"].upper(),
                            event["email"],
                            None
                            if queued or event["mode"] == "client_reference_only"
                            else event["reference"],
                            event["event_id"] if event["mode"] == "client_reference_only" else None,
                            event["sent_at"],
                            "QUEUED" if queued else "SENT",
                        ),
                    )
                    if queued:
                        later.append(event)
            if later and rng.random() < 0.5:
                event = later.pop(0)
                with conn.transaction():
                    conn.execute(
                        """UPDATE mailtrace.notification_event
                           SET local_status = 'SENT', provider_reference = %s WHERE event_id = %s""",
                        (event["reference"], event["event_id"]),
                    )
        for event in later:
            with conn.transaction():
                conn.execute(
                    """UPDATE mailtrace.notification_event
                       SET local_status = 'SENT', provider_reference = %s WHERE event_id = %s""",
                    (event["reference"], event["event_id"]),
                )


def _provider_loads(dsn: str, observations: list[ProviderEvent], rng: random.Random) -> None:
    with psycopg.connect(dsn) as conn:
        position = 0
        while position < len(observations):
            size = rng.randint(1, 25)
            load_provider_events(
                conn, observations[position : position + size], chunk_rows=rng.randint(1, 10)
            )
            position += size


def _reconcile_while(dsn: str, producers: list[threading.Thread]) -> int:
    runs = 0
    with psycopg.connect(dsn) as conn:
        while any(thread.is_alive() for thread in producers) or runs == 0:
            reconcile(conn, now=NOW)
            runs += 1
    return runs


def _race_reconcile(dsn: str, count: int, seed: int) -> int:
    rng = random.Random(seed)
    events, observations, expected = _plan(count, rng)
    errors: list[BaseException] = []

    def guarded(target, *args):
        def run():
            try:
                target(*args)
            except BaseException as error:  # noqa: BLE001 - reported by the test below
                errors.append(error)

        return threading.Thread(target=run)

    producers = [
        guarded(_app_writes, dsn, events, random.Random(seed + 1)),
        guarded(_provider_loads, dsn, observations, random.Random(seed + 2)),
    ]
    for thread in producers:
        thread.start()
    runs = _reconcile_while(dsn, producers)
    for thread in producers:
        thread.join(120)
    assert errors == []

    with psycopg.connect(dsn) as conn:
        reconcile(conn, now=NOW)
        found = {
            event_id: (status, reason)
            for event_id, status, reason in conn.execute(
                "SELECT event_id, delivery_status, failure_reason FROM mailtrace.notification_status"
            )
        }
        orphans = conn.execute("SELECT count(*) FROM mailtrace.orphan_notification").fetchone()[0]
        (observed,) = conn.execute("SELECT count(*) FROM mailtrace.provider_event").fetchone()
    assert found == expected  # none lost, none wrong
    assert orphans == 0
    assert observed == len({(o.provider_reference, o.raw_status, o.event_at) for o in observations})
    return runs


def test_reconcile_racing_the_application_and_loads_loses_no_event(warehouse_dsn):
    runs = _race_reconcile(warehouse_dsn, count=300, seed=1)
    assert runs >= 1


# --------------------------------------------------------------------------------------------- soak


@pytest.mark.soak
@pytest.mark.skipif(not SOAK, reason="soak mode: set MAILTRACE_SOAK=1")
def test_soak_extract_races(warehouse_dsn, notify_sim):
    outcomes = _race(warehouse_dsn, notify_sim, iterations=60, per_iteration=100, seed=99)
    assert outcomes["refused"] > 0


@pytest.mark.soak
@pytest.mark.skipif(not SOAK, reason="soak mode: set MAILTRACE_SOAK=1")
@pytest.mark.parametrize("seed_value", [2, 3, 4])
def test_soak_reconcile_races(warehouse_dsn, seed_value):
    assert _race_reconcile(warehouse_dsn, count=3000, seed=seed_value) > 1
