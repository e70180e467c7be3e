"""S3 drop: an ID list uploaded under the resend prefix starts a dry run of the resend by itself.

The bucket sends its `s3:ObjectCreated:*` events to an SQS queue (Variable `mailtrace_resend_drop_queue_url`);
the asset watcher of DAG `mailtrace_resend_drop` reads the queue (`mailtrace.drop_queue`) and each
message becomes an asset event. `plan_drops` turns those events into dry-run triggers of
`mailtrace_resend`, so a drop is planned, written to the outcome CSV and recorded in the ledger by the same
code as a dry run a person triggers: this module only decides *which* objects are ID lists.

A drop is `<ids prefix><incident_id>/<file>.csv` (the prefix is `mailtrace_resend_ids_prefix`, the
incident id passes the resend's own incident-id check). Anything else (S3's test event, another
prefix or bucket, a deeper folder, not a .csv, a message that is not an S3 event) is set aside with its
reason in the log and never stops the other drops of the batch.

SQS delivers at least once, so one upload can arrive twice. Its dry run's `run_id` is derived from the
object (bucket, key, version id or else ETag): the second trigger finds that run already there and is
skipped, so one upload starts one dry run. Uploading the same bytes again under the same name is the same
object version and starts nothing; to plan again, upload under a new name or trigger by hand. The dry
run reads the list at `s3://bucket/key` when it runs, i.e. its newest version: a corrected list uploaded
under the same name before the first dry run ran is what both dry runs plan (each outcome CSV lists what
was read).
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote_plus

from mailtrace.privacy import mask_text
from mailtrace.resend.constants import INCIDENT_ID_PATTERN
from mailtrace.s3 import split_s3_uri

log = logging.getLogger(__name__)

RUN_ID_PREFIX = "s3drop"
S3_TEST_EVENT = "s3:TestEvent"
OBJECT_CREATED = "ObjectCreated:"
LIST_SUFFIX = ".csv"


@dataclass(frozen=True)
class Drop:
    """One uploaded ID list: the object and the incident it is for."""

    bucket: str
    key: str
    incident_id: str
    version: str  # the object's version id, or its ETag in an unversioned bucket

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.key}"

    @property
    def run_id(self) -> str:
        """The dry run's `run_id`: the same for every delivery of this object version, unique otherwise."""
        digest = hashlib.sha256(f"{self.bucket}\0{self.key}\0{self.version}".encode()).hexdigest()[:20]
        return f"{RUN_ID_PREFIX}__{self.incident_id}__{digest}"


@dataclass(frozen=True)
class SetAside:
    """Something read from the queue that does not start a dry run, and why. `expected`: nothing anyone
    needs to hear about (S3's test event when the notification is configured)."""

    what: str
    reason: str
    expected: bool = False


def incident_of(bucket: str, key: str, ids_prefix: str) -> tuple[str | None, str]:
    """The incident id a drop at s3://bucket/key is for, or None and the reason it is not a drop.

    `ids_prefix` is `s3://<bucket>/<prefix>/` as `mailtrace.resend.validation.ids_prefix` returns it.
    """
    allowed_bucket, key_prefix = split_s3_uri(ids_prefix)
    if bucket != allowed_bucket:
        return None, f"bucket {bucket!r} is not the resend bucket {allowed_bucket!r}"
    if not key.startswith(key_prefix):
        return None, f"not under the ID list prefix {ids_prefix}"
    parts = key[len(key_prefix) :].split("/")
    if len(parts) != 2:
        return None, f"not {ids_prefix}<incident_id>/<file>.csv (one incident folder, then the file)"
    incident_id, file_name = parts
    if not re.match(INCIDENT_ID_PATTERN, incident_id):
        return None, (
            f"folder {incident_id[:80]!r} is not an incident id (it must match {INCIDENT_ID_PATTERN})"
        )
    if file_name in ("", ".", "..") or not file_name.lower().endswith(LIST_SUFFIX):
        return None, "not a .csv file"
    return incident_id, ""


def _body(message: Mapping[str, Any]) -> Any:
    """The S3 event in an SQS message: raw, or inside an SNS envelope when the bucket notifies SNS."""
    body = json.loads(message["Body"])
    if isinstance(body, dict) and body.get("Type") == "Notification" and isinstance(body.get("Message"), str):
        body = json.loads(body["Message"])
    return body


