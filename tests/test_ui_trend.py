"""The Delivery page's trend: per provider, reputation rates, custom ranges and deployment-zone days."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from eventlog import log_registration_send
from fastapi.testclient import TestClient

from mailtrace.ui import app as ui_app
from mailtrace.ui.auth import Viewer, get_viewer

VANCOUVER = ZoneInfo("America/Vancouver")


@pytest.fixture
def client():
    ui_app.app.dependency_overrides[get_viewer] = lambda: Viewer(name="examiner", full_addresses=False)
    with TestClient(ui_app.app) as test_client:
        yield test_client
    ui_app.app.dependency_overrides.clear()


@pytest.fixture
def two_feeds(warehouse_conn):
    """2026-03-10 (Vancouver): SES 20 sends, 2 bounces and 1 complaint; Notify 4 sends, all delivered.
    One Notify send at 2026-03-11 02:30 UTC, which is still the 10th in Vancouver."""
    conn = warehouse_conn
    noon = datetime(2026, 3, 10, 12, tzinfo=VANCOUVER)
    with conn.transaction():
        for i in range(20):
            status, reason = "delivered", None
            if i < 2:
                status, reason = "permanent_failure", "invalid_address"
            elif i == 2:
                status, reason = "complaint", None
            log_registration_send(conn, f"S{i}", "ses", noon + timedelta(minutes=i), status, reason)
        for i in range(3):
            log_registration_send(conn, f"N{i}", "gc_notify", noon + timedelta(minutes=i), "delivered")
        log_registration_send(
            conn, "N-late", "gc_notify", datetime(2026, 3, 11, 2, 30, tzinfo=UTC), "delivered"
        )
    return conn


def test_trend_splits_providers_with_bounce_and_complaint_rates(two_feeds, client, monkeypatch):
    monkeypatch.setenv("AIRFLOW_VAR_MAILTRACE_TIMEZONE", "America/Vancouver")
    payload = client.get("/api/trend", params={"since": "2026-03-09", "until": "2026-03-11"}).json()
    assert payload["timezone"] == "America/Vancouver"
    assert [d["day"] for d in payload["days"]] == ["2026-03-09", "2026-03-10", "2026-03-11"]
    assert [d["sent"] for d in payload["days"]] == [0, 24, 0]  # the 02:30 UTC send is the 10th locally
    providers = {p["provider"]: p for p in payload["providers"]}
    ses = providers["ses"]["days"][1]
    assert (ses["sent"], ses["bounced"], ses["complained"]) == (20, 2, 1)
    assert ses["bounce_rate"] == 0.1
    assert ses["complaint_rate"] == 0.05
    assert providers["ses"]["thresholds"] == {"bounce_rate": 0.05, "complaint_rate": 0.001}
    assert providers["gc_notify"]["days"][1]["sent"] == 4
    assert providers["gc_notify"]["days"][1]["bounce_rate"] == 0.0
    assert providers["gc_notify"]["thresholds"] is None


def test_trend_filters_one_provider(two_feeds, client, monkeypatch):
    monkeypatch.setenv("AIRFLOW_VAR_MAILTRACE_TIMEZONE", "America/Vancouver")
    payload = client.get(
        "/api/trend", params={"since": "2026-03-10", "until": "2026-03-10", "provider": "gc_notify"}
    ).json()
    assert [p["provider"] for p in payload["providers"]] == ["gc_notify"]
    assert payload["days"] == [{**payload["providers"][0]["days"][0]}]
    assert payload["days"][0]["sent"] == 4
    assert payload["by_type"][0]["sent"] == 4


def test_trend_days_follow_the_deployment_time_zone(two_feeds, client, monkeypatch):
    monkeypatch.setenv("AIRFLOW_VAR_MAILTRACE_TIMEZONE", "UTC")
    payload = client.get("/api/trend", params={"since": "2026-03-10", "until": "2026-03-11"}).json()
    assert [d["sent"] for d in payload["days"]] == [23, 1]


def test_trend_defaults_to_today_in_the_zone_and_refuses_bad_ranges(warehouse_conn, client, monkeypatch):
    monkeypatch.delenv("AIRFLOW_VAR_MAILTRACE_TIMEZONE", raising=False)
    payload = client.get("/api/trend", params={"days": 7}).json()
    assert payload["timezone"] == "America/Vancouver"
    today = datetime.now(VANCOUVER).date()
    assert payload["until"] == today.isoformat()
    assert payload["since"] == (today - timedelta(days=6)).isoformat()
    assert all(d["sent"] == 0 and d["delivery_rate"] is None for d in payload["days"])

    backwards = client.get("/api/trend", params={"since": "2026-03-10", "until": "2026-03-01"})
    assert backwards.status_code == 422
    assert backwards.json()["detail"] == "The first day is after the last day"
    too_long = client.get("/api/trend", params={"since": "2024-01-01", "until": "2026-01-01"})
    assert too_long.status_code == 422
    assert client.get("/api/trend", params={"provider": "mailgun"}).status_code == 422
    assert client.get("/api/trend", params={"since": "not-a-date"}).status_code == 422


def test_a_bad_time_zone_variable_falls_back_to_the_default(warehouse_conn, client, monkeypatch):
    monkeypatch.setenv("AIRFLOW_VAR_MAILTRACE_TIMEZONE", "Mars/Olympus")
    assert client.get("/api/trend", params={"days": 1}).json()["timezone"] == "America/Vancouver"
    assert date.fromisoformat(client.get("/api/trend", params={"days": 1}).json()["until"])
