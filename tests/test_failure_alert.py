"""A task that fails for good emails the data engineers (through a real SMTP server), once."""

from types import SimpleNamespace

from mailtrace.failure_alert import email_task_failure
from mailtrace.monitoring import DeliverabilityAlert


def failed_context(exception):
    ti = SimpleNamespace(
        dag_id="mailtrace_notify_pipeline",
        task_id="extract_notify_list",
        run_id="scheduled__2026-12-01T10:15:00+00:00",
        try_number=4,
        log_url="http://airflow.example.gov/dags/mailtrace_notify_pipeline/runs/x/tasks/extract_notify_list",
    )
    return {"ti": ti, "exception": exception}


def test_failed_task_emails_what_failed_and_where_its_log_is(smtp_server, monkeypatch):
    monkeypatch.setenv("AIRFLOW_VAR_MAILTRACE_ALERT_EMAILS", "data-eng@example.gov, oncall@example.gov")
    email_task_failure(
        failed_context(RuntimeError("GET notifications page: Notify answered 403: Invalid token"))
    )

    (message,) = smtp_server.messages
    assert smtp_server.envelopes[0][1] == ["data-eng@example.gov", "oncall@example.gov"]
    assert message["Subject"] == "mailtrace: mailtrace_notify_pipeline.extract_notify_list failed"
    text = message.get_body(("plain",)).get_content()
    assert "Notify answered 403: Invalid token" in text
    assert "(try 4)" in text
    assert "Log: http://airflow.example.gov/dags/mailtrace_notify_pipeline/" in text


def test_a_huge_error_is_cut_short(smtp_server, monkeypatch):
    monkeypatch.setenv("AIRFLOW_VAR_MAILTRACE_ALERT_EMAILS", "data-eng@example.gov")
    email_task_failure(failed_context(RuntimeError("x" * 50_000)))
    text = smtp_server.messages[0].get_body(("plain",)).get_content()
    assert "x" * 2000 + " …" in text and "x" * 2001 not in text


def test_deliverability_alert_is_not_emailed_twice(smtp_server, monkeypatch):
    """The check emails its own, more specific alert before it fails."""
    monkeypatch.setenv("AIRFLOW_VAR_MAILTRACE_ALERT_EMAILS", "data-eng@example.gov")
    email_task_failure(failed_context(DeliverabilityAlert("delivery rate 60.0% is below the floor")))
    assert smtp_server.messages == []


def test_without_alert_recipients_nothing_is_sent_and_nothing_breaks(smtp_server, monkeypatch):
    monkeypatch.delenv("AIRFLOW_VAR_MAILTRACE_ALERT_EMAILS", raising=False)
    email_task_failure(failed_context(RuntimeError("boom")))
    assert smtp_server.messages == []
