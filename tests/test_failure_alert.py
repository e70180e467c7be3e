"""A task that fails for good alerts the data engineers by email (a real SMTP server) and SNS (moto), once."""

import json
import time
import uuid
from types import SimpleNamespace

import pytest

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


@pytest.fixture
def alert_topic(aws, monkeypatch):
    """An SNS topic for alerts, subscribed by an SQS queue the test reads (as a pager or chat hook would)."""
    sns, sqs = aws.client("sns"), aws.client("sqs")
    name = f"mailtrace-alerts-{uuid.uuid4().hex[:8]}"
    topic_arn = sns.create_topic(Name=name)["TopicArn"]
    queue_url = sqs.create_queue(QueueName=name)["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    sns.subscribe(TopicArn=topic_arn, Protocol="sqs", Endpoint=queue_arn)
    monkeypatch.setenv("AIRFLOW_VAR_MAILTRACE_ALERT_SNS_TOPIC_ARN", topic_arn)

    def received(expected: int, deadline_seconds: float = 20.0) -> list[dict]:
        messages, deadline = [], time.monotonic() + deadline_seconds
        while len(messages) < expected and time.monotonic() < deadline:
            answer = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=1)
            for message in answer.get("Messages", []):
                messages.append(json.loads(message["Body"]))
                sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])
        return messages

    return received


def test_when_smtp_is_down_the_alert_still_reaches_sns_masked(alert_topic, monkeypatch, caplog):
    from tests.conftest import free_port

    monkeypatch.setenv("AIRFLOW_VAR_MAILTRACE_ALERT_EMAILS", "data-eng@example.gov")
    down = {"conn_type": "smtp", "host": "127.0.0.1", "port": free_port(), "extra": {"retry_limit": 0}}
    monkeypatch.setenv("AIRFLOW_CONN_SMTP_DEFAULT", json.dumps(down))
    error = RecipientsRefusedLike("550 5.1.1 <examiner.one@registry.example.gov>: Recipient address rejected")

    email_task_failure({**failed_context(error), "ti": _report_ti()})

    (notification,) = alert_topic(1)
    assert notification["Subject"] == "mailtrace: mailtrace_weekly_report.email_report failed"
    assert (
        "The task mailtrace_weekly_report.email_report failed and will not be retried."
        in notification["Message"]
    )
    assert "550 5.1.1 <e***@registry.example.gov>" in notification["Message"]
    assert "examiner.one@" not in notification["Message"]
    assert "alert 'mailtrace: mailtrace_weekly_report.email_report failed' not sent by email" in caplog.text


def test_every_alert_goes_to_both_channels(alert_topic, smtp_server, monkeypatch):
    monkeypatch.setenv("AIRFLOW_VAR_MAILTRACE_ALERT_EMAILS", "data-eng@example.gov")
    email_task_failure(failed_context(RuntimeError("boom")))
    assert len(smtp_server.messages) == 1
    (notification,) = alert_topic(1)
    assert "Error: boom" in notification["Message"]


def test_an_alert_that_reaches_nobody_says_so(monkeypatch):
    from tests.conftest import free_port

    monkeypatch.setenv("AIRFLOW_VAR_MAILTRACE_ALERT_EMAILS", "data-eng@example.gov")
    monkeypatch.delenv("AIRFLOW_VAR_MAILTRACE_ALERT_SNS_TOPIC_ARN", raising=False)
    down = {"conn_type": "smtp", "host": "127.0.0.1", "port": free_port(), "extra": {"retry_limit": 0}}
    monkeypatch.setenv("AIRFLOW_CONN_SMTP_DEFAULT", json.dumps(down))
    with pytest.raises(RuntimeError, match="reached nobody: email: "):
        email_task_failure(failed_context(RuntimeError("boom")))


class RecipientsRefusedLike(RuntimeError):
    """An error quoting a mail server's refusal word for word, as smtplib's do."""


def _report_ti():
    return SimpleNamespace(
        dag_id="mailtrace_weekly_report", task_id="email_report", run_id="scheduled__x", try_number=4
    )
