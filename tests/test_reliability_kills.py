"""The Notify pipeline killed (SIGKILL, a real process kill) at any point converges on re-run.

A child process under the venv's python runs extract -> id look-ups -> reconcile against the simulator and
a real warehouse. A hook that exists only in the child's script (it wraps library functions before the
run starts; product code has no kill points) prints a marker and waits when it reaches the point named by
MAILTRACE_TEST_KILL_AT; the test then SIGKILLs the child, re-runs the same steps in-process, and compares
the warehouse with an uninterrupted run over the same provider data: the same provider_event rows (none
lost, none twice), the same verdicts, orphans, look-up evidence and watermark.

The other kills live with their code: SES "between load and SQS delete" in
tests/test_ses_ingest.py (test_crash_between_load_and_delete_converges,
test_process_killed_before_delete_converges) and resend "between send and record" in tests/test_resend.py
(test_kill_between_send_and_record_then_retry_sends_once, test_row_left_claimed_by_a_killed_run_is_taken_over
_by_a_retrigger, test_process_killed_with_sigkill_after_the_post_converges_on_retry).

Soak (MAILTRACE_SOAK=1): many kills in a row on one warehouse, at random points, random row counts and
random moments, then one clean run.
"""

from __future__ import annotations

import os
import queue
import random
import signal
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from mailtrace.notify_extract import WATERMARK_STATE, extract_list, lookup_open_events
from mailtrace.providers.gc_notify import NotifyClient
from mailtrace.reconcile import reconcile

REPO_ROOT = Path(__file__).resolve().parents[1]
NOW = datetime.now(UTC).replace(microsecond=0)
NOTIFICATIONS = 2000
CHUNK_ROWS = 600
LOST = 5  # events the app logged whose id Notify never stored: the look-ups find them missing
STATUSES = (
    "delivered",
    "permanent-failure",
    "temporary-failure",
    "sending",
    "technical-failure",
    "delivered",
)
MARKER = "KILL-POINT-REACHED"
SOAK = os.environ.get("MAILTRACE_SOAK") == "1"

# The child: wraps the functions around each kill point, then runs the pipeline's Notify steps.
CHILD = textwrap.dedent(
    """
    import os, sys, time
    from datetime import datetime

    import psycopg
    from mailtrace import load, notify_extract, reconcile as reconcile_module
    from mailtrace.notify_extract import extract_list, lookup_open_events
    from mailtrace.providers.gc_notify import NotifyClient
    from mailtrace.reconcile import reconcile

    point = os.environ.get("MAILTRACE_TEST_KILL_AT", "")
    after = int(os.environ.get("MAILTRACE_TEST_KILL_AFTER", "0"))

    def reached():
        print("KILL-POINT-REACHED", point, flush=True)
        time.sleep(600)  # the test kills us here
        sys.exit("not killed")

    if point == "mid_copy":  # rows written into the COPY of a chunk, not yet committed
        written = [0]
        write_row = psycopg.Copy.write_row

        def counting_write_row(self, row):
            write_row(self, row)
            written[0] += 1
            if written[0] == after:
                reached()

        psycopg.Copy.write_row = counting_write_row
    elif point in ("extracted_not_loaded", "between_chunks"):  # before chunk number `after` (0-based)
        calls = [0]
        load_chunk = load._load_chunk

        def counting_load_chunk(*args, **kwargs):
            if calls[0] == after:
                reached()
            calls[0] += 1
            return load_chunk(*args, **kwargs)

        load._load_chunk = counting_load_chunk
    elif point == "watermark_not_committed":  # inside the last chunk's transaction, watermark written
        set_state = load.set_state

        def set_state_then_die(conn, name, value):
            set_state(conn, name, value)
            reached()

        load.set_state = set_state_then_die
    elif point == "lookups_not_recorded":  # look-up results loaded, misses not yet recorded
        read_sql = notify_extract.read_sql

        def read_sql_or_die(name):
            if name == "notify_record_lookups.sql":
                reached()
            return read_sql(name)

        notify_extract.read_sql = read_sql_or_die
    elif point == "mid_reconcile":  # verdicts written, cursor written, transaction not committed
        cursor_state = reconcile_module.set_state

        def cursor_then_die(conn, name, value):
            cursor_state(conn, name, value)
            reached()

        reconcile_module.set_state = cursor_then_die

    now = datetime.fromisoformat(os.environ["KILL_TEST_NOW"])
    api_key, base_url = os.environ["KILL_TEST_API_KEY"], os.environ["KILL_TEST_BASE_URL"]
    client = NotifyClient(api_key, base_url, backoff_base=0.01)
    with psycopg.connect(os.environ["KILL_TEST_DSN"]) as conn:
        extract_list(conn, client, now=now, chunk_rows=int(os.environ["KILL_TEST_CHUNK_ROWS"]))
        if point == "loaded_not_reconciled":
            reached()
        lookup_open_events(conn, client, now=now)
        reconcile(conn, now=now)
    print("FINISHED", flush=True)
    """
)

