"""The Delivery page's FastAPI routes against a real warehouse.

Most tests override the app's auth dependency (`get_viewer`) the way FastAPI intends, as a masked
examiner or as a user allowed full addresses; `TestAirflowAuth` drives the real dependency with
tokens from Airflow's simple auth manager instead.
"""

from __future__ import annotations

import os
import subprocess
import sys
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
from eventlog import insert_logged
from fastapi.testclient import TestClient

from devtools.seed import EVENT_COLUMNS as LOG_COLUMNS
from mailtrace.paths import read_sql
from mailtrace.ui import app as ui_app
from mailtrace.ui.auth import Viewer

NOW = datetime.now(UTC).replace(microsecond=0)
ALICE = "alice.smith@example.gov"
EXAMINER = Viewer(name="examiner", full_addresses=False)
ADMIN = Viewer(name="admin", full_addresses=True)


def ago(**kwargs) -> datetime:
    return NOW - timedelta(**kwargs)


EVENT_COLUMNS = (*LOG_COLUMNS, "delivery_status", "failure_reason", "delivery_detail")
EVENTS = [
    # event_id, subject_type, subject_id, type, recipient, provider, provider_ref, client_ref, sent_at,
    # local_status, delivery_status, failure_reason, delivery_detail
    (
        "E1",
        "registration",
        "STR-000001",
        "NOC",
        ALICE,
        "gc_notify",
        "n-1",
        None,
        ago(days=3, hours=2),
        "SENT",
        "delivered",
        None,
        None,
    ),
    (
        "E2",
        "registration",
        "STR-000001",
        "APPROVAL",
        ALICE,
        "gc_notify",
        "n-2",
        None,
        ago(days=2),
        "SENT",
        "permanent_failure",
        "invalid_address",
        f"550 5.1.1 <{ALICE}>: no such user",
    ),
    (
        "E3",
        "registration",
        "STR-000002",
        "NOC",
        "bob@example.com",
        "gc_notify",
        "n-3",
        None,
        ago(days=5),
        "SENT",
        "not_at_provider",
        "unknown",
        "provider had no record of it",
    ),
    (
        "E4",
        "registration",
        "STR-000002",
        "RENEWAL_REMINDER",
        "bob@example.com",
        "ses",
        "m-4",
        None,
        ago(days=3),
        "SENT",
        None,
        None,
        None,
    ),
    (
        "E5",
        "registration",
        "STR-000002",
        "RENEWAL_REMINDER",
        "bob@example.com",
        "ses",
        "m-5",
        None,
        ago(hours=1),
        "SENT",
        "pending",
        None,
        None,
    ),
    # One SES message to two recipients: each recipient's event only carries its own receipts.
    (
        "E6",
        "application",
        "A-77",
        "APPROVAL",
        "Carol@Example.com",
        "ses",
        "m-6",
        None,
        ago(days=1),
        "SENT",
        "delivered",
        None,
        None,
    ),
    (
        "E7",
        "registration",
        "STR-000003",
        "NOC",
        "dave@example.com",
        "gc_notify",
        None,
        "ref-7",
        ago(days=1, hours=3),
        "FAILED",
        "send_failed",
        "provider_error",
        "the application's send call failed",
    ),
    (
        "E8",
        "registration",
        "STR-000003",
        "NOC",
        "dave@example.com",
        "gc_notify",
        None,
        None,
        ago(days=1),
        "QUEUED",
        None,
        None,
        None,
    ),
    (
        "E9",
        "registration",
        "STR-000001",
        "NOC",
        ALICE,
        "gc_notify",
        "n-9",
        None,
        ago(days=40),
        "SENT",
        "delivered",
        None,
        None,
    ),
]
PROVIDER_EVENTS = [
    # provider, provider_ref, recipient, client_ref, raw_status, status, reason, detail, event_at
    (
        "gc_notify",
        "n-1",
        "",
        None,
        "sending",
        "pending",
        None,
        None,
        ago(days=3, hours=2) + timedelta(minutes=1),
    ),
    ("gc_notify", "n-1", "", None, "delivered", "delivered", None, None, ago(days=3, hours=1)),
    (
        "gc_notify",
        "n-2",
        "",
        None,
        "permanent-failure",
        "permanent_failure",
        "invalid_address",
        f"bounce for {ALICE}",
        ago(days=2) + timedelta(minutes=5),
    ),
    ("gc_notify", "n-2", "", None, "sending", "pending", None, None, ago(days=2) + timedelta(minutes=1)),
    ("gc_notify", "n-2", "", None, "weird-new-status", None, None, None, ago(days=2) + timedelta(minutes=7)),
    (
        "ses",
        "m-6",
        "carol@example.com",
        None,
        "Delivery",
        "delivered",
        None,
        None,
        ago(days=1) + timedelta(minutes=2),
    ),
    (
        "ses",
        "m-6",
        "erin@example.com",
        None,
        "Bounce",
        "permanent_failure",
        "invalid_address",
        None,
        ago(days=1) + timedelta(minutes=3),
    ),
    (
        "gc_notify",
        "ignored",
        "",
        "ref-7",
        "technical-failure",
        "technical_failure",
        "provider_error",
        None,
        ago(days=1, hours=3),
    ),
]


