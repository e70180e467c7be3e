"""Draining the SES queue against moto's SQS/S3 server and a real Postgres warehouse."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import textwrap
import time
import uuid
from datetime import UTC, datetime, timedelta

import pytest
import ses_payloads as payloads

from mailtrace import ses_ingest
from mailtrace.reconcile import reconcile
from mailtrace.ses_ingest import drain_queue

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture
def queue_url(aws):
    return aws.client("sqs").create_queue(QueueName=f"mailtrace-ses-{uuid.uuid4().hex[:10]}")["QueueUrl"]


def enqueue(aws, queue_url: str, *bodies: str) -> None:
    sqs = aws.client("sqs")
    for body in bodies:
        sqs.send_message(QueueUrl=queue_url, MessageBody=body)


def queue_depth(aws, queue_url: str) -> int:
    """Visible plus in-flight messages: everything not yet deleted."""
    attributes = aws.client("sqs").get_queue_attributes(
        QueueUrl=queue_url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return int(attributes["ApproximateNumberOfMessages"]) + int(
        attributes["ApproximateNumberOfMessagesNotVisible"]
    )


def wait_until_redelivered(aws, queue_url: str, count: int, timeout: float = 60.0) -> None:
    """Poll (no fixed sleep) until `count` messages are visible again: their visibility timeout lapsed."""
    deadline = time.monotonic() + timeout
    while True:
        attributes = aws.client("sqs").get_queue_attributes(
            QueueUrl=queue_url, AttributeNames=["ApproximateNumberOfMessages"]
        )["Attributes"]
        if int(attributes["ApproximateNumberOfMessages"]) == count:
            return
        assert time.monotonic() < deadline, f"{count} messages not visible again after {timeout:.0f} s"
        time.sleep(0.1)


def drain(conn, queue_url, bucket, **kwargs):
    return drain_queue(conn, queue_url=queue_url, bucket=bucket, wait_seconds=0, **kwargs)


def provider_events(conn):
    rows = conn.execute(
        """SELECT provider_reference, recipient_email, raw_status, delivery_status, failure_reason, event_at
           FROM mailtrace.provider_event ORDER BY provider_reference, recipient_email, event_at, raw_status"""
    ).fetchall()
    conn.commit()
    return rows


def dead_letters(conn):
    rows = conn.execute(
        "SELECT message_id, body, error FROM mailtrace.ses_dead_letter ORDER BY message_id"
    ).fetchall()
    conn.commit()
    return rows


def add_notification(conn, event_id: str, message_id: str, email: str) -> None:
    conn.execute(
        """INSERT INTO mailtrace.notification_event
               (event_id, subject_type, subject_id, notification_type, recipient_email, provider,
                provider_reference, sent_at, local_status)
           VALUES (%s, 'tax_return', %s, 'SUBMISSION_ERROR', %s, 'ses', %s, %s, 'SENT')""",
        (event_id, f"TR-{event_id}", email, message_id, datetime(2026, 3, 2, 17, 40, tzinfo=UTC)),
    )
    conn.commit()


def test_drain_loads_archives_and_deletes(warehouse_conn, aws, s3_bucket, queue_url):
    bodies = [
        payloads.sns_envelope(payloads.delivery("msg-1", ["ann@example.com"])),
        payloads.raw(payloads.bounce("msg-2", ["bob@example.com", "cy@example.com"], subtype="NoEmail")),
        payloads.sns_envelope(payloads.complaint("msg-3", ["dee@example.com"], kind="notificationType")),
    ]
    enqueue(aws, queue_url, *bodies)

    result = drain(warehouse_conn, queue_url, s3_bucket)

    assert result["messages"] == 3
    assert result["events"] == result["inserted"] == 4
    assert result["deleted"] == 3
    assert result["poison"] == result["dead_lettered"] == result["delete_failed"] == 0
    assert [(r[0], r[1], r[3], r[4]) for r in provider_events(warehouse_conn)] == [
        ("msg-1", "ann@example.com", "delivered", None),
        ("msg-2", "bob@example.com", "permanent_failure", "invalid_address"),
        ("msg-2", "cy@example.com", "permanent_failure", "invalid_address"),
        ("msg-3", "dee@example.com", "complaint", None),
    ]
    assert queue_depth(aws, queue_url) == 0

    s3 = aws.client("s3")
    keys = [obj["Key"] for obj in s3.list_objects_v2(Bucket=s3_bucket, Prefix="ses-raw/")["Contents"]]
    today = datetime.now(UTC)
    assert len(keys) == result["batches"] == 1
    assert keys[0].startswith(f"ses-raw/{today:%Y/%m/%d}/") and keys[0].endswith(".ndjson")
    obj = s3.get_object(Bucket=s3_bucket, Key=keys[0])
    assert obj["ServerSideEncryption"] == "AES256"
    lines = [json.loads(line) for line in obj["Body"].read().decode("utf-8").splitlines()]
    assert sorted(line["body"] for line in lines) == sorted(bodies)
    assert all(line["sqs_message_id"] and line["first_received_at"] for line in lines)


def test_batches_of_ten_until_empty(warehouse_conn, aws, s3_bucket, queue_url):
    enqueue(
        aws, queue_url, *(payloads.raw(payloads.send(f"msg-{n}", [f"p{n}@example.com"])) for n in range(23))
    )
    result = drain(warehouse_conn, queue_url, s3_bucket)
    assert result["messages"] == result["deleted"] == result["inserted"] == 23
    assert result["batches"] >= 3
    assert queue_depth(aws, queue_url) == 0


def test_max_batches_leaves_the_rest_for_the_next_run(warehouse_conn, aws, s3_bucket, queue_url):
    enqueue(
        aws, queue_url, *(payloads.raw(payloads.send(f"msg-{n}", [f"p{n}@example.com"])) for n in range(5))
    )
    first = drain(warehouse_conn, queue_url, s3_bucket, batch_size=2, max_batches=1)
    assert first["batches"] == 1 and first["deleted"] <= 2
    drain(warehouse_conn, queue_url, s3_bucket)
    assert len(provider_events(warehouse_conn)) == 5
    assert queue_depth(aws, queue_url) == 0


def test_duplicates_add_nothing(warehouse_conn, aws, s3_bucket, queue_url):
    # SNS and SQS are at-least-once: the same notification can arrive as several SQS messages,
    # in the same drain or a later one, and identity notifications can repeat an event record.
    record = payloads.bounce("msg-dup", ["ann@example.com", "bob@example.com"])
    identity_copy = dict(record, notificationType="Bounce")
    del identity_copy["eventType"]
    enqueue(
        aws,
        queue_url,
        payloads.sns_envelope(record),
        payloads.sns_envelope(record),
        payloads.raw(identity_copy),
    )

    first = drain(warehouse_conn, queue_url, s3_bucket)
    assert first["events"] == 6
    assert first["inserted"] == 2
    state = provider_events(warehouse_conn)

    enqueue(aws, queue_url, payloads.sns_envelope(record))
    second = drain(warehouse_conn, queue_url, s3_bucket)
    assert second["inserted"] == 0 and second["deleted"] == 1
    assert provider_events(warehouse_conn) == state
    assert queue_depth(aws, queue_url) == 0


def test_poison_goes_to_dead_letter_and_leaves_the_queue(warehouse_conn, aws, s3_bucket, queue_url):
    good = payloads.sns_envelope(payloads.delivery("msg-good", ["ann@example.com"]))
    not_json = "this is not json"
    no_message_id = json.dumps({"eventType": "Delivery", "mail": {"destination": ["x@example.com"]}})
    enqueue(aws, queue_url, good, not_json, no_message_id)

    result = drain(warehouse_conn, queue_url, s3_bucket)

    assert result["poison"] == result["dead_lettered"] == 2
    assert result["inserted"] == 1
    assert result["deleted"] == 3
    assert queue_depth(aws, queue_url) == 0
    stored = dead_letters(warehouse_conn)
    assert sorted(row[1] for row in stored) == sorted([not_json, no_message_id])
    errors = " | ".join(row[2] for row in stored)
    assert "not JSON" in errors and "mail.messageId" in errors
    # The poison bodies are archived too, so nothing received is lost even outside the warehouse.
    s3 = aws.client("s3")
    (key,) = [obj["Key"] for obj in s3.list_objects_v2(Bucket=s3_bucket, Prefix="ses-raw/")["Contents"]]
    archived = s3.get_object(Bucket=s3_bucket, Key=key)["Body"].read().decode("utf-8")
    assert json.dumps(not_json) in archived


@pytest.mark.parametrize("order", ["in_order", "bounce_first"])
def test_delivery_then_bounce_reconciles_to_permanent_failure(
    warehouse_conn, aws, s3_bucket, queue_url, order
):
    add_notification(warehouse_conn, "ev-1", "msg-db", "Ann@Example.com")
    add_notification(warehouse_conn, "ev-2", "msg-ok", "bob@example.com")
    delivered = payloads.sns_envelope(
        payloads.delivery("msg-db", ["ann@example.com"], at="2026-03-02T17:40:14Z")
    )
    bounced = payloads.sns_envelope(
        payloads.bounce("msg-db", ["ann@example.com"], subtype="General", at="2026-03-02T19:02:00Z")
    )
    other = payloads.raw(payloads.delivery("msg-ok", ["bob@example.com"]))
    first, second = (delivered, bounced) if order == "in_order" else (bounced, delivered)

    enqueue(aws, queue_url, first, other)
    drain(warehouse_conn, queue_url, s3_bucket)
    reconcile(warehouse_conn)
    enqueue(aws, queue_url, second)
    drain(warehouse_conn, queue_url, s3_bucket)
    reconcile(warehouse_conn)

    verdicts = warehouse_conn.execute(
        "SELECT event_id, delivery_status, failure_reason FROM mailtrace.notification_status"
        " ORDER BY event_id"
    ).fetchall()
    assert verdicts == [("ev-1", "permanent_failure", "invalid_address"), ("ev-2", "delivered", None)]


def test_ses_email_without_any_event_long_after_sending_is_not_at_provider(
    warehouse_conn, aws, s3_bucket, queue_url
):
    """SES cannot be asked about one email: a day of silence is the evidence, overturned by a late event."""
    now = datetime(2026, 3, 3, 18, 0, tzinfo=UTC)  # 24 h 20 min after add_notification's sent_at
    add_notification(warehouse_conn, "ev-lost", "msg-lost", "ann@example.com")
    add_notification(warehouse_conn, "ev-sent", "msg-sent", "bob@example.com")
    # SES reported on the message, just not for the address the app logged: that is not silence.
    add_notification(warehouse_conn, "ev-other", "msg-multi", "carl@example.com")
    enqueue(
        aws,
        queue_url,
        payloads.sns_envelope(payloads.send("msg-sent", ["bob@example.com"])),
        payloads.sns_envelope(payloads.delivery("msg-multi", ["dana@example.com"])),
    )
    drain(warehouse_conn, queue_url, s3_bucket)

    reconcile(warehouse_conn, now=now - timedelta(hours=1))  # 23 h: still waiting
    assert verdict_of(warehouse_conn, "ev-lost") == (None, None, None)
    reconcile(warehouse_conn, now=now)
    assert verdict_of(warehouse_conn, "ev-lost") == (
        "not_at_provider",
        "unknown",
        "no SES event for it within 24 hours of sending",
    )
    assert verdict_of(warehouse_conn, "ev-sent")[0] == "pending"  # SES has it: only waiting for receipts
    assert verdict_of(warehouse_conn, "ev-other") == (None, None, None)

    enqueue(aws, queue_url, payloads.sns_envelope(payloads.delivery("msg-lost", ["ann@example.com"])))
    drain(warehouse_conn, queue_url, s3_bucket)
    reconcile(warehouse_conn, now=now)
    assert verdict_of(warehouse_conn, "ev-lost")[:2] == ("delivered", None)


def verdict_of(conn, event_id):
    row = conn.execute(
        """SELECT delivery_status, failure_reason, delivery_detail
             FROM mailtrace.notification_status WHERE event_id = %s""",
        (event_id,),
    ).fetchone()
    conn.commit()
    return row


def _fail_delete(sqs_client, queue_url, messages):
    raise RuntimeError("killed between load and SQS delete")


def test_crash_between_load_and_delete_converges(warehouse_conn, aws, s3_bucket, queue_url, monkeypatch):
    bodies = [
        payloads.sns_envelope(payloads.delivery("msg-a", ["ann@example.com"])),
        payloads.sns_envelope(payloads.bounce("msg-b", ["bob@example.com", "cy@example.com"])),
        "poison, not json",
    ]
    enqueue(aws, queue_url, *bodies)

    with monkeypatch.context() as patch:
        patch.setattr(ses_ingest, "delete_batch", _fail_delete)
        with pytest.raises(RuntimeError, match="killed"):
            drain(warehouse_conn, queue_url, s3_bucket, visibility_timeout=1)
    after_crash = (provider_events(warehouse_conn), dead_letters(warehouse_conn))
    assert len(after_crash[0]) == 3 and len(after_crash[1]) == 1  # committed before the crash
    assert queue_depth(aws, queue_url) == 3  # and nothing deleted

    wait_until_redelivered(aws, queue_url, 3)  # the visibility timeout lapsed: SQS redelivers
    rerun = drain(warehouse_conn, queue_url, s3_bucket)

    assert rerun["messages"] == rerun["deleted"] == 3
    assert rerun["inserted"] == 0 and rerun["dead_lettered"] == 0
    assert (provider_events(warehouse_conn), dead_letters(warehouse_conn)) == after_crash
    assert queue_depth(aws, queue_url) == 0


def test_process_killed_before_delete_converges(warehouse_conn, warehouse_dsn, aws, s3_bucket, queue_url):
    """A real kill: SIGKILL the draining process right before it deletes; the next run converges."""
    enqueue(
        aws,
        queue_url,
        payloads.sns_envelope(payloads.delivery("msg-k1", ["ann@example.com"])),
        payloads.raw(payloads.bounce("msg-k2", ["bob@example.com"])),
    )
    script = textwrap.dedent(
        f"""
        import os, signal, psycopg
        from mailtrace import ses_ingest

        def kill_self(*args):
            os.kill(os.getpid(), signal.SIGKILL)

        ses_ingest.delete_batch = kill_self
        with psycopg.connect({warehouse_dsn!r}) as conn:
            ses_ingest.drain_queue(conn, queue_url={queue_url!r}, bucket={s3_bucket!r},
                                   wait_seconds=0, visibility_timeout=1)
        """
    )
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([os.path.join(REPO_ROOT, "plugins"), REPO_ROOT]))
    killed = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, timeout=120)
    assert killed.returncode == -9, killed.stderr.decode()[-2000:]
    after_kill = provider_events(warehouse_conn)
    assert len(after_kill) == 2
    assert queue_depth(aws, queue_url) == 2

    wait_until_redelivered(aws, queue_url, 2)
    rerun = drain(warehouse_conn, queue_url, s3_bucket)
    assert rerun["inserted"] == 0 and rerun["deleted"] == 2
    assert provider_events(warehouse_conn) == after_kill
    assert queue_depth(aws, queue_url) == 0


def test_logs_mask_addresses(warehouse_conn, aws, s3_bucket, queue_url, caplog):
    enqueue(aws, queue_url, payloads.raw(payloads.bounce("msg-log", ["private.person@example.com"])))
    with caplog.at_level(logging.DEBUG, logger="mailtrace"):
        drain(warehouse_conn, queue_url, s3_bucket)
    assert "p***@example.com" in caplog.text
    assert "private.person" not in caplog.text


def test_refuses_a_connection_inside_a_transaction(warehouse_conn, aws, s3_bucket, queue_url):
    warehouse_conn.execute("SELECT 1")
    with pytest.raises(RuntimeError, match="no open transaction"):
        drain(warehouse_conn, queue_url, s3_bucket)
    warehouse_conn.rollback()


@pytest.mark.parametrize(("batch_size", "max_batches"), [(0, 1), (11, 1), (10, 0)])
def test_rejects_out_of_range_limits(warehouse_conn, aws, s3_bucket, queue_url, batch_size, max_batches):
    with pytest.raises(ValueError):
        drain(warehouse_conn, queue_url, s3_bucket, batch_size=batch_size, max_batches=max_batches)


def test_configured_drain_reads_variables(warehouse_conn, aws, s3_bucket, queue_url, monkeypatch):
    monkeypatch.setenv("AIRFLOW_VAR_MAILTRACE_SES_QUEUE_URL", queue_url)
    monkeypatch.setenv("AIRFLOW_VAR_MAILTRACE_REPORT_BUCKET", s3_bucket)
    enqueue(aws, queue_url, payloads.sns_envelope(payloads.delivery("msg-v", ["ann@example.com"])))
    result = ses_ingest.drain_configured_queue()
    assert result["inserted"] == 1 and result["deleted"] == 1
    assert len(provider_events(warehouse_conn)) == 1


def test_dag_wiring():
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=os.path.join(REPO_ROOT, "dags", "mailtrace_ses_events.py"))
    assert bag.import_errors == {}
    dag = bag.dags["mailtrace_ses_events"]
    assert dag.timetable.delta == timedelta(minutes=10)
    assert dag.max_active_runs == 1 and dag.catchup is False
    assert dag.tags and dag.default_args["owner"] and dag.default_args["retries"]
    assert dag.get_task("reconcile_verdicts").upstream_task_ids == {"drain_ses_queue"}


def test_archive_replays_into_an_empty_warehouse(warehouse_conn, aws, s3_bucket, queue_url):
    enqueue(
        aws,
        queue_url,
        payloads.sns_envelope(payloads.delivery("msg-r1", ["ann@example.com"])),
        payloads.raw(payloads.bounce("msg-r2", ["bob@example.com", "cy@example.com"])),
        "poison",
    )
    drain(warehouse_conn, queue_url, s3_bucket)
    original = provider_events(warehouse_conn)
    warehouse_conn.execute("DELETE FROM mailtrace.provider_event")
    warehouse_conn.commit()

    replayed = ses_ingest.replay_archive(warehouse_conn, bucket=s3_bucket)

    assert replayed == {"objects": 1, "messages": 3, "events": 3, "inserted": 3, "unparseable": 1}
    assert provider_events(warehouse_conn) == original
    assert ses_ingest.replay_archive(warehouse_conn, bucket=s3_bucket)["inserted"] == 0