# (kill point, MAILTRACE_TEST_KILL_AFTER): what each kill interrupts.
KILL_POINTS = [
    ("extracted_not_loaded", 0),  # pages read and mapped, nothing loaded yet
    ("mid_copy", CHUNK_ROWS + CHUNK_ROWS // 2),  # half-way through the second chunk's COPY
    ("between_chunks", 2),  # two chunks committed, the rest not
    ("watermark_not_committed", 0),  # last chunk and watermark written, not committed
    ("loaded_not_reconciled", 0),  # between load and reconcile
    ("lookups_not_recorded", 0),  # look-ups done, their evidence not recorded
    ("mid_reconcile", 0),  # reconcile's transaction not committed
]


# ----------------------------------------------------------------------------------------- data


def _notifications() -> list[dict]:
    rng = random.Random(7)
    rows = []
    for n in range(NOTIFICATIONS):
        created = NOW - timedelta(minutes=10, seconds=3 * n)
        status = STATUSES[n % len(STATUSES)]
        rows.append(
            {
                "id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
                "email_address": f"person{n}@example.gov",
                "status": status,
                "created_at": created,
                "sent_at": created + timedelta(seconds=1),
                "completed_at": None if status == "sending" else created + timedelta(seconds=4),
                "reference": f"evt-{n}",
            }
        )
    return rows


NOTIFY_ROWS = _notifications()


def seed_event_log(dsn: str) -> None:
    """The application's log: every notification but each 50th (orphans), and LOST emails Notify lacks."""
    with psycopg.connect(dsn) as conn, conn.cursor() as cur:
        columns = (
            "event_id, subject_type, subject_id, notification_type, recipient_email, provider, "
            "provider_reference, client_reference, sent_at, local_status"
        )
        with cur.copy(f"COPY mailtrace.notification_event ({columns}) FROM STDIN") as copy:
            for n, row in enumerate(NOTIFY_ROWS):
                if n % 50 == 49:
                    continue
                reference = None if n % 7 == 0 else row["id"]  # some only by client reference
                copy.write_row(
                    (
                        row["reference"],
                        "registration",
                        f"STR-{n:06d}",
                        "NOC",
                        row["email_address"],
                        "gc_notify",
                        reference,
                        row["reference"],
                        row["created_at"],
                        "SENT",
                    )
                )
            for n in range(LOST):
                copy.write_row(
                    (
                        f"lost-{n}",
                        "registration",
                        f"STR-9{n:05d}",
                        "NOC",
                        f"lost{n}@example.gov",
                        "gc_notify",
                        str(uuid.uuid4()),
                        f"lost-{n}",
                        NOW - timedelta(hours=3),
                        "SENT",
                    )
                )


def run_pipeline(dsn: str, sim) -> None:
    """The steps of mailtrace_notify_pipeline the kills interrupt, in-process and uninterrupted."""
    client = NotifyClient(sim.api_key, sim.base_url, backoff_base=0.01)
    with psycopg.connect(dsn) as conn:
        extract_list(conn, client, now=NOW, chunk_rows=CHUNK_ROWS)
        lookup_open_events(conn, client, now=NOW)
        reconcile(conn, now=NOW)


def snapshot(dsn: str) -> dict:
    """Everything the pipeline decides, without ids and wall-clock columns."""
    with psycopg.connect(dsn) as conn:
        return {
            "provider_event": conn.execute(
                """SELECT provider_reference, recipient_email, client_reference, raw_status, delivery_status,
                          failure_reason, detail, event_at, source
                   FROM mailtrace.provider_event ORDER BY 1, 4, 8, 9"""
            ).fetchall(),
            "verdicts": conn.execute(
                """SELECT event_id, delivery_status, failure_reason, delivery_detail
                   FROM mailtrace.notification_status ORDER BY event_id"""
            ).fetchall(),
            "orphans": conn.execute(
                "SELECT provider_reference, last_status FROM mailtrace.orphan_notification ORDER BY 1"
            ).fetchall(),
            "lookups": conn.execute(
                "SELECT event_id, found, last_checked_at FROM mailtrace.provider_lookup ORDER BY 1"
            ).fetchall(),
            "watermark": conn.execute(
                "SELECT value FROM mailtrace.pipeline_state WHERE name = %s", (WATERMARK_STATE,)
            ).fetchall(),
        }


def _create_database(admin_dsn: str, template: str) -> tuple[str, str]:
    name = f"mailtrace_kills_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(admin_dsn, autocommit=True) as admin:
        admin.execute(
            sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(sql.Identifier(name), sql.Identifier(template))
        )
    return name, psycopg.conninfo.make_conninfo(admin_dsn, dbname=name)


def _drop_database(admin_dsn: str, name: str) -> None:
    with psycopg.connect(admin_dsn, autocommit=True) as admin:
        admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    from devtools.notify_sim import NotifySimulator

    simulator = NotifySimulator(tmp_path_factory.mktemp("kills") / "notify-sim.sqlite")
    simulator.start()
    simulator.add_notifications(NOTIFY_ROWS)
    yield simulator
    simulator.stop()


@pytest.fixture(scope="module")
def reference(sim, pg_admin_dsn, warehouse_template):
    """The warehouse after one uninterrupted run over the same data."""
    name, dsn = _create_database(pg_admin_dsn, warehouse_template)
    try:
        seed_event_log(dsn)
        run_pipeline(dsn, sim)
        state = snapshot(dsn)
    finally:
        _drop_database(pg_admin_dsn, name)
    # The reference itself is what the contract expects, not just whatever one run produced.
    verdicts = {event_id: status for event_id, status, _, _ in state["verdicts"]}
    assert {verdicts[f"lost-{n}"] for n in range(LOST)} == {"not_at_provider"}
    assert sum(1 for v in verdicts.values() if v == "delivered") == len(
        [n for n, r in enumerate(NOTIFY_ROWS) if r["status"] == "delivered" and n % 50 != 49]
    )
    assert len(state["orphans"]) == NOTIFICATIONS // 50
    assert len({row[0] for row in state["provider_event"]}) == NOTIFICATIONS
    return state


@pytest.fixture
def warehouse(pg_admin_dsn, warehouse_template):
    name, dsn = _create_database(pg_admin_dsn, warehouse_template)
    seed_event_log(dsn)
    yield dsn
    _drop_database(pg_admin_dsn, name)


# ---------------------------------------------------------------------------------------- kills


def start_child(dsn: str, sim, point: str, after: int) -> subprocess.Popen:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO_ROOT / "plugins"), str(REPO_ROOT)]),
        "MAILTRACE_TEST_KILL_AT": point,
        "MAILTRACE_TEST_KILL_AFTER": str(after),
        "KILL_TEST_DSN": dsn,
        "KILL_TEST_API_KEY": sim.api_key,
        "KILL_TEST_BASE_URL": sim.base_url,
        "KILL_TEST_NOW": NOW.isoformat(),
        "KILL_TEST_CHUNK_ROWS": str(CHUNK_ROWS),
    }
    # Its log goes to a file, not a pipe: lines filling an unread pipe would block it before its kill point.
    stderr_log = tempfile.TemporaryFile(mode="w+")
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD],
        env=env,
        stdout=subprocess.PIPE,
        stderr=stderr_log,
        text=True,
    )
    child.stderr_log = stderr_log
    return child


