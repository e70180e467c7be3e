"""The S3 drop queue's watch loses no upload: a message leaves SQS only after the triggerer stored its asset
event (Airflow 3.3's shared-stream ack mode, driven by Airflow's own `SharedStreamManager`), and a
triggerer killed before that leaves it for SQS to hand out again (moto's SQS server, a real SIGKILL)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Callable

import pytest
from airflow.triggers.shared_stream import AdvanceItem, AdvanceOutcome, SharedStreamManager
from conftest import REPO_ROOT

from mailtrace import drop_queue
from mailtrace.drop_queue import DropQueueProducer, DropQueueTrigger

TRIGGER_ID = 1
SHORT_VISIBILITY = 2  # seconds a received message stays hidden in these tests (360 in production)


async def watch(
    trigger: DropQueueTrigger, enough: Callable[[list[dict]], bool], *, store: bool = True
) -> list[dict]:
    """The payloads of the asset events the trigger fires until `enough(payloads)`.

    Run as Airflow 3.3's triggerer runs it: subscribed to its shared stream through Airflow's own
    `SharedStreamManager`, each event bound to its message and confirmed stored (what the supervisor
    does once the asset event is in the metadata database) unless `store` is False; then the watch stops
    as a triggerer does, advancing the broker for what was stored.
    """
    manager = SharedStreamManager(ack_timeout=30)
    key = trigger.shared_stream_key()
    events = trigger.filter_shared_stream(manager.subscribe(trigger_id=TRIGGER_ID, trigger=trigger, key=key))
    payloads: list[dict] = []
    try:
        async for event in events:
            seq = manager.bind_pending_event(trigger_id=TRIGGER_ID, key=key)
            assert seq is not None, "the event is not bound to its message: the stream is not in ack mode"
            payloads.append(event.payload)
            if store:
                manager.confirm_persisted([seq])
            if enough(payloads):
                break
    finally:
        await events.aclose()
        await manager.unsubscribe(TRIGGER_ID, key)
    return payloads


def watch_until(trigger: DropQueueTrigger, enough: Callable[[list[dict]], bool], **kwargs) -> list[dict]:
    return asyncio.run(asyncio.wait_for(watch(trigger, enough, **kwargs), 60))


def count(n: int) -> Callable[[list], bool]:
    return lambda payloads: len(payloads) >= n


def bodies(payloads: list[dict]) -> list[str]:
    return [message["Body"] for payload in payloads for message in payload["message_batch"]]


def message_ids(payloads: list[dict]) -> list[str]:
    return [message["MessageId"] for payload in payloads for message in payload["message_batch"]]


def drop_queue_for(aws, bucket: str) -> str:
    """A queue the bucket tells of every upload under resend-requests/, as `make up` configures it."""
    sqs = aws.client("sqs")
    queue_url = sqs.create_queue(QueueName=f"drops-{uuid.uuid4().hex[:10]}")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    aws.client("s3").put_bucket_notification_configuration(
        Bucket=bucket,
        NotificationConfiguration={
            "QueueConfigurations": [
                {
                    "QueueArn": arn,
                    "Events": ["s3:ObjectCreated:*"],
                    "Filter": {"Key": {"FilterRules": [{"Name": "prefix", "Value": "resend-requests/"}]}},
                }
            ]
        },
    )
    return queue_url


def in_queue(aws, queue_url: str) -> dict[str, int]:
    """Messages the queue still holds: waiting, and received but neither deleted nor yet visible again."""
    attributes = aws.client("sqs").get_queue_attributes(
        QueueUrl=queue_url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return {
        "waiting": int(attributes["ApproximateNumberOfMessages"]),
        "hidden": int(attributes["ApproximateNumberOfMessagesNotVisible"]),
    }


@pytest.fixture
def queue(aws, monkeypatch) -> str:
    queue_url = aws.client("sqs").create_queue(QueueName=f"drops-{uuid.uuid4().hex[:10]}")["QueueUrl"]
    monkeypatch.setenv("AIRFLOW_VAR_MAILTRACE_RESEND_DROP_QUEUE_URL", queue_url)
    return queue_url


def send(aws, queue_url: str, *texts: str) -> None:
    for text in texts:
        aws.client("sqs").send_message(QueueUrl=queue_url, MessageBody=text)


def producer(visibility: int = SHORT_VISIBILITY) -> DropQueueProducer:
    return DropQueueProducer(
        aws_conn_id="aws_default", wait_time_seconds=1, visibility_timeout_seconds=visibility
    )


async def receive(source: DropQueueProducer, n: int) -> list[tuple[dict, str]]:
    """The first n (message, receipt handle) pairs of the producer's stream; the stream is then closed."""
    stream = source.open_stream()
    received = []
    async for item in stream:
        received.append(item)
        if len(received) == n:
            break
    await stream.aclose()
    return received


