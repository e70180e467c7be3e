"""Drain the SES event queue (SNS -> SQS) into the warehouse without losing or doubling anything.

SQS delivers at least once and forgets a message once it is deleted, so each batch goes through
the same fixed order:

1. receive up to 10 messages (long poll; they stay invisible to others for `visibility_timeout`);
2. parse every body; a body that cannot be parsed is poison, not a reason to stop;
3. archive the raw bodies to S3 as NDJSON (SSE AES256) under a key derived from the batch's
   message ids, so a repeated batch overwrites its own object;
4. commit the poison messages to `mailtrace.ses_dead_letter` and the observations to
   `mailtrace.provider_event` (both idempotent on their keys);
5. only then delete the batch from the queue.

A crash anywhere before step 5 leaves the messages in the queue; they reappear after the
visibility timeout and the next run stores nothing new and deletes them.

Each message stands on its own: anything that goes wrong with one message (not JSON, too deeply
nested, a time in the future, a value the warehouse refuses) sends that message alone to the dead
letters, with the reason and its raw bytes, and the rest of the batch is stored and deleted. A
failure that is not one message's fault (the warehouse or S3 unreachable, a permission missing)
fails the drain after making the batch visible again, so the task's retry finds it instead of an
empty queue. Addresses are masked in logs and stored reasons; botocore and urllib3 are kept from
logging the bodies they receive.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import psycopg

from mailtrace.events import ProviderEvent
from mailtrace.intake import INDEXED_FIELD_MAX_BYTES, storable_reason, storable_text
from mailtrace.load import is_item_fault, load_provider_events
from mailtrace.privacy import library_bodies_kept_out_of_logs, mask_email
from mailtrace.providers.ses import UnparseableMessage, parse_sqs_body
from mailtrace.settings import REGISTRY
from mailtrace.warehouse import require_no_open_transaction

log = logging.getLogger(__name__)

ARCHIVE_PREFIX = "ses-raw"
SQS_MAX_BATCH = 10
DEFAULT_MAX_BATCHES = REGISTRY["ses_max_batches"].default
DEFAULT_WAIT_SECONDS = 10
# Long enough to archive, load and commit a batch of 10; a slower batch just reappears and is
# stored again as a no-op.
DEFAULT_VISIBILITY_TIMEOUT = 300

_INSERT_DEAD_LETTER = """
INSERT INTO mailtrace.ses_dead_letter (message_id, body, error, received_at, raw)
VALUES (%(message_id)s, %(body)s, %(error)s, %(received_at)s, %(raw)s)
ON CONFLICT (message_id) DO NOTHING
"""


class SesStoreError(RuntimeError):
    """A batch could not be stored for a reason that is not one message's fault."""


@dataclass(frozen=True)
class QueueMessage:
    """One received SQS message: what we store, and the handle that deletes it."""

    message_id: str
    receipt_handle: str
    body: str
    first_received_at: datetime

    @classmethod
    def from_sqs(cls, message: dict[str, Any], received_at: datetime) -> QueueMessage:
        attributes = message.get("Attributes") or {}
        first_receive_ms = attributes.get("ApproximateFirstReceiveTimestamp")
        first_received_at = (
            datetime.fromtimestamp(int(first_receive_ms) / 1000, tz=UTC) if first_receive_ms else received_at
        )
        return cls(
            message["MessageId"], message["ReceiptHandle"], message.get("Body") or "", first_received_at
        )


def archive_key(messages: list[QueueMessage]) -> str:
    """`ses-raw/<YYYY>/<MM>/<DD>/<batch-id>.ndjson`, dated by the batch's first receive time.

    Both parts depend only on the messages (SQS keeps the first-receive time across redeliveries),
    so processing the same batch again rewrites the same object instead of adding a copy.
    """
    first = min(message.first_received_at for message in messages)
    ids = "\n".join(sorted(message.message_id for message in messages))
    batch_id = hashlib.sha256(ids.encode("utf-8")).hexdigest()[:32]
    return f"{ARCHIVE_PREFIX}/{first:%Y/%m/%d}/{batch_id}.ndjson"


