"""Least privilege (contract version 2): mailtrace needs only SELECT on the application's two relations.

The application's event log and contacts belong to another role; mailtrace's role may read them and
create (and so own) its own objects, nothing else. The Notify pipeline (extract, look-ups, reconcile,
flags), the weekly report and a resend run end to end under that role: any write to the application's
relations would fail with a privilege error and fail the test, and the relations are compared before and
after.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from psycopg import sql

from devtools.pgcluster import airflow_connection_json

NOW = datetime.now(UTC).replace(microsecond=0)
APP_TABLES = ("notification_event", "contact")


@pytest.fixture
def mailtrace_role_dsn(empty_database_dsn, monkeypatch):
    """The warehouse as the application left it, and a DSN for mailtrace's own role (SELECT-only on it)."""
    role = f"mailtrace_lp_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(empty_database_dsn, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(role)))
        admin.execute("CREATE SCHEMA mailtrace")
        admin.execute(
            """CREATE TABLE mailtrace.notification_event (
                   event_id text PRIMARY KEY, subject_type text NOT NULL, subject_id text NOT NULL,
                   notification_type text NOT NULL, recipient_email text NOT NULL, provider text NOT NULL,
                   provider_reference text, client_reference text, sent_at timestamptz NOT NULL,
                   local_status text NOT NULL)"""
        )
        admin.execute("CREATE INDEX ON mailtrace.notification_event (provider, provider_reference)")
        admin.execute("CREATE INDEX ON mailtrace.notification_event (provider, client_reference)")
        admin.execute("CREATE INDEX ON mailtrace.notification_event (sent_at)")
        admin.execute(
            """CREATE TABLE mailtrace.contact (subject_type text, subject_id text, email text NOT NULL,
                   updated_at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (subject_type, subject_id))"""
        )
        admin.execute("CREATE INDEX ON mailtrace.contact (updated_at)")
        dbname = psycopg.conninfo.conninfo_to_dict(empty_database_dsn)["dbname"]
        # CREATE on the database because CREATE SCHEMA IF NOT EXISTS asks for it even when the schema exists.
        admin.execute(
            sql.SQL("GRANT CREATE ON DATABASE {} TO {}").format(sql.Identifier(dbname), sql.Identifier(role))
        )
        admin.execute(sql.SQL("GRANT USAGE, CREATE ON SCHEMA mailtrace TO {}").format(sql.Identifier(role)))
        for table in APP_TABLES:
            admin.execute(
                sql.SQL("GRANT SELECT ON {} TO {}").format(
                    sql.Identifier("mailtrace", table), sql.Identifier(role)
                )
            )
    dsn = psycopg.conninfo.make_conninfo(empty_database_dsn, user=role)
    monkeypatch.setenv("AIRFLOW_CONN_MAILTRACE_WAREHOUSE", airflow_connection_json(dsn))
    yield dsn
    with psycopg.connect(empty_database_dsn, autocommit=True) as admin:
        admin.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)))
        admin.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))


def _app_snapshot(dsn):
    with psycopg.connect(dsn) as conn:
        return {
            table: conn.execute(
                sql.SQL("SELECT * FROM {} ORDER BY 1, 2").format(sql.Identifier("mailtrace", table))
            ).fetchall()
            for table in APP_TABLES
        }