@pytest.fixture
def warehouse(warehouse_conn):
    """A warehouse holding two registrations' histories, an application, flags and reports."""
    conn = warehouse_conn
    with conn.transaction():
        for event in EVENTS:
            insert_logged(conn, dict(zip(EVENT_COLUMNS, event, strict=True)))
        conn.cursor().executemany(
            """INSERT INTO mailtrace.provider_event
                   (provider, provider_reference, recipient_email, client_reference, raw_status,
                    delivery_status, failure_reason, detail, event_at, source)
               VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, 'test')""",
            PROVIDER_EVENTS,
        )
        # what reconcile records of these statuses: the client-reference match's candidates, and orphans
        conn.execute(
            read_sql("reconcile/02_unclaimed_and_orphans.sql"),
            {"cursor": 0, "high_water": 2**62, "catch_up": True},
        )
        conn.cursor().executemany(
            "INSERT INTO mailtrace.contact (subject_type, subject_id, email) VALUES (%s, %s, %s)",
            [
                ("registration", "STR-000001", ALICE),
                ("registration", "STR-000002", "bob@example.com"),
                ("application", "A-77", "carol@example.com"),
            ],
        )
        conn.execute(
            """INSERT INTO mailtrace.address_flag
                   (subject_type, subject_id, email, failure_reason, cause, flagged_at, last_failed_event_id)
               VALUES ('registration', 'STR-000001', %s, 'invalid_address', 'bounce', %s, 'E2')""",
            (ALICE, ago(days=2)),
        )
        conn.cursor().executemany(
            """INSERT INTO mailtrace.flag_history
                   (subject_type, subject_id, email, action, failure_reason, cause, event_id, happened_at)
               VALUES ('registration', 'STR-000001', %s, %s, %s, %s, %s, %s)""",
            [
                (ALICE, "cleared", None, "delivery", "E1", ago(days=3, hours=1)),
                (ALICE, "set", "invalid_address", "bounce", "E2", ago(days=2)),
            ],
        )
    return conn


def add_report(conn, *, bucket, key, kind, start, rows=3, label=None) -> int:
    with conn.transaction():
        return conn.execute(
            """INSERT INTO mailtrace.report_manifest
                   (bucket, s3_key, period_kind, period_start, period_end, period_timezone, period_label,
                    row_count, byte_count, checksum_sha256, summary)
               VALUES (%s, %s, %s, %s, %s, 'America/Vancouver', %s, %s, 100, %s, '{}')
               RETURNING id""",
            (bucket, key, kind, start, start + timedelta(days=7), label or key, rows, "0" * 64),
        ).fetchone()[0]


ROUTES = [
    "/",
    "/static/delivery.js",
    "/api/me",
    "/api/trend",
    "/api/flagged",
    "/api/not-at-provider",
    "/api/pending",
    "/api/reports",
    "/api/reports/1/download",
    "/api/timeline?subject_id=STR-000001",
    "/api/resend",
    "/api/resend/outcome?run_id=manual__1",
]


@pytest.mark.parametrize("path", ROUTES)
def test_every_route_refuses_an_unauthenticated_request(warehouse, path, monkeypatch):
    from airflow.api_fastapi import app as airflow_app

    # No auth manager in this process: nothing to redirect the page to, so it is a plain 401 too.
    monkeypatch.setattr(airflow_app._AuthManagerState, "instance", None)
    ui_app.app.dependency_overrides.clear()
    with TestClient(ui_app.app) as client:
        response = client.get(path, follow_redirects=False)
    assert response.status_code == 401
    assert "alice" not in response.text.lower()