def child_stderr(child: subprocess.Popen) -> str:
    child.stderr_log.seek(0)
    return child.stderr_log.read()[-4000:]


def kill_at_marker(child: subprocess.Popen, point: str, limit: float = 420) -> None:
    """Wait for the child to reach its kill point, then SIGKILL it.

    Its stdout is read by a thread, line by line: `select` on the pipe misses a marker that arrived in the
    same read as an earlier line (it sits in the reader's buffer, the pipe looks empty). The limit is a
    deadline for a loaded CI machine, not a speed assertion.
    """
    lines: queue.Queue[str | None] = queue.Queue()

    def read_lines() -> None:
        for line in child.stdout:
            lines.put(line)
        lines.put(None)  # end of output: the child exited

    threading.Thread(target=read_lines, daemon=True).start()
    deadline = time.monotonic() + limit
    while True:
        try:
            line = lines.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            child.kill()
            raise AssertionError(f"child never reached {point}: {child_stderr(child)}") from None
        if line is None:
            child.wait()
            raise AssertionError(f"child ended (rc {child.returncode}) before {point}: {child_stderr(child)}")
        if line.startswith(MARKER):
            assert line.split()[1] == point
            break
    child.send_signal(signal.SIGKILL)
    assert child.wait(timeout=30) == -signal.SIGKILL
    child.stdout.close()