def archive_lines(messages: list[QueueMessage]) -> str:
    """One JSON object per message, the body exactly as received (poison included), for replay."""
    # ASCII with \u escapes: a lone surrogate in a body survives the trip through UTF-8 and back.
    lines = [
        json.dumps(
            {
                "sqs_message_id": message.message_id,
                "first_received_at": message.first_received_at.isoformat(),
                "body": message.body,
            }
        )
        for message in sorted(messages, key=lambda m: m.message_id)
    ]
    return "\n".join(lines) + "\n"


def _parse(messages: list[QueueMessage]) -> tuple[list[tuple[QueueMessage, list[ProviderEvent]]], list]:
    parsed, poison = [], []
    for message in messages:
        try:
            parsed.append((message, parse_sqs_body(message.body)))
        except Exception as error:  # noqa: BLE001 - whatever one message raises, it is that message's
            reason = str(error) if isinstance(error, UnparseableMessage) else storable_reason(error)
            poison.append((message, reason))
    return parsed, poison


def _load(
    conn: psycopg.Connection, parsed: list[tuple[QueueMessage, list[ProviderEvent]]], poison: list
) -> int:
    """Load the batch's observations in one go; if the warehouse refuses some values, message by message."""
    events = [event for _, message_events in parsed for event in message_events]
    if not events:
        return 0
    try:
        return load_provider_events(conn, events)
    except Exception as error:
        if not is_item_fault(conn, error):
            raise
        log.warning(
            "the warehouse refused part of a batch (%s); storing it message by message",
            storable_reason(error),
        )
    inserted = 0
    for message, message_events in parsed:
        if not message_events:
            continue
        try:
            inserted += load_provider_events(conn, message_events)
        except Exception as error:
            if not is_item_fault(conn, error):
                raise
            poison.append((message, f"the warehouse refused it: {storable_reason(error)}"))
    return inserted


def _dead_letter(conn: psycopg.Connection, poison: list) -> int:
    if not poison:
        return 0
    dead_lettered = 0
    with conn.transaction():
        with conn.cursor() as cur:
            for message, reason in poison:
                cur.execute(
                    _INSERT_DEAD_LETTER,
                    {
                        "message_id": storable_text(message.message_id, max_bytes=INDEXED_FIELD_MAX_BYTES),
                        "body": storable_text(message.body),
                        "error": storable_reason(reason),
                        "received_at": message.first_received_at,
                        "raw": message.body.encode("utf-8", errors="surrogatepass"),
                    },
                )
                dead_lettered += cur.rowcount
    return dead_lettered


def store_batch(conn: psycopg.Connection, s3_hook: Any, bucket: str, messages: list[QueueMessage]) -> dict:
    """Archive, load and dead-letter one batch, committing everything; never deletes from the queue.

    Raises only for a failure that is not one message's fault; a poison message is dead-lettered.
    """
    parsed, poison = _parse(messages)
    key = archive_key(messages)
    s3_hook.load_string(archive_lines(messages), key=key, bucket_name=bucket, replace=True, encrypt=True)
    inserted = _load(conn, parsed, poison)
    dead_lettered = _dead_letter(conn, poison)
    for message, reason in poison:
        log.warning(
            "SQS message %s set aside in mailtrace.ses_dead_letter: %s",
            message.message_id,
            storable_reason(reason),
        )

    poisoned = {message.message_id for message, _ in poison}
    events = [
        e for message, message_events in parsed if message.message_id not in poisoned for e in message_events
    ]
    for event in events:
        if event.delivery_status not in ("pending", "delivered"):
            log.info(
                "SES %s for %s (message %s)",
                event.raw_status,
                mask_email(event.recipient_email),
                event.provider_reference,
            )
    statuses = Counter(str(event.delivery_status) for event in events)
    log.info(
        "batch %s: %d events %s, %d new, %d set aside (dead-lettered)",
        key,
        len(events),
        dict(statuses),
        inserted,
        len(poison),
    )
    return {
        "events": len(events),
        "inserted": inserted,
        "poison": len(poison),
        "dead_lettered": dead_lettered,
    }