def test_trend_agrees_with_the_deliverability_view(warehouse, as_viewer, monkeypatch):
    monkeypatch.setenv("AIRFLOW_VAR_MAILTRACE_TIMEZONE", "UTC")  # the view's days are UTC days
    payload = as_viewer(EXAMINER).get("/api/trend", params={"days": 7}).json()
    days = payload["days"]
    assert len(days) == 7
    assert days[-1]["day"] == NOW.date().isoformat()
    assert [d["day"] for d in days] == sorted(d["day"] for d in days)

    view = warehouse.execute(
        """SELECT day, sum(sent), sum(delivered), sum(pending),
                  sum(permanent_failure + temporary_failure + technical_failure + complaint + not_at_provider)
             FROM mailtrace.deliverability_daily WHERE day >= %s GROUP BY day""",
        (NOW.date() - timedelta(days=6),),
    ).fetchall()
    expected = {
        day.isoformat(): (sent, delivered, pending, failed) for day, sent, delivered, pending, failed in view
    }
    assert expected, "the fixture should put events in the window"
    for d in days:
        sent, delivered, pending, failed = expected.get(d["day"], (0, 0, 0, 0))
        assert (d["sent"], d["delivered"], d["pending"]) == (sent, delivered, pending), d["day"]
        # The chart also counts the application's own failed sends as failures.
        assert d["failed"] - d["failures_by_status"].get("send_failed", 0) == failed, d["day"]
        if sent - pending:
            assert d["delivery_rate"] == round(delivered / (sent - pending), 4)
        else:
            assert d["delivery_rate"] is None

    # E9 (40 days ago) is outside the window; the QUEUED event E8 never counts.
    assert sum(d["sent"] for d in days) == 7
    reasons = {}
    for d in days:
        for reason, n in d["failures_by_reason"].items():
            reasons[reason] = reasons.get(reason, 0) + n
    assert reasons == {"invalid_address": 1, "unknown": 1, "provider_error": 1}
    by_type = {row["notification_type"]: row for row in payload["by_type"]}
    assert by_type["APPROVAL"]["failures_by_reason"] == {"invalid_address": 1}
    assert by_type["APPROVAL"]["delivery_rate"] == 0.5
    assert by_type["RENEWAL_REMINDER"]["pending"] == 2


def test_trend_rejects_an_unreasonable_window(warehouse, as_viewer):
    assert as_viewer(EXAMINER).get("/api/trend", params={"days": 0}).status_code == 422
    assert as_viewer(EXAMINER).get("/api/trend", params={"days": 5000}).status_code == 422


def test_flagged_addresses_are_masked_unless_allowed(warehouse, as_viewer):
    masked = as_viewer(EXAMINER).get("/api/flagged").json()
    assert masked["total"] == 1
    (row,) = masked["rows"]
    assert (row["subject_id"], row["failure_reason"], row["last_failed_event_id"]) == (
        "STR-000001",
        "invalid_address",
        "E2",
    )
    assert row["email"] == "a***@example.gov"

    full = as_viewer(ADMIN).get("/api/flagged").json()
    assert full["rows"][0]["email"] == ALICE


def test_flag_disappears_when_the_contact_changes(warehouse, as_viewer):
    with warehouse.transaction():
        warehouse.execute(
            "UPDATE mailtrace.contact SET email = 'new@example.gov' WHERE subject_id = 'STR-000001'"
        )
    assert as_viewer(EXAMINER).get("/api/flagged").json() == {"total": 0, "rows": []}


def test_not_at_provider_list(warehouse, as_viewer):
    payload = as_viewer(EXAMINER).get("/api/not-at-provider", params={"days": 30}).json()
    assert payload["total"] == 1
    assert [r["event_id"] for r in payload["rows"]] == ["E3"]
    assert payload["rows"][0]["recipient_email"] == "b***@example.com"
    assert as_viewer(EXAMINER).get("/api/not-at-provider", params={"days": 4}).json()["total"] == 0


