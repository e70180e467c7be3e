"""SES records and SQS bodies shaped like the examples in AWS's SES developer guide.

Field names, nesting and value formats follow "Examples of event data that Amazon SES publishes to
Amazon SNS" (eventType records) and "Amazon SNS notification examples for Amazon SES"
(notificationType records); the SNS envelope follows the SNS-to-SQS notification format. Values are
our own.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

SENDER = "notices@tax.example.gov"


def mail_object(message_id: str, destination: list[str], sent_at: str, *, with_headers: bool = True) -> dict:
    """The `mail` object; identity notifications without headers configured omit the header fields."""
    mail: dict[str, Any] = {
        "timestamp": sent_at,
        "source": f"Tax Service <{SENDER}>",
        "sourceArn": f"arn:aws:ses:ca-central-1:123456789012:identity/{SENDER}",
        "sendingAccountId": "123456789012",
        "messageId": message_id,
        "destination": destination,
    }
    if with_headers:
        mail |= {
            "headersTruncated": False,
            "headers": [
                {"name": "From", "value": f"Tax Service <{SENDER}>"},
                {"name": "To", "value": ", ".join(destination)},
                {"name": "Subject", "value": "Your return was received"},
                {"name": "MIME-Version", "value": "1.0"},
                {"name": "Content-Type", "value": 'multipart/alternative; boundary="----=_Part_1"'},
            ],
            "commonHeaders": {
                "from": [f"Tax Service <{SENDER}>"],
                "to": destination,
                "messageId": message_id,
                "subject": "Your return was received",
            },
            "tags": {
                "ses:configuration-set": ["mailtrace"],
                "ses:source-ip": ["192.0.2.0"],
                "ses:from-domain": ["tax.example.gov"],
                "ses:caller-identity": ["tax_app"],
            },
        }
    return mail


def _record(kind: str, record_type: str, mail: dict, **sections: Any) -> dict:
    """`kind` is "eventType" (configuration-set publishing) or "notificationType" (identity feedback)."""
    return {kind: record_type, "mail": mail, **sections}


def bounce(
    message_id: str,
    recipients: list[str],
    *,
    bounce_type: str = "Permanent",
    subtype: str = "General",
    at: str = "2026-03-02T17:41:02.669Z",
    sent_at: str = "2026-03-02T17:40:02.012Z",
    kind: str = "eventType",
    destination: list[str] | None = None,
) -> dict:
    bounced = [
        {
            "emailAddress": address,
            "action": "failed",
            "status": "5.1.1",
            "diagnosticCode": f"smtp; 550 5.1.1 <{address}>... User unknown",
        }
        for address in recipients
    ]
    section = {
        "bounceType": bounce_type,
        "bounceSubType": subtype,
        "bouncedRecipients": bounced,
        "timestamp": at,
        "feedbackId": f"0100018e{uuid.uuid4().hex[:8]}-feedback-000000",
        "reportingMTA": "dsn; mta.example.net",
        "remoteMtaIp": "127.0.2.0",
    }
    mail = mail_object(message_id, destination or recipients, sent_at)
    return _record(kind, "Bounce", mail, bounce=section)


def complaint(
    message_id: str,
    recipients: list[str],
    *,
    at: str = "2026-03-02T18:00:00.000Z",
    sent_at: str = "2026-03-02T17:40:01.123Z",
    kind: str = "eventType",
    subtype: str | None = None,
) -> dict:
    section: dict[str, Any] = {
        "complainedRecipients": [{"emailAddress": address} for address in recipients],
        "timestamp": at,
        "feedbackId": "0100018e-complaint-000000",
        "userAgent": "ExampleMail Feedback Loop (V0.01)",
        "complaintFeedbackType": "abuse",
        "arrivalDate": at,
    }
    if subtype is not None:
        section["complaintSubType"] = subtype
    return _record(kind, "Complaint", mail_object(message_id, recipients, sent_at), complaint=section)


def delivery(
    message_id: str,
    recipients: list[str],
    *,
    at: str = "2026-03-02T17:40:14.133Z",
    sent_at: str = "2026-03-02T17:40:02.240Z",
    kind: str = "eventType",
) -> dict:
    section = {
        "timestamp": at,
        "processingTimeMillis": 11893,
        "recipients": recipients,
        "smtpResponse": "250 2.6.0 Message received",
        "reportingMTA": "a8-70.smtp-out.amazonses.com",
        "remoteMtaIp": "127.0.2.0",
    }
    return _record(kind, "Delivery", mail_object(message_id, recipients, sent_at), delivery=section)


def send(message_id: str, recipients: list[str], *, sent_at: str = "2026-03-02T17:40:02.012Z") -> dict:
    return _record("eventType", "Send", mail_object(message_id, recipients, sent_at), send={})


def reject(message_id: str, recipients: list[str], *, sent_at: str = "2026-03-02T17:40:02.012Z") -> dict:
    mail = mail_object(message_id, recipients, sent_at)
    return _record("eventType", "Reject", mail, reject={"reason": "Bad content"})


def rendering_failure(
    message_id: str, recipients: list[str], *, sent_at: str = "2026-03-02T17:40:02.012Z"
) -> dict:
    mail = mail_object(message_id, recipients, sent_at, with_headers=False)
    failure = {
        "errorMessage": "Attribute 'return_id' is not present in the rendering data.",
        "templateName": "ReturnReceived",
    }
    return _record("eventType", "Rendering Failure", mail, failure=failure)


def delivery_delay(
    message_id: str,
    recipients: list[str],
    *,
    at: str = "2026-03-02T17:50:40.095Z",
    sent_at: str = "2026-03-02T17:40:02.012Z",
) -> dict:
    section = {
        "timestamp": at,
        "delayType": "TransientCommunicationFailure",
        "expirationTime": "2026-03-03T17:40:02.012Z",
        "delayedRecipients": [
            {
                "emailAddress": address,
                "status": "4.4.1",
                "diagnosticCode": "smtp; 421 4.4.1 Unable to connect to remote host",
            }
            for address in recipients
        ],
    }
    mail = mail_object(message_id, recipients, sent_at, with_headers=False)
    return _record("eventType", "DeliveryDelay", mail, deliveryDelay=section)


def open_event(message_id: str, recipients: list[str]) -> dict:
    section = {
        "ipAddress": "192.0.2.1",
        "timestamp": "2026-03-02T19:00:19.652Z",
        "userAgent": "Mozilla/5.0 (iPhone; CPU iPhone OS 10_3_3 like Mac OS X)",
    }
    return _record(
        "eventType", "Open", mail_object(message_id, recipients, "2026-03-02T17:40:02.012Z"), open=section
    )


def sns_envelope(record: dict | str, *, sns_message_id: str | None = None) -> str:
    """The JSON SNS delivers to an SQS subscriber without raw message delivery."""
    message = record if isinstance(record, str) else json.dumps(record)
    return json.dumps(
        {
            "Type": "Notification",
            "MessageId": sns_message_id or str(uuid.uuid4()),
            "TopicArn": "arn:aws:sns:ca-central-1:123456789012:mailtrace-ses-events",
            "Message": message,
            "Timestamp": "2026-03-02T17:41:03.000Z",
            "SignatureVersion": "1",
            "Signature": "EXAMPLEpH+...",
            "SigningCertURL": "https://sns.ca-central-1.amazonaws.com/SimpleNotificationService-0000.pem",
            "UnsubscribeURL": "https://sns.ca-central-1.amazonaws.com/?Action=Unsubscribe&SubscriptionArn=x",
        }
    )


def raw(record: dict) -> str:
    """The body under SNS raw message delivery: the SES record itself."""
    return json.dumps(record)
