"""The asset the S3 drop DAG is scheduled on, and the trigger that watches the bucket's event queue.

Airflow 3's event-driven scheduling: an `AssetWatcher` runs `DropQueueTrigger` on the triggerer; each
batch of SQS messages it receives becomes an asset event whose `extra` holds the batch (`payload.
message_batch`: message id and body of each), and every asset event schedules `mailtrace_resend_drop`.

Why a trigger of our own and not the amazon provider's `SqsSensorTrigger` (which the common-messaging
provider's `MessageQueueTrigger` also dispatches to; that provider is not installed): it needs
aiobotocore, whose releases pin botocore below the version runtime.lock holds, and it takes its queue
URL at DAG parse time. This one polls with the provider's `SqsHook` (plain boto3) in a worker thread, and
reads the queue from Variable `mailtrace_resend_drop_queue_url` when the triggerer starts it (no Variable
read while parsing). While the Variable is unset it only says so in the triggerer's log and looks again
every few minutes: a deployment without a drop queue gets no runs and no errors.

A received batch is deleted from the queue before the event is handed to the triggerer, as the provider's
trigger does: a triggerer killed in between loses that batch (upload the list again under a new name, or
trigger the dry run by hand). SQS's own redeliveries are harmless: the DAG starts one dry run per object.

This module is imported at parse time by the DAG file; it imports nothing heavy at top level.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from airflow.sdk import Asset, AssetWatcher
from airflow.triggers.base import BaseEventTrigger, TriggerEvent

# Long polling: one receive waits up to 20 s (SQS's maximum) for a message, so an upload is seen within
# seconds; between empty receives the trigger rests WAIT_BETWEEN_POLLS_SECONDS.
LONG_POLL_SECONDS = 20
WAIT_BETWEEN_POLLS_SECONDS = 5
MAX_MESSAGES_PER_RECEIVE = 10  # SQS's maximum
# How often an unconfigured trigger reads the Variable again (a queue set later is picked up by then).
UNCONFIGURED_RECHECK_SECONDS = 300
QUEUE_SETTING = "resend_drop_queue_url"


class DropQueueError(RuntimeError):
    """SQS refused to delete received messages: the trigger fails (and is restarted) rather than have
    the same batch come back after the dry runs it started."""


class DropQueueTrigger(BaseEventTrigger):
    """Fires once per batch of messages on the queue named by Variable `mailtrace_resend_drop_queue_url`."""

    def __init__(self, aws_conn_id: str = "aws_default", wait_time_seconds: int = LONG_POLL_SECONDS) -> None:
        super().__init__()
        self.aws_conn_id = aws_conn_id
        self.wait_time_seconds = wait_time_seconds

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {"aws_conn_id": self.aws_conn_id, "wait_time_seconds": self.wait_time_seconds},
        )

    async def configured_queue(self) -> str | None:
        from mailtrace.settings import setting

        return await asyncio.to_thread(setting, QUEUE_SETTING)  # a Variable read is a blocking call

    def receive(self, queue_url: str) -> list[dict[str, str]]:
        """One long-polling receive; what it got is deleted and returned as message id and body."""
        from airflow.providers.amazon.aws.hooks.sqs import SqsHook

        client = SqsHook(aws_conn_id=self.aws_conn_id).get_conn()
        messages = client.receive_message(
            QueueUrl=queue_url,
            MaxNumberOfMessages=MAX_MESSAGES_PER_RECEIVE,
            WaitTimeSeconds=self.wait_time_seconds,
        ).get("Messages", [])
        if not messages:
            return []
        entries = [{"Id": str(n), "ReceiptHandle": m["ReceiptHandle"]} for n, m in enumerate(messages)]
        failed = client.delete_message_batch(QueueUrl=queue_url, Entries=entries).get("Failed") or []
        if failed:
            raise DropQueueError(f"SQS did not delete {len(failed)} received messages: {failed[:3]}")
        return [{"MessageId": m["MessageId"], "Body": m["Body"]} for m in messages]

    async def run(self) -> AsyncIterator[TriggerEvent]:
        said = False
        while not (queue_url := await self.configured_queue()):
            if not said:
                self.log.info(
                    "no S3 drop queue configured (Airflow Variable mailtrace_resend_drop_queue_url is "
                    "unset): uploaded ID lists start nothing; looking again every %d s",
                    UNCONFIGURED_RECHECK_SECONDS,
                )
                said = True
            await asyncio.sleep(UNCONFIGURED_RECHECK_SECONDS)
        self.log.info("watching S3 drop queue %s", queue_url)
        while not (messages := await asyncio.to_thread(self.receive, queue_url)):
            await asyncio.sleep(WAIT_BETWEEN_POLLS_SECONDS)
        self.log.info("%d messages from the S3 drop queue", len(messages))
        yield TriggerEvent({"message_batch": messages})


RESEND_DROPS = Asset(
    name="mailtrace_resend_drops",
    uri="mailtrace://s3/resend-requests",
    watchers=[AssetWatcher(name="mailtrace_resend_drop_queue", trigger=DropQueueTrigger())],
)
