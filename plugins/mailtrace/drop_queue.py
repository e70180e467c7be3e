"""The asset the S3 drop DAG is scheduled on, and the trigger that watches the bucket's event queue.

Airflow 3's event-driven scheduling: an `AssetWatcher` runs `DropQueueTrigger` on the triggerer; each SQS
message it receives becomes an asset event whose `extra` holds it (`payload.message_batch`: the message
id and body), and every asset event schedules `mailtrace_resend_drop`.

No upload is lost, even when the triggerer is killed: the trigger runs as an Airflow 3.3 shared stream in
**ack mode**. `DropQueueProducer` receives messages without deleting them (each stays invisible to other
receivers for `VISIBILITY_TIMEOUT_SECONDS`) and hands each to the triggerer with its receipt handle. The
triggerer stores the asset event in the metadata database, and only then calls `advance`, which deletes
the message. A triggerer killed anywhere in between never reaches `advance`: SQS hands the message out
again once its visibility timeout has passed. A message the triggerer gave up on (its event was not
stored within `[triggerer] shared_stream_ack_timeout`) or that no watcher was listening for is left alone
for the same redelivery. A message handed out twice is harmless: the DAG starts one dry run per object.

Every message goes on as an event, JSON or not: what is not an upload event is set aside with its reason
in `find_drops`'s task log (`mailtrace.resend.drop`), where people look, by the code that decides what a
drop is; rejecting it here would hide it in the triggerer's log and judge messages in two places.

Why a trigger of our own and not the amazon provider's `SqsSensorTrigger` (which the common-messaging
provider's `MessageQueueTrigger` also dispatches to; that provider is not installed): it needs
aiobotocore, whose releases pin botocore below the version runtime.lock holds, it takes its queue URL at
DAG parse time, and it deletes what it receives before the triggerer has stored anything. This one calls
the provider's `SqsHook` (plain boto3) in worker threads and reads the queue from Variable
`mailtrace_resend_drop_queue_url` when the triggerer starts the watch (no Variable read while parsing).
While the Variable is unset it only says so in the triggerer's log and looks again every few minutes: a
deployment without a drop queue gets no runs and no errors.

This module is imported at parse time by the DAG file; it imports nothing heavy at top level.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Hashable, Sequence
from typing import Any

from airflow.sdk import Asset, AssetWatcher
from airflow.triggers.base import BaseEventTrigger, TriggerEvent
from airflow.triggers.shared_stream import AdvanceItem, AdvanceOutcome, SharedStreamProducer

from mailtrace.privacy import mask_text

log = logging.getLogger(__name__)

# Long polling: one receive waits up to 20 s (SQS's maximum) for a message, so an upload is seen within
# seconds and an idle queue costs three calls a minute.
LONG_POLL_SECONDS = 20
MAX_MESSAGES_PER_CALL = 10  # SQS's maximum, for a receive and for a delete batch
# How long a received message stays invisible to other receivers while its asset event is being stored.
# Longer than Airflow's default `[triggerer] shared_stream_ack_timeout` (300 s: the longest the triggerer
# waits for an event to be stored before it gives the message up) plus a minute for the delete, so a
# message is not handed out again while its first event may still be stored (that would be harmless, a
# second asset event whose dry run is skipped, but noise). The price: after a killed triggerer, its
# messages come back six minutes later. Raise it with the ack timeout.
VISIBILITY_TIMEOUT_SECONDS = 360
# How often an unconfigured watch reads the Variable again (a queue set later is picked up by then).
UNCONFIGURED_RECHECK_SECONDS = 300
QUEUE_SETTING = "resend_drop_queue_url"


def settles(outcome: AdvanceOutcome) -> bool:
    """Whether a message is done with: every watcher stored its event, or refused it for good.

    Not when a watcher failed it (its event may not be stored) nor when no watcher was listening (nobody
    stored anything): those stay in the queue and SQS hands them out again.
    """
    return outcome.is_clean or (outcome.rejected > 0 and outcome.failed == 0)


class DropQueueProducer(SharedStreamProducer):
    """The SQS side of the watch: receives without deleting, deletes what the triggerer has stored."""

    def __init__(
        self,
        *,
        aws_conn_id: str,
        wait_time_seconds: int = LONG_POLL_SECONDS,
        visibility_timeout_seconds: int = VISIBILITY_TIMEOUT_SECONDS,
    ) -> None:
        self.aws_conn_id = aws_conn_id
        self.wait_time_seconds = wait_time_seconds
        self.visibility_timeout_seconds = visibility_timeout_seconds
        self._client: Any = None
        self._queue_url = ""

    async def configured_queue(self) -> str:
        """The queue's URL; while the Variable is unset, says so once and waits for it."""
        from mailtrace.settings import setting

        said = False
        while not (queue_url := await asyncio.to_thread(setting, QUEUE_SETTING)):  # a blocking read
            if not said:
                log.info(
                    "no S3 drop queue configured (Airflow Variable mailtrace_resend_drop_queue_url is "
                    "unset): uploaded ID lists start nothing; looking again every %d s",
                    UNCONFIGURED_RECHECK_SECONDS,
                )
                said = True
            await asyncio.sleep(UNCONFIGURED_RECHECK_SECONDS)
        return queue_url

    def _connect(self) -> Any:
        from airflow.providers.amazon.aws.hooks.sqs import SqsHook

        return SqsHook(aws_conn_id=self.aws_conn_id).get_conn()

    def _receive(self) -> list[dict[str, Any]]:
        return self._client.receive_message(
            QueueUrl=self._queue_url,
            MaxNumberOfMessages=MAX_MESSAGES_PER_CALL,
            WaitTimeSeconds=self.wait_time_seconds,
            VisibilityTimeout=self.visibility_timeout_seconds,
        ).get("Messages", [])

    async def open_stream(self) -> AsyncIterator[tuple[dict[str, str], str]]:
        """Each message (its id and body) with its receipt handle, for as long as the watch runs.

        A receive that fails (queue gone, no permission, network) ends the watch with that error; the
        triggerer restarts it. Messages a cancelled receive was still fetching come back after their
        visibility timeout.
        """
        self._queue_url = await self.configured_queue()
        self._client = await asyncio.to_thread(self._connect)
        log.info("watching S3 drop queue %s", self._queue_url)
        while True:
            for message in await asyncio.to_thread(self._receive):
                yield {"MessageId": message["MessageId"], "Body": message["Body"]}, message["ReceiptHandle"]

    def _delete(self, receipt_handles: Sequence[str]) -> None:
        """Delete up to ten messages; what SQS refuses is logged and comes back (harmless, see module)."""
        from botocore.exceptions import BotoCoreError, ClientError

        entries = [{"Id": str(n), "ReceiptHandle": handle} for n, handle in enumerate(receipt_handles)]
        try:
            refused = self._client.delete_message_batch(QueueUrl=self._queue_url, Entries=entries).get(
                "Failed"
            )
        except (BotoCoreError, ClientError) as error:
            log.warning(
                "SQS did not delete %d stored S3 drop messages (%s); they come back, and a dry run they "
                "asked for is not started twice",
                len(entries),
                mask_text(str(error)),
            )
            return
        for failure in refused or []:
            log.warning(
                "SQS did not delete a stored S3 drop message (%s: %s); it comes back, and a dry run it "
                "asked for is not started twice",
                failure.get("Code"),
                mask_text(str(failure.get("Message", ""))),
            )

    async def advance(self, batch: Sequence[AdvanceItem]) -> None:
        """Delete the messages whose asset events are stored; leave the others for SQS to hand out again."""
        done = [item.broker_payload for item in batch if settles(item.outcome)]
        if left := len(batch) - len(done):
            log.warning(
                "%d S3 drop messages were not stored by the triggerer; SQS hands them out again within %d s",
                left,
                self.visibility_timeout_seconds,
            )
        for start in range(0, len(done), MAX_MESSAGES_PER_CALL):
            await asyncio.to_thread(self._delete, done[start : start + MAX_MESSAGES_PER_CALL])