def test_pending_too_long_uses_the_threshold(warehouse, as_viewer):
    client = as_viewer(EXAMINER)
    day = client.get("/api/pending", params={"hours": 24}).json()
    # E4 (no verdict, 3 days) and the still-queued E8 (1 day); E5 is pending for only an hour.
    assert [r["event_id"] for r in day["rows"]] == ["E4", "E8"]
    assert day["total"] == 2 and day["hours"] == 24
    assert [r["event_id"] for r in client.get("/api/pending", params={"hours": 48}).json()["rows"]] == ["E4"]
    limited = client.get("/api/pending", params={"hours": 24, "limit": 1}).json()
    assert (limited["total"], len(limited["rows"])) == (2, 1)
    assert [r["event_id"] for r in client.get("/api/pending", params={"hours": 1}).json()["rows"]][-1] == "E5"


def test_reports_newest_first_with_links_only_for_full_address_users(warehouse, as_viewer):
    monday = datetime(2026, 3, 2, 8, tzinfo=UTC)
    older = add_report(
        warehouse,
        bucket="b",
        key="failed-notifications/2026-W09.csv",
        kind="weekly",
        start=monday - timedelta(days=7),
    )
    newer = add_report(
        warehouse, bucket="b", key="failed-notifications/2026-W10.csv", kind="weekly", start=monday
    )
    empty = add_report(
        warehouse,
        bucket="b",
        key="failed-notifications/2026-W11.csv",
        kind="weekly",
        start=monday + timedelta(days=7),
        rows=0,
    )
    adhoc = add_report(
        warehouse,
        bucket="b",
        key="failed-notifications/adhoc.csv",
        kind="adhoc",
        start=monday - timedelta(days=30),
    )

    rows = as_viewer(EXAMINER).get("/api/reports").json()["rows"]
    assert [r["id"] for r in rows] == [empty, newer, older, adhoc]
    assert rows[1]["s3_uri"] == "s3://b/failed-notifications/2026-W10.csv"
    assert all(r["download_url"] is None for r in rows)

    weekly = as_viewer(ADMIN).get("/api/reports", params={"kind": "weekly", "limit": 2}).json()["rows"]
    assert [r["id"] for r in weekly] == [empty, newer]
    assert weekly[0]["download_url"] is None  # nothing to download in an empty report
    assert weekly[1]["download_url"] == f"/api/reports/{newer}/download"


def test_report_download_is_a_presigned_link_to_the_object(warehouse, as_viewer, s3_bucket, aws):
    key = "failed-notifications/2026-W10.csv"
    aws.client("s3").put_object(Bucket=s3_bucket, Key=key, Body=b"date_sent,notification_type\n")
    report_id = add_report(
        warehouse, bucket=s3_bucket, key=key, kind="weekly", start=datetime(2026, 3, 2, 8, tzinfo=UTC)
    )

    refused = as_viewer(EXAMINER).get(f"/api/reports/{report_id}/download", follow_redirects=False)
    assert refused.status_code == 403

    response = as_viewer(ADMIN).get(f"/api/reports/{report_id}/download", follow_redirects=False)
    assert response.status_code == 307
    link = response.headers["location"]
    assert "Signature" in link and key in link
    with urllib.request.urlopen(link) as fetched:  # noqa: S310 - a presigned URL to the local moto server
        assert fetched.read() == b"date_sent,notification_type\n"

    missing = as_viewer(ADMIN).get("/api/reports/999999/download", follow_redirects=False)
    assert missing.status_code == 404


def test_timeline_shows_every_notification_its_receipts_and_flags(warehouse, as_viewer):
    t = as_viewer(EXAMINER).get("/api/timeline", params={"subject_id": "STR-000001"}).json()
    assert t["subject_types"] == ["registration"]
    assert [e["event_id"] for e in t["events"]] == ["E2", "E1", "E9"]  # newest first
    e2 = t["events"][0]
    assert [p["raw_status"] for p in e2["provider_events"]] == [
        "sending",
        "permanent-failure",
        "weird-new-status",
    ]
    assert e2["provider_events"][2]["delivery_status"] is None
    # Addresses masked everywhere, including inside provider diagnostics.
    assert e2["recipient_email"] == "a***@example.gov"
    assert e2["delivery_detail"] == "550 5.1.1 <a***@example.gov>: no such user"
    assert e2["provider_events"][1]["detail"] == "bounce for a***@example.gov"
    assert ALICE not in str(t)
    assert [(h["action"], h["cause"]) for h in t["flag_history"]] == [
        ("cleared", "delivery"),
        ("set", "bounce"),
    ]
    (contact,) = t["contacts"]
    assert (contact["email"], contact["flag_reason"]) == ("a***@example.gov", "invalid_address")

    full = as_viewer(ADMIN).get("/api/timeline", params={"subject_id": "STR-000001"}).json()
    assert full["events"][0]["recipient_email"] == ALICE
    assert ALICE in full["events"][0]["provider_events"][1]["detail"]


