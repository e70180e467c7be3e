"""The warehouse seeder: real Postgres, a real Notify simulator, read back through the official client."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from devtools import seed as seeder
from devtools.notify_sim.outcomes import outcome_for

NOW = datetime(2026, 11, 20, 18, 0, tzinfo=UTC)
REPO_ROOT = Path(__file__).resolve().parents[1]


def event_rows(conn) -> list[tuple]:
    return conn.execute(
        """SELECT event_id, subject_type, subject_id, notification_type, recipient_email, provider,
                  provider_reference, client_reference, sent_at, local_status
           FROM mailtrace.notification_status ORDER BY event_id"""
    ).fetchall()


def contact_rows(conn) -> list[tuple]:
    return conn.execute(
        "SELECT subject_type, subject_id, email, updated_at FROM mailtrace.contact ORDER BY subject_id"
    ).fetchall()


def provider_notifications(sim, client) -> dict[str, dict]:
    """Every notification the simulator holds, whatever its age."""
    sim.configure(retention_days=100_000)
    return {n["id"]: n for n in client.get_all_notifications_iterator()}


def test_counts_match_what_was_written(warehouse_conn, notify_sim, notify_client):
    counts = seeder.seed_event_log(warehouse_conn, notify_sim, subjects=1000, now=NOW)

    assert counts["contacts"] == 1000 == len(contact_rows(warehouse_conn))
    assert counts["events"] == len(event_rows(warehouse_conn))
    assert counts["events"] >= 1000  # one to three emails per subject
    assert counts["sent"] + counts["failed"] == counts["events"]
    assert counts["failed"] > 0 and counts["lost"] > 0 and counts["orphans"] == 5
    assert counts["provider_rows"] == counts["sent"] - counts["lost"] + counts["orphans"]
    assert len(provider_notifications(notify_sim, notify_client)) == counts["provider_rows"]


def test_events_match_provider_notifications_by_reference(warehouse_conn, notify_sim, notify_client):
    counts = seeder.seed_event_log(warehouse_conn, notify_sim, subjects=1000, now=NOW)
    provider = provider_notifications(notify_sim, notify_client)

    matched = lost = 0
    for event_id, _, subject_id, _, recipient, source, reference, client_ref, sent_at, local in event_rows(
        warehouse_conn
    ):
        assert source == "gc_notify"
        assert client_ref == event_id
        assert subject_id.startswith("STR-")
        if local == "FAILED":
            assert reference is None
            continue
        assert local == "SENT" and reference is not None
        notification = provider.pop(reference, None)
        if notification is None:
            lost += 1
            continue
        matched += 1
        assert notification["reference"] == event_id
        assert notification["email_address"] == recipient
        assert notification["status"] == (outcome_for(recipient).status or "delivered")
        created = datetime.fromisoformat(notification["created_at"].replace("Z", "+00:00"))
        assert sent_at <= created <= sent_at + timedelta(seconds=1)

    assert lost == counts["lost"]
    assert matched == counts["sent"] - counts["lost"]
    # What is left over is the orphans: provider notifications no event explains.
    assert len(provider) == counts["orphans"]
    assert all(n["reference"] is None for n in provider.values())


def test_failed_sends_have_no_provider_reference(warehouse_conn, notify_sim):
    seeder.seed_event_log(warehouse_conn, notify_sim, subjects=1000, now=NOW)
    by_status = dict(
        warehouse_conn.execute(
            """SELECT local_status, count(*) FILTER (WHERE provider_reference IS NOT NULL)
               FROM mailtrace.notification_status GROUP BY local_status"""
        ).fetchall()
    )
    assert set(by_status) == {"SENT", "FAILED"}
    assert by_status["FAILED"] == 0
    assert by_status["SENT"] > 0


def test_log_spans_the_weeks_and_a_mix_of_types_and_outcomes(warehouse_conn, notify_sim, notify_client):
    seeder.seed_event_log(warehouse_conn, notify_sim, subjects=1000, weeks=4, now=NOW)
    oldest, newest, types = warehouse_conn.execute(
        """SELECT min(sent_at), max(sent_at), array_agg(DISTINCT notification_type)
           FROM mailtrace.notification_status"""
    ).fetchone()
    assert NOW - timedelta(weeks=4) <= oldest < NOW - timedelta(weeks=3)
    assert NOW - timedelta(days=1) < newest <= NOW
    assert set(types) == set(seeder.NOTIFICATION_TYPES)

    statuses = {n["status"] for n in provider_notifications(notify_sim, notify_client).values()}
    assert {"delivered", "permanent-failure", "temporary-failure", "technical-failure", "sending"} <= statuses

    # Some subjects changed address after their old one failed: older events went to the old one.
    changed = warehouse_conn.execute(
        """SELECT count(DISTINCT e.subject_id) FROM mailtrace.notification_status e
           JOIN mailtrace.contact c USING (subject_type, subject_id)
           WHERE e.recipient_email <> c.email AND e.sent_at < c.updated_at"""
    ).fetchone()[0]
    assert changed > 0


def test_the_simulator_hides_events_older_than_its_retention(warehouse_conn, notify_sim, notify_client):
    counts = seeder.seed_event_log(warehouse_conn, notify_sim, subjects=300, now=datetime.now(UTC))
    visible = list(notify_client.get_all_notifications_iterator())
    assert 0 < len(visible) < counts["provider_rows"]
    cutoff = datetime.now(UTC) - timedelta(days=7)
    assert all(datetime.fromisoformat(n["created_at"].replace("Z", "+00:00")) >= cutoff for n in visible)


def test_same_seed_and_now_give_the_same_data(warehouse_conn, notify_sim, notify_client):
    def seed_and_read(seed: int):
        warehouse_conn.execute("TRUNCATE mailtrace.notification_event, mailtrace.contact CASCADE")
        notify_sim.reset()
        seeder.seed_event_log(warehouse_conn, notify_sim, subjects=200, seed=seed, now=NOW)
        return (
            event_rows(warehouse_conn),
            contact_rows(warehouse_conn),
            provider_notifications(notify_sim, notify_client),
        )

    first = seed_and_read(7)
    assert seed_and_read(7) == first
    other = seed_and_read(8)
    assert other[0] != first[0] and other[1] != first[1] and other[2] != first[2]


def test_provider_rows_reach_the_simulator_in_chunks(warehouse_conn, notify_sim, monkeypatch):
    chunk_sizes: list[int] = []

    class CountingSink:
        def add_notifications(self, rows):
            chunk_sizes.append(len(rows))
            return notify_sim.add_notifications(rows)

    monkeypatch.setattr(seeder, "SIM_CHUNK_ROWS", 50)
    counts = seeder.seed_event_log(warehouse_conn, CountingSink(), subjects=200, now=NOW)
    assert len(chunk_sizes) > 3
    assert max(chunk_sizes) <= 50
    assert sum(chunk_sizes) == counts["provider_rows"]


@pytest.mark.parametrize("subjects", [0, 1])
def test_tiny_runs(warehouse_conn, notify_sim, subjects):
    counts = seeder.seed_event_log(warehouse_conn, notify_sim, subjects=subjects, now=NOW)
    assert counts["contacts"] == subjects
    assert counts["orphans"] == subjects


def test_cli_seeds_through_the_simulator_admin_endpoint(
    warehouse_dsn, warehouse_conn, notify_sim, notify_client
):
    completed = subprocess.run(
        [sys.executable, "-m", "devtools.seed", "--dsn", warehouse_dsn, "--sim-url", notify_sim.base_url]
        + ["--subjects", "50"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    counts = json.loads(completed.stdout)
    assert counts["contacts"] == 50 == len(contact_rows(warehouse_conn))
    assert len(provider_notifications(notify_sim, notify_client)) == counts["provider_rows"]
