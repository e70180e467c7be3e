"""Amazon SES delivery events (SNS -> SQS): parse one queue message into normalised observations.

Pure functions, no AWS calls: `parse_sqs_body` takes the body of one SQS message and returns one
`ProviderEvent` per recipient the event is about. It accepts

* the SNS envelope (`{"Type": "Notification", "Message": "<json string>", ...}`) and raw message
  delivery (the SES record itself as the body);
* configuration-set event publishing (`eventType`) and identity feedback notifications
  (`notificationType`), which carry the same objects under a different key.

Mapping (SES record -> CONTRACT.md §2), with the choices the SES documentation leaves open:

| SES record | delivery_status | failure_reason |
|---|---|---|
| Send | pending | |
| Delivery | delivered | |
| Bounce Permanent/{General, NoEmail} | permanent_failure | invalid_address |
| Bounce Permanent/{Suppressed, OnAccountSuppressionList} | permanent_failure | suppressed |
| Bounce Transient/MailboxFull | temporary_failure | mailbox_full |
| Bounce Transient/MessageTooLarge | temporary_failure | content_rejected |
| Bounce Transient/{ContentRejected, AttachmentRejected} | temporary_failure | content_rejected |
| Bounce Transient/General | temporary_failure | unknown |
| Bounce Undetermined | permanent_failure | unknown |
| Complaint | complaint | |
| Complaint with complaintSubType OnAccountSuppressionList | permanent_failure | suppressed |
| Reject | technical_failure | content_rejected |
| DeliveryDelay | pending (never final; detail has delayType) | |
| Rendering Failure | technical_failure | content_rejected |

* Undetermined: SES got a bounce it could not classify, and it does not retry after a bounce, so
  the email did not arrive; the reason is honestly unknown (it is not counted as a bad address).
* Complaint/OnAccountSuppressionList: SES documents that it accepted the message but never sent it
  because the address is on the account suppression list, so nothing reached anyone to complain.
* Reject: SES accepted the call (so not `send_failed`, which is the app's own call failing), then
  refused to attempt delivery because it judged the content malicious (virus scan).
* DeliveryDelay names its recipients in `delayedRecipients`; `mail.destination` is the fallback.
* Open, Click and Subscription say nothing about delivery: they yield no observation (the raw
  record stays in the S3 archive). SES/SNS setup notices likewise yield nothing.
* Any other type, or a bounce type/subtype pair not in the table, is kept with `delivery_status`
  None so it is stored and reported rather than guessed.

Every observation leaves through `mailtrace.intake`: text made storable, and a record timed in the
future (beyond the clock-skew tolerance) is unparseable like one without a time zone.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from email.utils import parseaddr
from typing import Any

from mailtrace.events import ProviderEvent
from mailtrace.intake import PoisonItem, checked_time, storable_event

PROVIDER = "ses"
SOURCE = "ses_sqs"

_BOUNCE_VERDICTS: dict[tuple[str, str], tuple[str, str]] = {
    ("Permanent", "General"): ("permanent_failure", "invalid_address"),
    ("Permanent", "NoEmail"): ("permanent_failure", "invalid_address"),
    ("Permanent", "Suppressed"): ("permanent_failure", "suppressed"),
    ("Permanent", "OnAccountSuppressionList"): ("permanent_failure", "suppressed"),
    ("Transient", "General"): ("temporary_failure", "unknown"),
    ("Transient", "MailboxFull"): ("temporary_failure", "mailbox_full"),
    ("Transient", "MessageTooLarge"): ("temporary_failure", "content_rejected"),
    ("Transient", "ContentRejected"): ("temporary_failure", "content_rejected"),
    ("Transient", "AttachmentRejected"): ("temporary_failure", "content_rejected"),
    ("Undetermined", "Undetermined"): ("permanent_failure", "unknown"),
}
# Engagement records: nothing about whether the email arrived.
_IGNORED_TYPES = frozenset({"Open", "Click", "Subscription"})
# Sent once when a topic is wired to SES; not about any email.
_SETUP_NOTIFICATION_TYPE = "AmazonSnsSubscriptionSucceeded"
_SETUP_MESSAGE_PREFIX = "Successfully validated SNS topic"


class UnparseableMessage(PoisonItem):
    """A queue message that is not an SES delivery record we can read; the text says why."""


def parse_sqs_body(body: str, *, now: datetime | None = None) -> list[ProviderEvent]:
    """Every observation in one SQS message body (empty for records that carry none).

    Raises `UnparseableMessage` when the body is not JSON, not an SES record, or lacks what an
    observation needs (message id, recipients, a timezone-aware timestamp not after `now`).
    """
    record = _unwrap(_load_json_object(body, "SQS message body"))
    if record is None:
        return []
    return parse_ses_record(record, now=now)


def parse_ses_record(record: dict[str, Any], *, now: datetime | None = None) -> list[ProviderEvent]:
    """Observations in one SES record (the JSON SES publishes, without any SNS envelope)."""
    now = now or datetime.now(UTC)
    record_type = record.get("eventType") or record.get("notificationType")
    if not isinstance(record_type, str) or not record_type:
        raise UnparseableMessage("no eventType or notificationType: not an SES record")
    if record_type == _SETUP_NOTIFICATION_TYPE or record_type in _IGNORED_TYPES:
        return []
    mail = record.get("mail")
    if not isinstance(mail, dict):
        raise UnparseableMessage(f"{record_type} record has no mail object")
    message_id = mail.get("messageId")
    if not isinstance(message_id, str) or not message_id.strip():
        raise UnparseableMessage(f"{record_type} record has no mail.messageId")

    parser = _PARSERS.get(record_type, _parse_unknown)
    observations = parser(record_type, record, mail)
    events = [
        storable_event(
            ProviderEvent(
                provider=PROVIDER,
                provider_reference=message_id.strip(),
                recipient_email=recipient,
                raw_status=raw_status,
                delivery_status=delivery_status,
                failure_reason=failure_reason,
                detail=detail,
                event_at=_checked(event_at, now, record_type),
                source=SOURCE,
            )
        )
        for recipient, raw_status, delivery_status, failure_reason, detail, event_at in observations
    ]
    if not events:
        raise UnparseableMessage(f"{record_type} record names no recipient")
    return events


# One observation before it becomes a ProviderEvent:
# (recipient, raw_status, delivery_status, failure_reason, detail, event_at).
_Observation = tuple[str, str, str | None, str | None, str | None, datetime]


def _parse_bounce(record_type: str, record: dict[str, Any], mail: dict[str, Any]) -> list[_Observation]:
    bounce = _section(record, "bounce", record_type)
    bounce_type = str(bounce.get("bounceType") or "")
    subtype = str(bounce.get("bounceSubType") or "")
    status, reason = _BOUNCE_VERDICTS.get((bounce_type, subtype), (None, None))
    raw_status = "/".join(part for part in ("Bounce", bounce_type, subtype) if part)
    event_at = _timestamp(bounce, "bounce.timestamp")
    return [
        (
            _address(entry.get("emailAddress"), "bouncedRecipients"),
            raw_status,
            status,
            reason,
            _join(entry.get("diagnosticCode"), entry.get("status")),
            event_at,
        )
        for entry in _objects(bounce.get("bouncedRecipients"), "bounce.bouncedRecipients")
    ]


def _parse_complaint(record_type: str, record: dict[str, Any], mail: dict[str, Any]) -> list[_Observation]:
    complaint = _section(record, "complaint", record_type)
    subtype = complaint.get("complaintSubType")
    if subtype == "OnAccountSuppressionList":
        raw_status, status, reason = "Complaint/OnAccountSuppressionList", "permanent_failure", "suppressed"
    elif subtype:
        raw_status, status, reason = f"Complaint/{subtype}", None, None
    else:
        raw_status, status, reason = "Complaint", "complaint", None
    event_at = _timestamp(complaint, "complaint.timestamp")
    detail = _join(complaint.get("complaintFeedbackType"), complaint.get("userAgent"))
    return [
        (
            _address(entry.get("emailAddress"), "complainedRecipients"),
            raw_status,
            status,
            reason,
            detail,
            event_at,
        )
        for entry in _objects(complaint.get("complainedRecipients"), "complaint.complainedRecipients")
    ]


def _parse_delivery(record_type: str, record: dict[str, Any], mail: dict[str, Any]) -> list[_Observation]:
    delivery = _section(record, "delivery", record_type)
    event_at = _timestamp(delivery, "delivery.timestamp")
    detail = _join(delivery.get("smtpResponse"))
    return [
        (recipient, "Delivery", "delivered", None, detail, event_at)
        for recipient in _addresses(delivery.get("recipients"), "delivery.recipients")
    ]


def _parse_delivery_delay(
    record_type: str, record: dict[str, Any], mail: dict[str, Any]
) -> list[_Observation]:
    delay = _section(record, "deliveryDelay", record_type)
    delay_type = str(delay.get("delayType") or "")
    raw_status = f"DeliveryDelay/{delay_type}" if delay_type else "DeliveryDelay"
    event_at = _timestamp(delay, "deliveryDelay.timestamp")
    expires = f"expires {delay['expirationTime']}" if delay.get("expirationTime") else None
    delayed = delay.get("delayedRecipients")
    if not delayed:
        return [
            (recipient, raw_status, "pending", None, _join(delay_type, expires), event_at)
            for recipient in _destination(mail)
        ]
    return [
        (
            _address(entry.get("emailAddress"), "delayedRecipients"),
            raw_status,
            "pending",
            None,
            _join(delay_type, entry.get("diagnosticCode"), expires),
            event_at,
        )
        for entry in _objects(delayed, "deliveryDelay.delayedRecipients")
    ]


def _parse_send(record_type: str, record: dict[str, Any], mail: dict[str, Any]) -> list[_Observation]:
    # Send has no time of its own: SES accepted the message at mail.timestamp.
    event_at = _timestamp(mail, "mail.timestamp")
    return [(recipient, "Send", "pending", None, None, event_at) for recipient in _destination(mail)]


def _parse_reject(record_type: str, record: dict[str, Any], mail: dict[str, Any]) -> list[_Observation]:
    reject = record.get("reject") if isinstance(record.get("reject"), dict) else {}
    event_at = _timestamp(mail, "mail.timestamp")
    detail = _join(reject.get("reason"))
    return [
        (recipient, "Reject", "technical_failure", "content_rejected", detail, event_at)
        for recipient in _destination(mail)
    ]


def _parse_rendering_failure(
    record_type: str, record: dict[str, Any], mail: dict[str, Any]
) -> list[_Observation]:
    failure = record.get("failure") if isinstance(record.get("failure"), dict) else {}
    event_at = _timestamp(mail, "mail.timestamp")
    detail = _join(failure.get("templateName"), failure.get("errorMessage"))
    return [
        (recipient, "Rendering Failure", "technical_failure", "content_rejected", detail, event_at)
        for recipient in _destination(mail)
    ]


def _parse_unknown(record_type: str, record: dict[str, Any], mail: dict[str, Any]) -> list[_Observation]:
    """A type we do not know: keep it per recipient, unmapped, timed by its own object if it has one."""
    section_key = record_type[:1].lower() + record_type[1:].replace(" ", "")
    section = record.get(section_key)
    if isinstance(section, dict) and section.get("timestamp"):
        event_at = _timestamp(section, f"{section_key}.timestamp")
    else:
        event_at = _timestamp(mail, "mail.timestamp")
    return [(recipient, record_type, None, None, None, event_at) for recipient in _destination(mail)]


_PARSERS = {
    "Bounce": _parse_bounce,
    "Complaint": _parse_complaint,
    "Delivery": _parse_delivery,
    "DeliveryDelay": _parse_delivery_delay,
    "Send": _parse_send,
    "Reject": _parse_reject,
    "Rendering Failure": _parse_rendering_failure,
}


def _load_json_object(text: str, what: str) -> dict[str, Any]:
    if not isinstance(text, str) or not text.strip():
        raise UnparseableMessage(f"{what} is empty")
    try:
        value = json.loads(text)
    except ValueError as error:
        raise UnparseableMessage(f"{what} is not JSON: {error}") from None
    if not isinstance(value, dict):
        raise UnparseableMessage(f"{what} is JSON {type(value).__name__}, not an object")
    return value


def _unwrap(document: dict[str, Any]) -> dict[str, Any] | None:
    """The SES record inside an SNS envelope, the document itself under raw delivery, or None for a
    setup notice that concerns no email."""
    if "eventType" in document or "notificationType" in document:
        return document
    sns_type = document.get("Type")
    if sns_type is None:
        raise UnparseableMessage(
            "neither an SNS envelope (Type) nor an SES record (eventType/notificationType)"
        )
    if sns_type != "Notification":
        raise UnparseableMessage(f"SNS message of Type {sns_type!r} carries no SES record")
    message = document.get("Message")
    if not isinstance(message, str):
        raise UnparseableMessage("SNS notification has no Message string")
    if message.startswith(_SETUP_MESSAGE_PREFIX):
        return None
    return _load_json_object(message, "SNS Message")


def _section(record: dict[str, Any], key: str, record_type: str) -> dict[str, Any]:
    section = record.get(key)
    if not isinstance(section, dict):
        raise UnparseableMessage(f"{record_type} record has no {key} object")
    return section


def _list(value: Any, what: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise UnparseableMessage(f"{what} is not a list")
    return value


def _objects(value: Any, what: str) -> list[dict[str, Any]]:
    entries = _list(value, what)
    for entry in entries:
        if not isinstance(entry, dict):
            raise UnparseableMessage(f"{what} holds a {type(entry).__name__}, not an object")
    return entries


def _addresses(value: Any, what: str) -> list[str]:
    return [_address(entry, what) for entry in _list(value, what)]


def _destination(mail: dict[str, Any]) -> list[str]:
    return _addresses(mail.get("destination"), "mail.destination")


def _address(value: Any, what: str) -> str:
    """Lower-cased bare address; `Name <addr>` forms are reduced to the address."""
    if not isinstance(value, str):
        raise UnparseableMessage(f"{what} has an entry without an email address")
    address = parseaddr(value)[1].strip().lower()
    if "@" not in address:
        raise UnparseableMessage(f"{what} has an entry that is not an email address")
    return address


def _timestamp(section: dict[str, Any], what: str) -> datetime:
    value = section.get("timestamp")
    if not isinstance(value, str) or not value.strip():
        raise UnparseableMessage(f"{what} is missing")
    text = value.strip().replace(" +", "+").replace(" -", "-")
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise UnparseableMessage(f"{what} is not an ISO 8601 time: {value!r}") from None
    if parsed.tzinfo is None:
        raise UnparseableMessage(f"{what} has no time zone: {value!r}")
    return parsed


def _checked(event_at: datetime, now: datetime, record_type: str) -> datetime:
    try:
        return checked_time(event_at, now, f"{record_type} time")
    except PoisonItem as error:
        raise UnparseableMessage(str(error)) from None


def _join(*parts: Any) -> str | None:
    """Non-empty parts joined with '; ' (None when there is nothing to say)."""
    texts = [str(part).strip() for part in parts if part is not None and str(part).strip()]
    return "; ".join(texts) or None