def test_timeline_matches_receipts_per_recipient_and_by_client_reference(warehouse, as_viewer):
    client = as_viewer(ADMIN)
    app_timeline = client.get("/api/timeline", params={"subject_id": "A-77"}).json()
    assert app_timeline["subject_types"] == ["application"]
    (e6,) = app_timeline["events"]
    assert [p["raw_status"] for p in e6["provider_events"]] == ["Delivery"]  # not erin's bounce

    failed_send = client.get("/api/timeline", params={"subject_id": "STR-000003"}).json()
    by_id = {e["event_id"]: e for e in failed_send["events"]}
    assert [p["raw_status"] for p in by_id["E7"]["provider_events"]] == ["technical-failure"]
    assert by_id["E8"]["provider_events"] == []
    assert failed_send["contacts"] == []


def test_timeline_leaves_out_a_client_reference_match_another_row_claims(warehouse, as_viewer):
    """As reconcile matches: a notification some log row claims by its provider reference is not lent to
    an event logged without one that shares its client reference (E7's receipt once E7-retry claims it)."""
    retry = dict(zip(LOG_COLUMNS, EVENTS[0], strict=False))
    retry.update(
        event_id="E7-retry", subject_id="STR-000099", provider_reference="ignored", client_reference="ref-7"
    )
    insert_logged(warehouse, retry)
    warehouse.commit()
    failed_send = as_viewer(ADMIN).get("/api/timeline", params={"subject_id": "STR-000003"}).json()
    by_id = {e["event_id"]: e for e in failed_send["events"]}
    assert by_id["E7"]["provider_events"] == []


def test_timeline_subject_type_narrows_and_unknown_subject_is_404(warehouse, as_viewer):
    client = as_viewer(EXAMINER)
    assert (
        client.get(
            "/api/timeline", params={"subject_id": "STR-000001", "subject_type": "application"}
        ).status_code
        == 404
    )
    narrowed = client.get(
        "/api/timeline", params={"subject_id": "STR-000001", "subject_type": "registration"}
    )
    assert len(narrowed.json()["events"]) == 3
    assert client.get("/api/timeline", params={"subject_id": "NOPE-1"}).status_code == 404


def test_timeline_pages_back_to_older_notifications(warehouse, as_viewer):
    client = as_viewer(EXAMINER)
    t = client.get("/api/timeline", params={"subject_id": "STR-000001", "limit": 2}).json()
    assert t["events_truncated"] is True
    assert [e["event_id"] for e in t["events"]] == ["E2", "E1"]
    older = client.get("/api/timeline", params={"subject_id": "STR-000001", "limit": 2, "offset": 2}).json()
    assert older["events_truncated"] is False
    assert [e["event_id"] for e in older["events"]] == ["E9"]


def test_page_renders_for_the_user_and_escapes_the_subject(warehouse, as_viewer):
    response = as_viewer(EXAMINER).get("/", params={"subject": '"><script>alert(1)</script>'})
    assert response.status_code == 200
    assert "Signed in as <strong>examiner</strong>" in response.text
    assert "addresses masked" in response.text
    assert "<script>alert(1)</script>" not in response.text
    assert "&lt;script&gt;" in response.text
    assert "script-src 'self'" in response.headers["content-security-policy"]
    assert response.headers["cache-control"] == "no-store"
    script = as_viewer(EXAMINER).get("/static/delivery.js")
    assert script.status_code == 200 and "trend-chart" in script.text


def test_warehouse_connection_is_read_only(warehouse):
    dependency = ui_app.get_warehouse()
    conn = next(dependency)
    try:
        with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
            conn.execute("DELETE FROM mailtrace.notification_event")
    finally:
        dependency.close()
    assert warehouse.execute("SELECT count(*) FROM mailtrace.event_log").fetchone()[0] == len(EVENTS)