def test_pipeline_report_and_resend_run_with_select_only_on_the_application(
    empty_database_dsn, mailtrace_role_dsn, notify_sim, s3_bucket, aws, smtp_server, monkeypatch
):
    from mailtrace.pipeline import (
        run_flag_update,
        run_migrations,
        run_notify_list_extract,
        run_notify_lookups,
        run_reconcile,
    )
    from mailtrace.report import adhoc_period, build_report, email_report
    from mailtrace.resend import ResendParams, plan_resend, send_chunk, summarize_run

    # the first run fills an empty delivery the way a large first run does: indexes dropped and built after
    monkeypatch.setattr("mailtrace.reconcile.FIRST_FILL_MIN_ROWS", 1)
    monkeypatch.setenv("AIRFLOW_VAR_MAILTRACE_REPORT_BUCKET", s3_bucket)
    monkeypatch.setenv("AIRFLOW_VAR_MAILTRACE_EXAMINER_EMAILS", json.dumps(["examiner@example.gov"]))
    monkeypatch.setenv("AIRFLOW_VAR_MAILTRACE_NOTIFY_TEMPLATE_ID", str(uuid.uuid4()))
    monkeypatch.setenv("AIRFLOW_VAR_MAILTRACE_ENVIRONMENT", "production")
    delivered_id, bounced_id = str(uuid.uuid4()), str(uuid.uuid4())
    sent_at = NOW - timedelta(minutes=30)
    notify_sim.add_notifications(
        [
            {
                "id": notification_id,
                "email_address": email,
                "status": status,
                "created_at": sent_at,
                "sent_at": sent_at + timedelta(seconds=2),
                "completed_at": sent_at + timedelta(seconds=9),
            }
            for notification_id, email, status in (
                (delivered_id, "ok@example.gov", "delivered"),
                (bounced_id, "gone@example.gov", "permanent-failure"),
            )
        ]
    )
    with psycopg.connect(empty_database_dsn) as app:  # the application, as itself
        app.cursor().executemany(
            """INSERT INTO mailtrace.notification_event VALUES
                   (%s, 'registration', %s, 'NOC', %s, 'gc_notify', %s, NULL, %s, %s)""",
            [
                ("ev-ok", "STR-000001", "ok@example.gov", delivered_id.upper(), sent_at, "SENT"),
                ("ev-gone", "STR-000002", "gone@example.gov", f" {bounced_id} ", sent_at, "SENT"),
                ("ev-failed", "STR-000003", "late@example.gov", None, sent_at, "FAILED"),
            ],
        )
        app.cursor().executemany(
            "INSERT INTO mailtrace.contact (subject_type, subject_id, email) VALUES ('registration', %s, %s)",
            [
                ("STR-000001", "ok@example.gov"),
                ("STR-000002", "gone@example.gov"),
                ("STR-000003", "late@example.gov"),
            ],
        )
    before = _app_snapshot(empty_database_dsn)

    assert "013_contract_v2.sql" in run_migrations()
    run_notify_list_extract()
    run_notify_lookups()
    run_reconcile()
    flags = run_flag_update()

    with psycopg.connect(mailtrace_role_dsn) as conn:
        verdicts = dict(conn.execute("SELECT event_id, delivery_status FROM mailtrace.notification_status"))
        assert verdicts == {"ev-ok": "delivered", "ev-gone": "permanent_failure", "ev-failed": "send_failed"}
        assert flags["set"] == 1
        assert conn.execute("SELECT subject_id FROM mailtrace.flagged_address").fetchall() == [
            ("STR-000002",)
        ]
        for statement in (
            "INSERT INTO mailtrace.notification_event SELECT * FROM mailtrace.notification_event LIMIT 0",
            "UPDATE mailtrace.notification_event SET local_status = local_status WHERE false",
            "DELETE FROM mailtrace.contact WHERE false",
            "CREATE INDEX ON mailtrace.notification_event (subject_id)",
        ):
            with pytest.raises(psycopg.errors.InsufficientPrivilege), conn.transaction():
                conn.execute(statement)

    today = datetime.now(UTC).date()
    period = adhoc_period(today - timedelta(days=2), today + timedelta(days=1), "UTC")
    built = build_report(period, bucket=s3_bucket, run_id="least-privilege")
    assert built["row_count"] == 2
    email_report(bucket=s3_bucket, s3_key=built["s3_key"], run_id="least-privilege")
    assert len(smtp_server.messages) == 1

    params = ResendParams(
        incident_id="INC-LP-1", id_type="registration", dry_run=False, inline_ids="STR-000001 STR-000003"
    )
    chunks = plan_resend(params, run_id="resend-lp")
    for chunk in chunks:
        send_chunk(params, run_id="resend-lp", chunk_index=chunk["chunk_index"])
    assert summarize_run(params, run_id="resend-lp")["sent"] == 2

    # mailtrace's own sends are tracked like the application's: extract + reconcile give them verdicts.
    run_notify_list_extract()
    run_reconcile()
    with psycopg.connect(mailtrace_role_dsn) as conn:
        own = conn.execute(
            """SELECT s.subject_id, s.delivery_status IS NOT NULL
                 FROM mailtrace.notification_status s
                 JOIN mailtrace.own_notification_event o USING (event_id) ORDER BY 1"""
        ).fetchall()
    assert own == [("STR-000001", True), ("STR-000003", True)]

    assert _app_snapshot(empty_database_dsn) == before