def wait_for_backends_to_go(dsn: str) -> None:
    """Postgres ends the dead child's session (and its advisory lock) when it sees the socket closed."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        for _ in range(200):
            (others,) = conn.execute(
                """SELECT count(*) FROM pg_stat_activity
                   WHERE datname = current_database() AND pid <> pg_backend_pid()"""
            ).fetchone()
            if others == 0:
                return
            time.sleep(0.05)
    raise AssertionError("the killed child's session is still open")


def interrupted_state(dsn: str, reference: dict) -> dict:
    state = snapshot(dsn)
    assert set(state["provider_event"]) <= set(reference["provider_event"])
    return state


@pytest.mark.timeout(900)
@pytest.mark.parametrize(("point", "after"), KILL_POINTS, ids=[p for p, _ in KILL_POINTS])
def test_killed_run_converges_to_the_uninterrupted_state(warehouse, sim, reference, point, after):
    child = start_child(warehouse, sim, point, after)
    kill_at_marker(child, point)
    wait_for_backends_to_go(warehouse)

    killed = interrupted_state(warehouse, reference)
    loaded = len(killed["provider_event"])
    total = len(reference["provider_event"])
    if point in ("extracted_not_loaded", "mid_copy", "between_chunks", "watermark_not_committed"):
        # Killed inside the extract: only whole committed chunks are there, and no watermark.
        committed_chunks = {"extracted_not_loaded": 0, "mid_copy": 1, "between_chunks": 2}.get(point)
        if committed_chunks is not None:
            assert loaded == committed_chunks * CHUNK_ROWS
        else:
            assert loaded == (NOTIFICATIONS // CHUNK_ROWS) * CHUNK_ROWS  # all but the last chunk
        assert killed["watermark"] == []
        assert all(status is None for _, status, _, _ in killed["verdicts"])
    else:
        assert killed["watermark"] == reference["watermark"]
        assert loaded == NOTIFICATIONS
        assert killed["lookups"] == (reference["lookups"] if point == "mid_reconcile" else [])
        assert all(status is None for _, status, _, _ in killed["verdicts"])  # reconcile never committed
    assert loaded < total or point in ("loaded_not_reconciled", "lookups_not_recorded", "mid_reconcile")

    run_pipeline(warehouse, sim)

    assert snapshot(warehouse) == reference


def test_rerun_after_a_complete_run_changes_nothing(warehouse, sim, reference):
    """The baseline the kills are compared against is itself stable: a second run adds nothing."""
    run_pipeline(warehouse, sim)
    run_pipeline(warehouse, sim)
    assert snapshot(warehouse) == reference


# --------------------------------------------------------------------------------------------- soak


@pytest.mark.soak
@pytest.mark.skipif(not SOAK, reason="soak mode: set MAILTRACE_SOAK=1")
@pytest.mark.parametrize("seed_value", [3, 17])
def test_soak_many_kills_in_a_row_then_one_clean_run(warehouse, sim, reference, seed_value):
    rng = random.Random(seed_value)
    kills = 0
    for _ in range(25):
        if rng.random() < 0.3:
            # A kill at a random moment, wherever the child happens to be.
            child = start_child(warehouse, sim, "", 0)
            time.sleep(rng.uniform(0.2, 3.0))
            child.send_signal(signal.SIGKILL)
            child.communicate(timeout=30)
            kills += child.returncode == -signal.SIGKILL
        else:
            point, _ = rng.choice(KILL_POINTS)
            after = rng.randint(1, NOTIFICATIONS - 1) if point == "mid_copy" else rng.randint(0, 3)
            if point == "between_chunks":
                after = rng.randint(1, NOTIFICATIONS // CHUNK_ROWS)
            child = start_child(warehouse, sim, point, after)
            try:
                kill_at_marker(child, point)
                kills += 1
            except AssertionError:
                # A point the run no longer reaches (e.g. nothing left to load): it finished instead.
                pass
        wait_for_backends_to_go(warehouse)
        interrupted_state(warehouse, reference)
    run_pipeline(warehouse, sim)
    assert kills >= 15
    assert snapshot(warehouse) == reference


def test_child_script_is_the_only_place_with_kill_points():
    """The hook is test-only: no product module knows about MAILTRACE_TEST_KILL_AT."""
    product = [*(REPO_ROOT / "plugins").rglob("*.py"), *(REPO_ROOT / "dags").glob("*.py")]
    assert product
    assert not [path for path in product if "MAILTRACE_TEST_KILL" in path.read_text(encoding="utf-8")]
    assert "MAILTRACE_TEST_KILL_AT" in CHILD