def delete_batch(sqs_client: Any, queue_url: str, messages: list[QueueMessage]) -> tuple[int, int]:
    """Delete the batch from the queue; return (deleted, failed).

    A failed delete is logged, not raised: the message comes back and is stored again as a no-op.
    """
    entries = [{"Id": str(index), "ReceiptHandle": m.receipt_handle} for index, m in enumerate(messages)]
    response = sqs_client.delete_message_batch(QueueUrl=queue_url, Entries=entries)
    failed = response.get("Failed") or []
    for failure in failed:
        log.warning("could not delete SQS message (entry %s): %s", failure.get("Id"), failure.get("Message"))
    return len(response.get("Successful") or []), len(failed)


def release_batch(sqs_client: Any, queue_url: str, messages: list[QueueMessage]) -> int:
    """Make the batch visible again at once (visibility timeout 0); return how many were released.

    Called when a batch could not be stored, so a retry of the task meets the messages instead of
    an empty queue. Failing to release is logged, not raised: the messages then come back when
    their visibility timeout ends.
    """
    entries = [
        {"Id": str(index), "ReceiptHandle": m.receipt_handle, "VisibilityTimeout": 0}
        for index, m in enumerate(messages)
    ]
    try:
        response = sqs_client.change_message_visibility_batch(QueueUrl=queue_url, Entries=entries)
    except Exception as error:  # noqa: BLE001 - the store failure being raised matters more
        log.warning("could not make %d SQS messages visible again: %s", len(messages), storable_reason(error))
        return 0
    for failure in response.get("Failed") or []:
        log.warning(
            "could not make SQS message visible again (entry %s): %s",
            failure.get("Id"),
            failure.get("Message"),
        )
    return len(response.get("Successful") or [])


def _receive(
    sqs_client: Any, queue_url: str, *, batch_size: int, wait_seconds: int, visibility_timeout: int
) -> list[QueueMessage]:
    response = sqs_client.receive_message(
        QueueUrl=queue_url,
        MaxNumberOfMessages=batch_size,
        WaitTimeSeconds=wait_seconds,
        VisibilityTimeout=visibility_timeout,
        MessageSystemAttributeNames=["ApproximateFirstReceiveTimestamp"],
    )
    received_at = datetime.now(UTC)
    unique = {}
    for message in response.get("Messages") or []:
        unique.setdefault(message["MessageId"], QueueMessage.from_sqs(message, received_at))
    return list(unique.values())


def drain_queue(
    conn: psycopg.Connection,
    *,
    queue_url: str,
    bucket: str,
    aws_conn_id: str = "aws_default",
    batch_size: int = SQS_MAX_BATCH,
    max_batches: int = DEFAULT_MAX_BATCHES,
    wait_seconds: int = DEFAULT_WAIT_SECONDS,
    visibility_timeout: int = DEFAULT_VISIBILITY_TIMEOUT,
) -> dict[str, int]:
    """Drain up to `max_batches` batches (stopping early when the queue is empty); return counts.

    `conn` must not be inside a transaction: every batch commits its rows before its messages are
    deleted, and a commit nested in the caller's transaction would only be a savepoint.
    """
    from airflow.providers.amazon.aws.hooks.s3 import S3Hook
    from airflow.providers.amazon.aws.hooks.sqs import SqsHook

    if not 1 <= batch_size <= SQS_MAX_BATCH:
        raise ValueError(f"batch_size must be 1..{SQS_MAX_BATCH} (the SQS limit), got {batch_size}")
    if max_batches < 1:
        raise ValueError(f"max_batches must be at least 1, got {max_batches}")
    require_no_open_transaction(conn, "drain_queue (it commits per batch)")

    sqs_client = SqsHook(aws_conn_id=aws_conn_id).conn
    s3_hook = S3Hook(aws_conn_id=aws_conn_id)
    totals = Counter(
        batches=0, messages=0, events=0, inserted=0, poison=0, dead_lettered=0, deleted=0, delete_failed=0
    )
    with library_bodies_kept_out_of_logs():
        for _ in range(max_batches):
            messages = _receive(
                sqs_client,
                queue_url,
                batch_size=batch_size,
                wait_seconds=wait_seconds,
                visibility_timeout=visibility_timeout,
            )
            if not messages:
                break
            stored = _store_or_release(conn, s3_hook, bucket, sqs_client, queue_url, messages)
            deleted, failed = delete_batch(sqs_client, queue_url, messages)
            totals.update(
                batches=1,
                messages=len(messages),
                events=stored["events"],
                inserted=stored["inserted"],
                poison=stored["poison"],
                dead_lettered=stored["dead_lettered"],
                deleted=deleted,
                delete_failed=failed,
            )
    summary = dict(totals)
    log.info("SES queue drained: %s", summary)
    if summary["poison"]:
        log.warning(
            "%d of %d SES messages set aside in mailtrace.ses_dead_letter (%d new there)",
            summary["poison"],
            summary["messages"],
            summary["dead_lettered"],
        )
    return summary


