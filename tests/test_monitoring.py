"""The deliverability check fails with a clear message (and emails) when delivery degrades."""

from datetime import UTC, datetime, timedelta

import pytest

from mailtrace.monitoring import DeliverabilityAlert, Thresholds, check_deliverability
from mailtrace.pipeline import run_deliverability_check

NOW = datetime.now(UTC)


def add_events(conn, statuses, *, sent_at=None, local_status="SENT"):
    sent_at = sent_at or NOW - timedelta(hours=5)
    start = conn.execute("SELECT count(*) FROM mailtrace.notification_event").fetchone()[0]
    with conn.cursor() as cur:
        for n, status in enumerate(statuses, start=start):
            cur.execute(
                """INSERT INTO mailtrace.notification_event (event_id, subject_type, subject_id,
                       notification_type, recipient_email, provider, provider_reference, sent_at,
                       local_status, delivery_status)
                   VALUES (%s, 'registration', %s, 'NOC', 'p@example.gov', 'gc_notify', %s, %s, %s, %s)""",
                (f"e{n}", f"S{n}", f"ref{n}", sent_at, local_status, status),
            )
    conn.commit()


def test_healthy_day_has_no_problems(warehouse_conn):
    add_events(warehouse_conn, ["delivered"] * 30 + ["permanent_failure"])
    result = check_deliverability(warehouse_conn, Thresholds(), now=NOW)
    assert result["problems"] == []
    assert result["delivery_rate"] == pytest.approx(30 / 31)


def test_low_delivery_rate_is_reported(warehouse_conn):
    add_events(warehouse_conn, ["delivered"] * 15 + ["permanent_failure"] * 10)
    result = check_deliverability(warehouse_conn, Thresholds(delivery_rate_floor=0.9), now=NOW)
    assert len(result["problems"]) == 1
    assert "delivery rate 60.0% is below the floor 90.0%" in result["problems"][0]


def test_small_samples_do_not_trip_the_rate(warehouse_conn):
    add_events(warehouse_conn, ["delivered", "permanent_failure"])
    assert check_deliverability(warehouse_conn, Thresholds(min_sample=20), now=NOW)["problems"] == []


def test_not_at_provider_over_threshold(warehouse_conn):
    add_events(warehouse_conn, ["delivered"] * 30 + ["not_at_provider"] * 4)
    result = check_deliverability(warehouse_conn, Thresholds(not_at_provider_max=3), now=NOW)
    assert any("4 emails the app marked SENT are unknown to the provider" in p for p in result["problems"])


def test_no_receipts_for_sends_older_than_grace(warehouse_conn):
    add_events(warehouse_conn, [None] * 5)
    add_events(warehouse_conn, [None] * 3, sent_at=NOW - timedelta(minutes=10))  # inside grace: ignored
    result = check_deliverability(warehouse_conn, Thresholds(), now=NOW)
    assert result["without_receipt"] == 5
    assert any(p.startswith("no receipts: none of the 5 emails") for p in result["problems"])


def test_negative_threshold_is_refused():
    with pytest.raises(ValueError, match="negative"):
        Thresholds(not_at_provider_max=-1)


def test_failing_check_emails_alert_recipients_and_fails(warehouse_conn, smtp_server, monkeypatch):
    monkeypatch.setenv("AIRFLOW_VAR_MAILTRACE_ALERT_EMAILS", '["data-eng@example.gov"]')
    monkeypatch.setenv("AIRFLOW_VAR_MAILTRACE_ALERT_MIN_SAMPLE", "5")
    add_events(warehouse_conn, ["permanent_failure"] * 10)
    with pytest.raises(DeliverabilityAlert, match="below the floor"):
        run_deliverability_check()
    (message,) = smtp_server.messages
    assert message["To"] == "data-eng@example.gov"
    assert "below the floor" in message.get_body(("plain",)).get_content()