def test_plugin_registers_the_app_and_a_nav_entry():
    import mailtrace_ui
    from airflow.api_fastapi.core_api.datamodels.plugins import ExternalViewResponse

    plugin = mailtrace_ui.MailtraceDeliveryPlugin
    (mounted,) = plugin.fastapi_apps
    assert mounted["app"] is ui_app.app and mounted["url_prefix"] == "/mailtrace"
    (view,) = plugin.external_views
    parsed = ExternalViewResponse.model_validate(view)
    assert (parsed.name, parsed.destination, parsed.url_route, parsed.nav_top_level) == (
        "Delivery",
        "nav",
        "delivery",
        True,
    )


@pytest.fixture(scope="module")
def metadata_db():
    """Airflow's metadata DB in the session's AIRFLOW_HOME (token checks consult revoked tokens)."""
    airflow = str(Path(sys.executable).with_name("airflow"))
    subprocess.run([airflow, "db", "migrate"], check=True, capture_output=True, env=dict(os.environ))


class TestAirflowAuth:
    """The real dependency: tokens signed by Airflow's simple auth manager, roles deciding masking."""

    @pytest.fixture
    def auth_manager(self, metadata_db, monkeypatch):
        from airflow.api_fastapi import app as airflow_app

        monkeypatch.setenv("AIRFLOW__API_AUTH__JWT_SECRET", "mailtrace-ui-test-secret-" + "x" * 48)
        monkeypatch.setenv(
            "AIRFLOW__CORE__AUTH_MANAGER",
            "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager",
        )
        monkeypatch.setenv("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS", "ada:admin,otto:op,vera:viewer")
        monkeypatch.setattr(airflow_app._AuthManagerState, "instance", None)
        manager = airflow_app.init_auth_manager()
        yield manager
        airflow_app._AuthManagerState.instance = None

    def token(self, manager, name: str, role: str) -> str:
        from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser

        return manager.generate_jwt(SimpleAuthManagerUser(username=name, role=role))

    def get(self, path: str, token: str | None = None, **kwargs):
        ui_app.app.dependency_overrides.clear()
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        with TestClient(ui_app.app) as client:
            return client.get(path, headers=headers, follow_redirects=False, **kwargs)

    @pytest.mark.parametrize(
        ("role", "full"), [("viewer", False), ("user", False), ("op", True), ("admin", True)]
    )
    def test_roles_decide_masking(self, warehouse, auth_manager, role, full):
        token = self.token(auth_manager, f"someone-{role}", role)
        me = self.get("/api/me", token)
        assert me.status_code == 200
        assert me.json() == {"user": f"someone-{role}", "full_addresses": full}
        flagged = self.get("/api/flagged", token).json()
        assert flagged["rows"][0]["email"] == (ALICE if full else "a***@example.gov")

    def test_session_cookie_is_accepted(self, warehouse, auth_manager):
        ui_app.app.dependency_overrides.clear()
        with TestClient(ui_app.app, cookies={"_token": self.token(auth_manager, "vera", "viewer")}) as client:
            response = client.get("/api/me")
        assert response.json() == {"user": "vera", "full_addresses": False}

    def test_bad_or_missing_token_is_refused(self, warehouse, auth_manager):
        assert self.get("/api/flagged", "not-a-jwt").status_code == 403
        assert self.get("/api/flagged").status_code == 401

    def test_signed_out_page_visit_goes_to_airflow_sign_in(self, warehouse, auth_manager):
        response = self.get("/", params={"subject": "STR-000001"})
        assert response.status_code == 303
        location = response.headers["location"]
        assert location.startswith("/auth/login")
        assert "subject%3DSTR-000001" in location


def test_search_by_address_finds_the_subject_but_stays_masked(warehouse, as_viewer):
    found = as_viewer(EXAMINER).get("/api/search", params={"q": "  Alice.Smith@Example.GOV "})
    assert found.status_code == 200
    rows = found.json()["rows"]
    assert [(r["subject_id"], r["matched_by"], r["email"]) for r in rows] == [
        ("STR-000001", "email address", "a***@example.gov")
    ]
    assert "alice.smith" not in found.text.lower()  # not even the query is echoed
    full = as_viewer(ADMIN).get("/api/search", params={"q": ALICE}).json()["rows"]
    assert full[0]["email"] == ALICE


def test_search_by_subject_id_or_reference_ignores_case(warehouse, as_viewer):
    client = as_viewer(EXAMINER)
    by_id = client.get("/api/search", params={"q": "str-000002"}).json()["rows"]
    assert [(r["subject_id"], r["matched_by"]) for r in by_id] == [("STR-000002", "subject id")]
    by_reference = client.get("/api/search", params={"q": "N-2"}).json()["rows"]
    assert [(r["subject_id"], r["matched_by"]) for r in by_reference] == [
        ("STR-000001", "provider reference")
    ]
    assert client.get("/api/search", params={"q": "nothing-like-this"}).json()["rows"] == []
    assert client.get("/api/search", params={"q": ""}).status_code == 422


