"""The Delivery page's health panel: DAG runs from Airflow's metadata DB, the rest from a real warehouse."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from eventlog import log_registration_send
from fastapi.testclient import TestClient

from mailtrace.flags import update_flags
from mailtrace.ui import app as ui_app
from mailtrace.ui.auth import Viewer, get_viewer


def ago(**kwargs) -> datetime:
    """A time this long before the call (not before import: a full run collects minutes earlier)."""
    return datetime.now(UTC) - timedelta(**kwargs)


@pytest.fixture(scope="module")
def metadata_db():
    """Airflow's metadata DB in the session's AIRFLOW_HOME, where the api-server would read DAG runs."""
    airflow = str(Path(sys.executable).with_name("airflow"))
    subprocess.run([airflow, "db", "migrate"], check=True, capture_output=True, env=dict(os.environ))


@pytest.fixture
def dag_runs(metadata_db):
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session
    from sqlalchemy import delete, insert

    def forget_mailtrace_runs() -> None:
        with create_session() as session:
            session.execute(delete(DagRun).where(DagRun.dag_id.like("mailtrace%")))

    def add(dag_id: str, state: str, ended: datetime) -> None:
        with create_session() as session:
            session.execute(
                insert(DagRun.__table__).values(
                    dag_id=dag_id,
                    run_id=f"test__{dag_id}__{ended.isoformat()}",
                    run_type="scheduled",
                    state=state,
                    start_date=ended - timedelta(minutes=1),
                    end_date=ended,
                    run_after=ended - timedelta(minutes=1),
                    logical_date=ended - timedelta(minutes=1),
                    clear_number=0,
                    span_status="ended",
                )
            )

    # Earlier tests' `airflow dags test` runs share this metadata DB: start from none.
    forget_mailtrace_runs()
    yield add
    forget_mailtrace_runs()


@pytest.fixture
def client():
    ui_app.app.dependency_overrides[get_viewer] = lambda: Viewer(name="examiner", full_addresses=False)
    with TestClient(ui_app.app) as test_client:
        yield test_client
    ui_app.app.dependency_overrides.clear()


def receipt(conn, provider: str, reference: str, observed_at: datetime) -> None:
    conn.execute(
        """INSERT INTO mailtrace.provider_event
               (provider, provider_reference, raw_status, delivery_status, event_at, observed_at, source)
           VALUES (%s, %s, 'delivered', 'delivered', %s, %s, 'test')""",
        (provider, reference, observed_at, observed_at),
    )


def by(items, key):
    return {item[key]: item for item in items}


def test_empty_deployment_is_red_for_scheduled_dags_that_never_ran(warehouse_conn, dag_runs, client):
    response = client.get("/api/health")
    assert response.status_code == 200
    health = response.json()
    dags = by(health["dags"], "dag_id")
    assert set(dags) == {path.stem for path in (Path(__file__).parents[1] / "dags").glob("mailtrace_*.py")}
    assert dags["mailtrace_notify_pipeline"]["level"] == "red"
    assert dags["mailtrace_notify_pipeline"]["last_success_at"] is None
    assert dags["mailtrace_resend"]["level"] == "idle"  # triggered by people: no level
    assert {r["provider"]: r["level"] for r in health["receipts"]} == {"gc_notify": "idle", "ses": "idle"}
    assert {d["provider"]: d["level"] for d in health["deliverability"]} == {
        "gc_notify": "idle",
        "ses": "idle",
    }
    assert health["set_aside"]["ses_dead_letters"] == {"count": 0, "newest_at": None, "level": "green"}
    assert [o["count"] for o in health["set_aside"]["orphans"]] == [0, 0]
    assert health["warnings"] == []  # the test warehouse has every index CONTRACT.md §1 asks for
    assert health["level"] == "red"


def test_dag_levels_follow_the_age_of_the_last_success(warehouse_conn, dag_runs, client):
    dag_runs("mailtrace_notify_pipeline", "success", ago(minutes=5))
    dag_runs("mailtrace_ses_events", "success", ago(minutes=50))  # 5 intervals of 10 minutes: amber
    dag_runs("mailtrace_weekly_report", "success", ago(days=100))
    dag_runs("mailtrace_resend", "success", ago(days=2))
    dags = by(client.get("/api/health").json()["dags"], "dag_id")
    assert dags["mailtrace_notify_pipeline"]["level"] == "green"
    assert 280 <= dags["mailtrace_notify_pipeline"]["last_success_age_seconds"] <= 400
    assert dags["mailtrace_ses_events"]["level"] == "amber"
    assert dags["mailtrace_weekly_report"]["level"] == "red"
    assert dags["mailtrace_resend"]["newest_run_state"] == "success"
    assert dags["mailtrace_resend"]["level"] == "idle"

    # The S3 drop DAG runs on events, with nobody watching: its failed newest run is red.
    dag_runs("mailtrace_resend_drop", "success", ago(hours=3))
    dag_runs("mailtrace_resend_drop", "failed", ago(minutes=2))
    drop = by(client.get("/api/health").json()["dags"], "dag_id")["mailtrace_resend_drop"]
    assert (drop["newest_run_state"], drop["level"]) == ("failed", "red")

    # A failed run after a recent success is amber, and the newest state says so.
    dag_runs("mailtrace_notify_pipeline", "failed", ago(minutes=1))
    notify = by(client.get("/api/health").json()["dags"], "dag_id")["mailtrace_notify_pipeline"]
    assert notify["newest_run_state"] == "failed"
    assert notify["level"] == "amber"


def test_receipts_are_stale_only_when_something_was_sent_since(warehouse_conn, dag_runs, client):
    conn = warehouse_conn
    watermark = ago(hours=4)
    with conn.transaction():
        log_registration_send(conn, "N1", "gc_notify", ago(hours=5), "delivered")
        receipt(conn, "gc_notify", "ref-N1", ago(hours=4))
        log_registration_send(conn, "N2", "gc_notify", ago(hours=3))  # nothing has come back for 3 hours
        log_registration_send(conn, "S1", "ses", ago(days=3), "delivered")
        receipt(conn, "ses", "ref-S1", ago(days=3) + timedelta(minutes=1))  # quiet, but nothing was sent
        conn.execute(
            "INSERT INTO mailtrace.pipeline_state (name, value, updated_at) VALUES (%s, %s, %s)",
            ("gc_notify_list_watermark", watermark.isoformat(), ago(minutes=10)),
        )
    receipts = by(client.get("/api/health").json()["receipts"], "provider")
    notify = receipts["gc_notify"]
    assert notify["sent_since_newest_receipt"] is True
    assert notify["level"] == "amber"
    assert 4 * 3600 - 60 <= notify["newest_receipt_age_seconds"] <= 4 * 3600 + 120
    assert notify["list_watermark"] == watermark.isoformat()
    assert 540 <= notify["list_watermark_age_seconds"] <= 720
    assert receipts["ses"]["sent_since_newest_receipt"] is False
    assert receipts["ses"]["level"] == "green"

    with conn.transaction():
        log_registration_send(conn, "N3", "gc_notify", ago(hours=2))
        conn.execute("DELETE FROM mailtrace.provider_event WHERE provider = 'gc_notify'")
        conn.execute("UPDATE mailtrace.provider_event SET observed_at = %s", (ago(days=3),))
        log_registration_send(conn, "S2", "ses", ago(hours=7))
    receipts = by(client.get("/api/health").json()["receipts"], "provider")
    assert receipts["gc_notify"]["newest_receipt_at"] is None
    assert receipts["gc_notify"]["level"] == "amber"  # silent since its oldest unanswered send, 5 h
    assert receipts["ses"]["level"] == "red"  # sent 7 h ago, newest receipt 3 days old


def test_set_aside_items_and_orphans_are_counted(warehouse_conn, dag_runs, client):
    conn = warehouse_conn
    with conn.transaction():
        conn.execute(
            "INSERT INTO mailtrace.ses_dead_letter (message_id, body, error, received_at) VALUES "
            "('m-1', '{', 'not JSON', %s), ('m-2', 'x', 'not JSON', %s)",
            (ago(days=4), ago(hours=1)),
        )
        conn.execute(
            """INSERT INTO mailtrace.notify_quarantine
                   (notification_id, source, reason, raw_json, raw_sha256, first_seen_at, last_seen_at)
               VALUES ('n-9', 'list', 'no created_at', '{}', 'abc', %s, %s)""",
            (ago(days=5), ago(days=3)),
        )
        conn.execute(
            """INSERT INTO mailtrace.orphan_notification (provider, provider_reference, last_seen_at)
               VALUES ('ses', 'm-orphan', %s)""",
            (ago(hours=2),),
        )
    health = client.get("/api/health").json()
    set_aside = health["set_aside"]
    assert set_aside["ses_dead_letters"]["count"] == 2
    assert set_aside["ses_dead_letters"]["level"] == "red"  # one arrived within the day
    assert set_aside["notify_quarantine"]["count"] == 1
    assert set_aside["notify_quarantine"]["level"] == "amber"
    orphans = by(set_aside["orphans"], "provider")
    assert (orphans["ses"]["count"], orphans["ses"]["level"]) == (1, "amber")
    assert (orphans["gc_notify"]["count"], orphans["gc_notify"]["level"]) == (0, "green")
    assert health["level"] == "red"


def test_deliverability_check_is_red_when_it_would_alert(warehouse_conn, dag_runs, client):
    conn = warehouse_conn
    with conn.transaction():
        for i in range(30):
            failing = i % 3 == 0
            log_registration_send(
                conn,
                f"D{i}",
                "ses",
                ago(hours=4, minutes=i),
                "permanent_failure" if failing else "delivered",
                "invalid_address" if failing else None,
            )
    checks = by(client.get("/api/health").json()["deliverability"], "provider")
    assert checks["ses"]["level"] == "red"
    assert checks["ses"]["with_verdict"] == 30
    assert any("below the floor" in problem for problem in checks["ses"]["problems"])
    assert checks["gc_notify"]["level"] == "idle"


def test_a_missing_source_index_the_runs_met_is_a_warning_until_it_is_built(warehouse_conn, dag_runs, client):
    """The panel shows what the pipeline's runs recorded (mailtrace.pipeline_warning), not a check of its
    own."""
    conn = warehouse_conn
    indexes = conn.execute(
        """SELECT indexname, indexdef FROM pg_indexes
            WHERE schemaname = 'mailtrace' AND tablename = 'contact' AND indexdef LIKE '%%(updated_at)%%'"""
    ).fetchall()
    conn.commit()
    assert indexes, "the test warehouse should index contact.updated_at"
    with conn.transaction():
        for name, _ in indexes:
            conn.execute(f'DROP INDEX mailtrace."{name}"')
    assert client.get("/api/health").json()["warnings"] == []  # no run has met it yet

    update_flags(conn)  # the flags run checks the contact relation's indexes
    update_flags(conn)
    health = client.get("/api/health").json()
    (warning,) = health["warnings"]
    assert (warning["kind"], warning["subject"]) == ("missing_input_index", "mailtrace.contact (updated_at)")
    assert "look-ups by (updated_at)" in warning["message"]
    assert warning["run_count"] == 2
    assert warning["level"] == "amber"
    assert 0 <= warning["last_seen_age_seconds"] <= 600
    assert warning["first_seen_at"] < warning["last_seen_at"]

    # A newer warning is listed first.
    with conn.transaction():
        conn.execute(
            """INSERT INTO mailtrace.pipeline_warning (kind, subject, message, last_seen_at)
               VALUES ('unmapped_notify_status', 'bounced-ish', 'GC Notify reported the status',
                       now() + interval '1 minute')"""
        )
    assert [w["kind"] for w in client.get("/api/health").json()["warnings"]] == [
        "unmapped_notify_status",
        "missing_input_index",
    ]

    with conn.transaction():
        for _, definition in indexes:
            conn.execute(definition)
    update_flags(conn)
    assert [w["kind"] for w in client.get("/api/health").json()["warnings"]] == ["unmapped_notify_status"]