def _store_or_release(
    conn: psycopg.Connection,
    s3_hook: Any,
    bucket: str,
    sqs_client: Any,
    queue_url: str,
    messages: list[QueueMessage],
) -> dict:
    """`store_batch`, or on failure release the batch for the retry and fail with a masked reason."""
    try:
        return store_batch(conn, s3_hook, bucket, messages)
    except BaseException as error:
        released = release_batch(sqs_client, queue_url, messages)
        if not isinstance(error, Exception):
            raise  # the task is being stopped: stop
        raise SesStoreError(
            f"could not store a batch of {len(messages)} SES messages ({storable_reason(error)}); "
            f"made {released} visible again for the retry"
        ) from None


def replay_archive(
    conn: psycopg.Connection,
    *,
    bucket: str,
    prefix: str = f"{ARCHIVE_PREFIX}/",
    aws_conn_id: str = "aws_default",
) -> dict[str, int]:
    """Parse and load every archived body under `prefix` again (e.g. after a mapping fix).

    Idempotent like the drain: observations already stored add nothing. Bodies that still do not
    parse are counted, not raised: they are already in `ses_dead_letter`.
    """
    from airflow.providers.amazon.aws.hooks.s3 import S3Hook

    s3_hook = S3Hook(aws_conn_id=aws_conn_id)
    totals = Counter(objects=0, messages=0, events=0, inserted=0, unparseable=0)
    for key in s3_hook.list_keys(bucket_name=bucket, prefix=prefix):
        events = []
        for line in s3_hook.read_key(key, bucket_name=bucket).splitlines():
            totals["messages"] += 1
            try:
                events.extend(parse_sqs_body(json.loads(line)["body"]))
            except Exception:  # noqa: BLE001 - like the drain: one bad body never stops the rest
                totals["unparseable"] += 1
        totals.update(
            objects=1, events=len(events), inserted=load_provider_events(conn, events) if events else 0
        )
    summary = dict(totals)
    log.info("SES archive replayed: %s", summary)
    return summary


def drain_configured_queue(aws_conn_id: str = "aws_default") -> dict[str, int]:
    """The DAG's task: drain the queue named by the deployment's Variables into the warehouse.

    Variables: `mailtrace_ses_queue_url` (unset: skipped), `mailtrace_report_bucket` (the raw archive's
    bucket), `mailtrace_ses_max_batches` (optional, default 100 batches of 10 per run).
    """
    from airflow.sdk.exceptions import AirflowSkipException

    from mailtrace.settings import required_setting, setting
    from mailtrace.warehouse import apply_migrations, connect

    queue_url = setting("ses_queue_url")
    if not queue_url:
        # A deployment that does not send through SES has no queue: skip (and skip the reconcile
        # after it) rather than fail and alert every 10 minutes.
        raise AirflowSkipException(
            "no SES event queue configured (Airflow Variable mailtrace_ses_queue_url is unset): "
            "nothing to drain; set it to the SQS queue URL to ingest SES events"
        )
    bucket = required_setting("report_bucket", "the SES archive")
    max_batches = setting("ses_max_batches")
    with connect() as conn:
        apply_migrations(conn)
        return drain_queue(
            conn, queue_url=queue_url, bucket=bucket, aws_conn_id=aws_conn_id, max_batches=max_batches
        )