class DropQueueTrigger(BaseEventTrigger):
    """Fires once per message on the queue named by Variable `mailtrace_resend_drop_queue_url`."""

    def __init__(
        self,
        aws_conn_id: str = "aws_default",
        wait_time_seconds: int = LONG_POLL_SECONDS,
        visibility_timeout_seconds: int = VISIBILITY_TIMEOUT_SECONDS,
    ) -> None:
        super().__init__()
        self.aws_conn_id = aws_conn_id
        self.wait_time_seconds = wait_time_seconds
        self.visibility_timeout_seconds = visibility_timeout_seconds

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "aws_conn_id": self.aws_conn_id,
                "wait_time_seconds": self.wait_time_seconds,
                "visibility_timeout_seconds": self.visibility_timeout_seconds,
            },
        )

    def shared_stream_key(self) -> Hashable:
        """Every argument the producer uses, so watches that share a poll share all of it."""
        classpath, kwargs = self.serialize()
        return (classpath, *sorted(kwargs.items()))

    @classmethod
    def create_shared_stream_producer(cls, kwargs: dict[str, Any]) -> DropQueueProducer:
        return DropQueueProducer(**kwargs)

    async def filter_shared_stream(self, shared_stream: AsyncIterator[Any]) -> AsyncIterator[TriggerEvent]:
        """One event per message, in the shape `mailtrace.resend.drop.messages_of` reads."""
        async for message in shared_stream:
            yield TriggerEvent({"message_batch": [message]})

    async def run(self) -> AsyncIterator[TriggerEvent]:
        """Never used by Airflow 3.3's triggerer, which runs this trigger as a shared stream in ack mode.

        Run alone, a trigger cannot know when its event is stored, so it could only delete too early (and
        lose uploads) or never (and repeat them): it refuses instead.
        """
        raise RuntimeError(
            "DropQueueTrigger runs only as an ack-mode shared stream (Airflow 3.3's triggerer): it deletes "
            "a message only once its asset event is stored"
        )
        yield  # an async generator, as BaseTrigger.run must be


RESEND_DROPS = Asset(
    name="mailtrace_resend_drops",
    uri="mailtrace://s3/resend-requests",
    watchers=[AssetWatcher(name="mailtrace_resend_drop_queue", trigger=DropQueueTrigger())],
)