def test_lists_page_and_filter(warehouse, as_viewer):
    client = as_viewer(EXAMINER)
    before = client.get("/api/pending").json()["total"]
    noc_before = client.get("/api/pending", params={"notification_type": "NOC"}).json()["total"]
    with warehouse.transaction():
        for n in range(5):
            insert_logged(
                warehouse,
                dict(
                    zip(
                        EVENT_COLUMNS,
                        (f"P{n}", "registration", f"STR-1{n}", "NOC", f"p{n}@example.gov", "gc_notify",
                         f"np-{n}", None, ago(days=2, minutes=n), "SENT", None, None, None),
                        strict=True,
                    )
                ),
            )  # fmt: skip
    first = client.get("/api/pending", params={"limit": 2}).json()
    second = client.get("/api/pending", params={"limit": 2, "offset": 2}).json()
    assert first["total"] == second["total"] == before + 5  # P0-P4: no verdict after a day
    assert len(first["rows"]) == len(second["rows"]) == 2
    assert not {r["event_id"] for r in first["rows"]} & {r["event_id"] for r in second["rows"]}

    noc = client.get("/api/pending", params={"notification_type": "NOC"}).json()
    assert noc["total"] == noc_before + 5
    ses = client.get("/api/pending", params={"provider": "ses", "status": "none"}).json()
    assert "E4" in [r["event_id"] for r in ses["rows"]]
    assert not any(r["event_id"].startswith("P") for r in ses["rows"])
    assert client.get("/api/pending", params={"status": "pending"}).json()["total"] == 0

    tomorrow = (NOW + timedelta(days=2)).date().isoformat()
    assert client.get("/api/flagged", params={"since": tomorrow}).json()["total"] == 0
    assert client.get("/api/flagged", params={"reason": "invalid_address"}).json()["total"] == 1
    assert client.get("/api/flagged", params={"reason": "suppressed"}).json()["total"] == 0
    assert client.get("/api/not-at-provider", params={"notification_type": "APPROVAL"}).json()["total"] == 0
    backwards = client.get("/api/flagged", params={"since": "2026-03-10", "until": "2026-03-01"})
    assert backwards.status_code == 422
    assert backwards.json()["detail"] == "The first day is after the last day"


def test_csv_export_is_masked_and_formula_neutralised(warehouse, as_viewer):
    with warehouse.transaction():
        insert_logged(
            warehouse,
            dict(
                zip(
                    EVENT_COLUMNS,
                    ("=X1", "registration", "+SUM(A1)", "NOC", "dave@example.gov", "ses", "m-x", None,
                     ago(days=1), "SENT", "not_at_provider", "unknown", "=HYPERLINK(\"http://x\")"),
                    strict=True,
                )
            ),
        )  # fmt: skip
    masked = as_viewer(EXAMINER).get("/api/not-at-provider", params={"format": "csv"})
    assert masked.status_code == 200
    assert masked.headers["content-type"].startswith("text/csv")
    assert 'attachment; filename="mailtrace-not-at-provider-' in masked.headers["content-disposition"]
    lines = masked.text.splitlines()
    assert lines[0].startswith("sent_at,subject_type,subject_id,notification_type,recipient_email")
    assert len(lines) == 3  # header, E3 and the new one
    assert "bob@example.com" not in masked.text and "b***@example.com" in masked.text
    assert ",'+SUM(A1),NOC,d***@example.gov," in masked.text
    assert "'=X1" in masked.text and "'=HYPERLINK" in masked.text
    assert masked.headers["x-total-rows"] == "2"

    full = as_viewer(ADMIN).get("/api/not-at-provider", params={"format": "csv", "provider": "gc_notify"})
    assert "bob@example.com" in full.text and "dave@" not in full.text
    flagged = as_viewer(EXAMINER).get("/api/flagged", params={"format": "csv"}).text.splitlines()
    assert flagged[0] == "subject_type,subject_id,email,failure_reason,flagged_at,last_failed_event_id"
    assert flagged[1].startswith("registration,STR-000001,a***@example.gov,invalid_address,")
