"""The deliverability check fails with a clear message (and emails) when delivery degrades."""

from datetime import UTC, datetime, timedelta

import pytest
from eventlog import set_verdict

from mailtrace.monitoring import DeliverabilityAlert, Thresholds, check_deliverability
from mailtrace.pipeline import run_deliverability_check

NOW = datetime.now(UTC)


def add_events(conn, statuses, *, sent_at=None, local_status="SENT", provider="gc_notify"):
    sent_at = sent_at or NOW - timedelta(hours=5)
    start = conn.execute("SELECT count(*) FROM mailtrace.notification_status").fetchone()[0]
    with conn.cursor() as cur:
        for n, status in enumerate(statuses, start=start):
            cur.execute(
                """INSERT INTO mailtrace.notification_event (event_id, subject_type, subject_id,
                       notification_type, recipient_email, provider, provider_reference, sent_at,
                       local_status)
                   VALUES (%s, 'registration', %s, 'NOC', 'p@example.gov', %s, %s, %s, %s)""",
                (f"e{n}", f"S{n}", provider, f"ref{n}", sent_at, local_status),
            )
            if status is not None:
                set_verdict(cur, f"e{n}", status)
    conn.commit()


def test_healthy_day_has_no_problems(warehouse_conn):
    add_events(warehouse_conn, ["delivered"] * 30 + ["permanent_failure"])
    result = check_deliverability(warehouse_conn, Thresholds(), provider="gc_notify", now=NOW)
    assert result["problems"] == []
    assert result["delivery_rate"] == pytest.approx(30 / 31)


def test_low_delivery_rate_is_reported(warehouse_conn):
    add_events(warehouse_conn, ["delivered"] * 15 + ["permanent_failure"] * 10)
    result = check_deliverability(
        warehouse_conn, Thresholds(delivery_rate_floor=0.9), provider="gc_notify", now=NOW
    )
    assert len(result["problems"]) == 1
    assert "delivery rate 60.0% is below the floor 90.0%" in result["problems"][0]


def test_small_samples_do_not_trip_the_rate(warehouse_conn):
    add_events(warehouse_conn, ["delivered", "permanent_failure"])
    assert (
        check_deliverability(warehouse_conn, Thresholds(min_sample=20), provider="gc_notify", now=NOW)[
            "problems"
        ]
        == []
    )


def test_not_at_provider_over_threshold(warehouse_conn):
    add_events(warehouse_conn, ["delivered"] * 30 + ["not_at_provider"] * 4)
    result = check_deliverability(
        warehouse_conn, Thresholds(not_at_provider_max=3), provider="gc_notify", now=NOW
    )
    assert any("4 emails the app marked SENT are unknown to the provider" in p for p in result["problems"])


def test_no_receipts_for_sends_older_than_grace(warehouse_conn):
    add_events(warehouse_conn, [None] * 5)
    add_events(warehouse_conn, [None] * 3, sent_at=NOW - timedelta(minutes=10))  # inside grace: ignored
    result = check_deliverability(warehouse_conn, Thresholds(), provider="gc_notify", now=NOW)
    assert result["without_receipt"] == 5
    assert any(p.startswith("no receipts: none of the 5 emails") for p in result["problems"])


def test_silence_already_judged_not_at_provider_still_counts_as_no_receipts(warehouse_conn):
    """SES emails silent for a day become not_at_provider; the feed is still silent."""
    add_events(warehouse_conn, ["not_at_provider"] * 3 + [None] * 2, provider="ses")
    result = check_deliverability(warehouse_conn, Thresholds(), provider="ses", now=NOW)
    assert any(p.startswith("no receipts: none of the 5 emails sent through ses") for p in result["problems"])


def test_one_provider_going_silent_is_not_hidden_by_the_other(warehouse_conn):
    add_events(warehouse_conn, ["delivered"] * 30, provider="ses")
    add_events(warehouse_conn, [None] * 4)  # Notify: no status for any of them
    notify = check_deliverability(warehouse_conn, Thresholds(), provider="gc_notify", now=NOW)
    ses = check_deliverability(warehouse_conn, Thresholds(), provider="ses", now=NOW)
    assert notify["problems"] == [p for p in notify["problems"] if "through gc_notify" in p]
    assert len(notify["problems"]) == 1 and notify["problems"][0].startswith("no receipts: none of the 4")
    assert ses["problems"] == [] and ses["sent"] == 30


def test_negative_threshold_is_refused():
    with pytest.raises(ValueError, match="negative"):
        Thresholds(not_at_provider_max=-1)


def test_failing_check_emails_alert_recipients_and_fails(warehouse_conn, smtp_server, monkeypatch):
    monkeypatch.setenv("AIRFLOW_VAR_MAILTRACE_ALERT_EMAILS", '["data-eng@example.gov"]')
    monkeypatch.setenv("AIRFLOW_VAR_MAILTRACE_ALERT_MIN_SAMPLE", "5")
    add_events(warehouse_conn, ["permanent_failure"] * 10)
    with pytest.raises(DeliverabilityAlert, match="below the floor"):
        run_deliverability_check("gc_notify")
    (message,) = smtp_server.messages
    assert message["To"] == "data-eng@example.gov"
    assert message["Subject"] == "mailtrace: email delivery through gc_notify needs attention"
    assert "below the floor" in message.get_body(("plain",)).get_content()