def run(coroutine):
    return asyncio.run(asyncio.wait_for(coroutine, 60))


# ------------------------------------------------------------------------------------- the producer alone


@pytest.mark.parametrize(
    "outcome",
    [AdvanceOutcome(acked=1, failed=0), AdvanceOutcome(acked=0, failed=0, rejected=1)],
    ids=["stored", "rejected"],
)
def test_a_message_leaves_the_queue_only_when_advance_says_it_is_done_with(aws, queue, outcome):
    send(aws, queue, "upload 1")
    source = producer(visibility=60)

    async def scenario():
        ((message, handle),) = await receive(source, 1)
        assert message["Body"] == "upload 1" and set(message) == {"MessageId", "Body"}
        assert in_queue(aws, queue) == {"waiting": 0, "hidden": 1}  # received, hidden, not deleted
        await source.advance([AdvanceItem(handle, outcome)])

    run(scenario())
    assert in_queue(aws, queue) == {"waiting": 0, "hidden": 0}


def test_a_failed_or_unheard_message_stays_and_is_handed_out_again(aws, queue):
    send(aws, queue, "failed", "unheard")
    source = producer()

    async def scenario():
        received = await receive(source, 2)
        await source.advance(
            [
                AdvanceItem(received[0][1], AdvanceOutcome(acked=0, failed=1)),  # its event was not stored
                AdvanceItem(received[1][1], AdvanceOutcome(acked=0, failed=0)),  # no watcher listening
            ]
        )
        return sorted(m["MessageId"] for m, _ in received)

    first = run(scenario())
    again = run(receive(producer(), 2))  # waits out the visibility timeout
    assert sorted(m["MessageId"] for m, _ in again) == first


def test_more_stored_messages_than_one_delete_call_takes_are_all_deleted(aws, queue):
    send(aws, queue, *(f"upload {n}" for n in range(23)))
    source = producer(visibility=60)

    async def scenario():
        received = await receive(source, 23)
        await source.advance(
            [AdvanceItem(handle, AdvanceOutcome(acked=1, failed=0)) for _, handle in received]
        )

    run(scenario())
    assert in_queue(aws, queue) == {"waiting": 0, "hidden": 0}


def test_a_delete_sqs_refuses_is_logged_and_the_others_are_deleted(aws, queue, caplog):
    send(aws, queue, "upload")
    source = producer(visibility=60)

    async def scenario():
        ((_, handle),) = await receive(source, 1)
        clean = AdvanceOutcome(acked=1, failed=0)
        await source.advance([AdvanceItem("not-a-receipt-handle", clean), AdvanceItem(handle, clean)])

    run(scenario())
    assert in_queue(aws, queue) == {"waiting": 0, "hidden": 0}
    assert "ReceiptHandleIsInvalid" in caplog.text and "it comes back" in caplog.text


# ----------------------------------------------------------------------------- as the triggerer runs it


