"""A bad SES message is set aside on its own; a drain that cannot store its batch fails and releases it.

Through the real drain (and the DAG task's own entry point) against moto's SQS/S3 server and a real
Postgres warehouse.
"""

from __future__ import annotations

import json
import logging
import re
import uuid

import pytest
import ses_payloads as payloads
from test_dag_runs import airflow_metadata_db, dags_test  # noqa: F401 - the fixture is used by name
from test_ses_ingest import dead_letters, drain, enqueue, provider_events, queue_depth

from mailtrace import ses_ingest
from mailtrace.intake import INDEXED_FIELD_MAX_BYTES, REPLACEMENT


@pytest.fixture
def queue_url(aws):
    return aws.client("sqs").create_queue(QueueName=f"mailtrace-ses-poison-{uuid.uuid4().hex[:10]}")[
        "QueueUrl"
    ]


ADDRESS = re.compile(r"[A-Za-z0-9._%+'-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}")


def good_batch() -> list[str]:
    return [
        payloads.sns_envelope(payloads.delivery("msg-good-1", ["ann@example.com"])),
        payloads.raw(payloads.bounce("msg-good-2", ["bob@example.com"], subtype="NoEmail")),
    ]


def with_field(record: dict, path: tuple, value) -> str:
    """The raw body of `record` with the field at `path` set to `value` (JSON escapes kept as sent)."""
    target = record
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return json.dumps(record)


def deep_nesting() -> str:
    return '{"eventType": "Delivery", "mail": ' + "[" * 100_000 + "]" * 100_000 + "}"


# (case, body, stored: whether the hostile message's observation is stored made storable, or set aside)
HOSTILE = [
    ("deep-nesting", deep_nesting(), False),
    ("not-json", "\x7f\x01binary-ish garbage", False),
    (
        "nul-in-smtp-response",
        with_field(
            payloads.delivery("msg-bad", ["cy@example.com"]), ("delivery", "smtpResponse"), "250\x00ok"
        ),
        True,
    ),
    (
        "lone-surrogate-in-diagnostic",
        with_field(
            payloads.bounce("msg-bad", ["cy@example.com"]),
            ("bounce", "bouncedRecipients", 0, "diagnosticCode"),
            "550 \ud800 refused",
        ),
        True,
    ),
    (
        "multi-kb-message-id",
        with_field(payloads.delivery("msg-bad", ["cy@example.com"]), ("mail", "messageId"), "m" * 6000),
        True,
    ),
    (
        "multi-kb-bounce-subtype",
        with_field(payloads.bounce("msg-bad", ["cy@example.com"]), ("bounce", "bounceSubType"), "é" * 4000),
        True,
    ),
    (
        "timestamp-in-2099",
        with_field(
            payloads.bounce("msg-bad", ["cy@example.com"]), ("bounce", "timestamp"), "2099-01-01T00:00:00Z"
        ),
        False,
    ),
    (
        "timestamp-without-zone",
        with_field(
            payloads.delivery("msg-bad", ["cy@example.com"]), ("delivery", "timestamp"), "2026-03-02T17:40:14"
        ),
        False,
    ),
]


@pytest.mark.parametrize(
    ("body", "stored"), [case[1:] for case in HOSTILE], ids=[case[0] for case in HOSTILE]
)
def test_one_hostile_message_never_stalls_its_batch(warehouse_conn, aws, s3_bucket, queue_url, body, stored):
    enqueue(aws, queue_url, *good_batch(), body)

    result = ses_ingest.drain_queue(
        warehouse_conn, queue_url=queue_url, bucket=s3_bucket, wait_seconds=0, batch_size=10
    )

    assert result["messages"] == result["deleted"] == 3
    assert queue_depth(aws, queue_url) == 0
    references = {row[0] for row in provider_events(warehouse_conn)}
    assert {"msg-good-1", "msg-good-2"} <= references
    rows = warehouse_conn.execute(
        "SELECT message_id, body, error, raw FROM mailtrace.ses_dead_letter"
    ).fetchall()
    if stored:
        assert result["poison"] == 0 and rows == []
        (hostile,) = references - {"msg-good-1", "msg-good-2"}
        assert len(hostile.encode("utf-8")) <= INDEXED_FIELD_MAX_BYTES
        (raw_status, detail) = warehouse_conn.execute(
            "SELECT raw_status, detail FROM mailtrace.provider_event WHERE provider_reference = %s",
            (hostile,),
        ).fetchone()
        assert len(raw_status.encode("utf-8")) <= INDEXED_FIELD_MAX_BYTES
        if "\x00" in body or "\\u0000" in body or "\\ud800" in body:
            assert REPLACEMENT in detail
    else:
        assert result["poison"] == result["dead_lettered"] == 1
        (message_id, stored_body, error, raw) = rows[0]
        assert bytes(raw) == body.encode("utf-8")  # the exact bytes received, nothing lost
        assert error and "@" not in error
        assert stored_body.replace(REPLACEMENT, "") == body.replace("\x00", "")