def _record_drop(record: Any, ids_prefix: str) -> Drop | SetAside:
    if not isinstance(record, dict) or record.get("eventSource") != "aws:s3":
        return SetAside("a record", "not an S3 event record")
    try:
        bucket = record["s3"]["bucket"]["name"]
        s3_object = record["s3"]["object"]
        key = unquote_plus(s3_object["key"])  # S3 event keys are URL-encoded, spaces as "+"
    except (KeyError, TypeError):
        return SetAside("a record", "S3 event record without bucket name or object key")
    what = f"s3://{bucket}/{key}"
    if not str(record.get("eventName", "")).startswith(OBJECT_CREATED):
        return SetAside(what, f"event {record.get('eventName')!r} is not an upload")
    incident_id, reason = incident_of(bucket, key, ids_prefix)
    if incident_id is None:
        return SetAside(what, reason)
    # S3 writes the ETag quoted in API answers and bare in events; either way it names the same bytes.
    version = s3_object.get("versionId") or str(s3_object.get("eTag") or "").strip('"')
    if not version:
        return SetAside(what, "S3 event record without version id or ETag")
    return Drop(bucket=bucket, key=key, incident_id=incident_id, version=version)


def drops_in(messages: Iterable[Mapping[str, Any]], ids_prefix: str) -> tuple[list[Drop], list[SetAside]]:
    """The drops in a batch of SQS messages (each once, in order) and what was set aside."""
    drops: dict[str, Drop] = {}
    set_aside: list[SetAside] = []
    for message in messages:
        name = f"message {message.get('MessageId', '?')}"
        try:
            body = _body(message)
        except (KeyError, TypeError, ValueError):
            set_aside.append(SetAside(name, "body is not JSON"))
            continue
        if isinstance(body, dict) and body.get("Event") == S3_TEST_EVENT:
            set_aside.append(
                SetAside(name, "S3's test event (sent when the notification is configured)", expected=True)
            )
            continue
        records = body.get("Records") if isinstance(body, dict) else None
        if not isinstance(records, list) or not records:
            set_aside.append(SetAside(name, "not an S3 event notification"))
            continue
        for record in records:
            found = _record_drop(record, ids_prefix)
            if isinstance(found, Drop):
                drops.setdefault(found.run_id, found)
            else:
                set_aside.append(found)
    return list(drops.values()), set_aside


def messages_of(asset_events: Iterable[Any]) -> list[Mapping[str, Any]]:
    """The SQS messages the watcher's trigger put in the asset events' `extra` (payload.message_batch)."""
    messages: list[Mapping[str, Any]] = []
    for event in asset_events:
        extra = getattr(event, "extra", None) or {}
        payload = extra.get("payload") if isinstance(extra, Mapping) else None
        batch = payload.get("message_batch") if isinstance(payload, Mapping) else None
        if isinstance(batch, list):
            messages.extend(message for message in batch if isinstance(message, Mapping))
    return messages


def dry_run_conf(drop: Drop, id_type: str) -> dict[str, Any]:
    """The `mailtrace_resend` parameters of a drop's dry run (the rest are the form's defaults)."""
    return {"incident_id": drop.incident_id, "ids_s3_uri": drop.uri, "id_type": id_type, "dry_run": True}


def plan_drops(
    asset_events: Iterable[Any], record_set_aside: Callable[[list[SetAside]], None] | None = None
) -> list[dict[str, Any]]:
    """One `mailtrace_resend` trigger (run id and conf) per drop in the events; logs what is set aside
    and hands what someone should hear about to `record_set_aside` (the DAG records it for the health
    panel: an upload that starts nothing must not be only a log line).

    Variables: `mailtrace_resend_ids_prefix` (where drops are), `mailtrace_resend_drop_id_type`.
    """
    from mailtrace.resend.validation import ids_prefix
    from mailtrace.settings import setting

    messages = messages_of(asset_events)
    if not messages:  # a run triggered by hand, or an asset event created in the UI: nothing to read
        log.info("no S3 upload events in the triggering asset events: no dry run to start")
        return []
    prefix = ids_prefix()
    id_type = setting("resend_drop_id_type")
    drops, set_aside = drops_in(messages, prefix)
    for item in set_aside:
        log.warning("S3 drop set aside: %s: %s", mask_text(item.what), mask_text(item.reason))
    for drop in drops:
        log.info("S3 drop %s: dry run %s of incident %s", mask_text(drop.uri), drop.run_id, drop.incident_id)
    log.info("%d drops to dry-run, %d set aside", len(drops), len(set_aside))
    unexpected = [item for item in set_aside if not item.expected]
    if unexpected and record_set_aside is not None:
        record_set_aside(unexpected)
    return [{"trigger_run_id": drop.run_id, "conf": dry_run_conf(drop, id_type)} for drop in drops]


def record_set_aside_drops(set_aside: list[SetAside]) -> None:
    """Keep each set-aside upload as a pipeline warning (the health panel shows it for a week)."""
    from mailtrace.pipeline_warnings import S3_DROP_SET_ASIDE, record_check
    from mailtrace.warehouse import connect

    with connect() as conn, conn.transaction():
        # checked=[]: an upload set aside is an event, not a condition a later run can see gone.
        record_check(conn, S3_DROP_SET_ASIDE, {item.what: item.reason for item in set_aside}, checked=[])