def test_the_watch_deletes_a_message_once_its_event_is_stored(aws, queue):
    send(aws, queue, "not json {", json.dumps({"Records": []}))
    payloads = watch_until(DropQueueTrigger(wait_time_seconds=1), count(2))
    # One asset event per message, each in the shape find_drops reads; what is not an upload goes on too.
    assert [len(payload["message_batch"]) for payload in payloads] == [1, 1]
    assert sorted(bodies(payloads)) == sorted(["not json {", json.dumps({"Records": []})])
    assert in_queue(aws, queue) == {"waiting": 0, "hidden": 0}


def test_a_message_whose_event_was_never_stored_comes_back(aws, queue):
    send(aws, queue, "upload")
    trigger = DropQueueTrigger(wait_time_seconds=1, visibility_timeout_seconds=SHORT_VISIBILITY)
    lost = watch_until(trigger, count(1), store=False)  # the triggerer stopped before storing it
    again = watch_until(trigger, count(1))
    assert message_ids(again) == message_ids(lost)
    assert in_queue(aws, queue) == {"waiting": 0, "hidden": 0}


KILLED_WATCH = textwrap.dedent(
    """
    import asyncio, sys, time
    from mailtrace.drop_queue import DropQueueTrigger
    from test_drop_queue import watch

    def received(payloads):
        print("received", payloads[0]["message_batch"][0]["MessageId"], flush=True)
        time.sleep(600)  # the triggerer is killed here: the event is not stored yet

    trigger = DropQueueTrigger(wait_time_seconds=1, visibility_timeout_seconds=%d)
    asyncio.run(watch(trigger, received, store=False))
    """
)


def test_a_triggerer_killed_after_receiving_loses_nothing(aws, queue):
    send(aws, queue, "upload")
    paths = [str(REPO_ROOT / "plugins"), str(REPO_ROOT / "tests"), os.environ.get("PYTHONPATH", "")]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(paths)}
    child = subprocess.Popen(
        [sys.executable, "-c", KILLED_WATCH % SHORT_VISIBILITY], stdout=subprocess.PIPE, text=True, env=env
    )
    try:
        # The first line saying what the child received (Airflow may log to stdout before it).
        received = next((line.split()[1] for line in child.stdout if line.startswith("received ")), None)
        assert received, "the watch in the child process ended without receiving anything"
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    again = watch_until(DropQueueTrigger(wait_time_seconds=1), count(1))
    assert message_ids(again) == [received]
    assert in_queue(aws, queue) == {"waiting": 0, "hidden": 0}


def test_without_a_drop_queue_the_watch_waits_and_says_why(aws, s3_bucket, monkeypatch, caplog):
    monkeypatch.delenv("AIRFLOW_VAR_MAILTRACE_RESEND_DROP_QUEUE_URL", raising=False)
    monkeypatch.setattr(drop_queue, "UNCONFIGURED_RECHECK_SECONDS", 0.2)
    queue_url = drop_queue_for(aws, s3_bucket)  # S3's test event is waiting in it

    async def configure_later():
        await asyncio.sleep(1)
        monkeypatch.setenv("AIRFLOW_VAR_MAILTRACE_RESEND_DROP_QUEUE_URL", queue_url)

    async def scenario():
        later = asyncio.create_task(configure_later())
        payloads = await watch(DropQueueTrigger(wait_time_seconds=1), count(1))
        await later
        return payloads

    payloads = run(scenario())
    assert "mailtrace_resend_drop_queue_url is unset" in caplog.text
    assert "s3:TestEvent" in bodies(payloads)[0]


def test_the_trigger_shares_one_poll_in_ack_mode_and_never_runs_alone():
    trigger = DropQueueTrigger()
    assert trigger.shared_stream_key() == DropQueueTrigger().shared_stream_key()
    assert trigger.shared_stream_key() != DropQueueTrigger(aws_conn_id="other").shared_stream_key()
    assert isinstance(
        DropQueueTrigger.create_shared_stream_producer(trigger.serialize()[1]), DropQueueProducer
    )

    async def alone():
        async for _ in trigger.run():
            pass

    with pytest.raises(RuntimeError, match="ack-mode shared stream"):
        run(alone())