def test_a_message_the_warehouse_refuses_is_set_aside_alone(warehouse_conn, aws, s3_bucket, queue_url):
    """Any store-time refusal of one message's values (here a CHECK the test adds) dead-letters only it."""
    warehouse_conn.execute(
        """ALTER TABLE mailtrace.provider_event
           ADD CONSTRAINT refuse_for_test CHECK (provider_reference <> 'msg-refused')"""
    )
    warehouse_conn.commit()
    refused = payloads.raw(payloads.delivery("msg-refused", ["dee@example.com"]))
    enqueue(aws, queue_url, *good_batch(), refused)

    result = drain(warehouse_conn, queue_url, s3_bucket)

    assert result["poison"] == result["dead_lettered"] == 1 and result["deleted"] == 3
    assert {row[0] for row in provider_events(warehouse_conn)} == {"msg-good-1", "msg-good-2"}
    ((message_body, error),) = [(row[1], row[2]) for row in dead_letters(warehouse_conn)]
    assert message_body == refused and "the warehouse refused it" in error and "refuse_for_test" in error
    assert queue_depth(aws, queue_url) == 0


def test_warehouse_failure_fails_the_task_and_its_retry_finds_the_batch(
    warehouse_conn,
    aws,
    s3_bucket,
    queue_url,
    monkeypatch,
):
    """The warehouse drops the drain's session mid-store: the task fails, and the batch is visible at once."""
    monkeypatch.setenv("AIRFLOW_VAR_MAILTRACE_SES_QUEUE_URL", queue_url)
    monkeypatch.setenv("AIRFLOW_VAR_MAILTRACE_REPORT_BUCKET", s3_bucket)
    warehouse_conn.execute(
        """CREATE FUNCTION public.drop_my_session() RETURNS trigger LANGUAGE plpgsql AS $$
           BEGIN PERFORM pg_terminate_backend(pg_backend_pid()); RETURN NULL; END $$;
           CREATE TRIGGER drop_my_session BEFORE INSERT ON mailtrace.provider_event
           FOR EACH STATEMENT EXECUTE FUNCTION public.drop_my_session()"""
    )
    warehouse_conn.commit()
    enqueue(aws, queue_url, *good_batch())

    with pytest.raises(ses_ingest.SesStoreError, match="made 2 visible again"):
        ses_ingest.drain_configured_queue()

    attributes = aws.client("sqs").get_queue_attributes(
        QueueUrl=queue_url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    # Visible now, not after the 300 s visibility timeout: the task's retry (60 s later) meets them.
    assert (
        attributes["ApproximateNumberOfMessages"],
        attributes["ApproximateNumberOfMessagesNotVisible"],
    ) == (
        "2",
        "0",
    )
    assert provider_events(warehouse_conn) == []

    warehouse_conn.execute("DROP TRIGGER drop_my_session ON mailtrace.provider_event")
    warehouse_conn.commit()
    retry = ses_ingest.drain_configured_queue()
    assert retry["inserted"] == 2 and retry["deleted"] == 2
    assert queue_depth(aws, queue_url) == 0


def test_drain_at_debug_logs_no_address(warehouse_conn, aws, s3_bucket, queue_url, caplog, capfd):
    """botocore logs every SQS receive body at DEBUG; the drain keeps those bodies out of the logs."""
    bodies = [
        payloads.sns_envelope(payloads.bounce("msg-log-1", ["private.person@example.com"])),
        payloads.raw(payloads.delivery("msg-log-2", ["another.person@example.com"])),
        "not json, mentions third.person@example.com",
    ]
    enqueue(aws, queue_url, *bodies)
    botocore_level = logging.getLogger("botocore").level

    with caplog.at_level(logging.DEBUG):
        result = drain(warehouse_conn, queue_url, s3_bucket)

    assert result["inserted"] == 2 and result["poison"] == 1
    output = caplog.text + "".join(capfd.readouterr())
    assert ADDRESS.findall(output) == [], ADDRESS.findall(output)[:5]
    assert "p***@example.com" in output
    assert logging.getLogger("botocore").level == botocore_level  # given back after the drain


@pytest.mark.usefixtures("airflow_metadata_db")
def test_dag_run_with_a_poison_message_is_green_and_stores_the_rest(
    warehouse_conn, aws, s3_bucket, queue_url, smtp_server, monkeypatch, tmp_path
):
    """The whole SES DAG under `airflow dags test`: the poison message set aside, the others stored."""
    monkeypatch.setenv("AIRFLOW_VAR_MAILTRACE_SES_QUEUE_URL", queue_url)
    monkeypatch.setenv("AIRFLOW_VAR_MAILTRACE_REPORT_BUCKET", s3_bucket)
    enqueue(aws, queue_url, *good_batch(), deep_nesting())

    returncode, log = dags_test("mailtrace_ses_events", tmp_path)

    assert returncode == 0, log[-3000:]
    assert "up_for_retry" not in log
    assert {row[0] for row in provider_events(warehouse_conn)} == {"msg-good-1", "msg-good-2"}
    (error,) = [row[2] for row in dead_letters(warehouse_conn)]
    assert "RecursionError" in error
    assert "1 of 3 SES messages set aside" in log
    assert queue_depth(aws, queue_url) == 0
