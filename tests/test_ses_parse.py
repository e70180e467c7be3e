"""SES record parsing and status mapping (pure, no AWS): every documented type and bounce subtype."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
import ses_payloads as payloads

from mailtrace.providers.ses import UnparseableMessage, parse_sqs_body

MESSAGE_ID = "0100018e1a2b3c4d-9a483358-9170-4cb4-a269-f5dcdf415321-000000"


def only(events):
    assert len(events) == 1, events
    return events[0]


@pytest.mark.parametrize(
    ("bounce_type", "subtype", "status", "reason"),
    [
        ("Permanent", "General", "permanent_failure", "invalid_address"),
        ("Permanent", "NoEmail", "permanent_failure", "invalid_address"),
        ("Permanent", "Suppressed", "permanent_failure", "suppressed"),
        ("Permanent", "OnAccountSuppressionList", "permanent_failure", "suppressed"),
        ("Transient", "General", "temporary_failure", "unknown"),
        ("Transient", "MailboxFull", "temporary_failure", "mailbox_full"),
        ("Transient", "MessageTooLarge", "temporary_failure", "content_rejected"),
        ("Transient", "ContentRejected", "temporary_failure", "content_rejected"),
        ("Transient", "AttachmentRejected", "temporary_failure", "content_rejected"),
        ("Undetermined", "Undetermined", "permanent_failure", "unknown"),
    ],
)
def test_bounce_subtypes_map_to_contract(bounce_type, subtype, status, reason):
    record = payloads.bounce(MESSAGE_ID, ["Jane.Doe@Example.com"], bounce_type=bounce_type, subtype=subtype)
    event = only(parse_sqs_body(payloads.sns_envelope(record)))
    assert event.provider == "ses"
    assert event.source == "ses_sqs"
    assert event.provider_reference == MESSAGE_ID
    assert event.recipient_email == "jane.doe@example.com"
    assert event.raw_status == f"Bounce/{bounce_type}/{subtype}"
    assert (event.delivery_status, event.failure_reason) == (status, reason)
    assert event.event_at == datetime(2026, 3, 2, 17, 41, 2, 669000, tzinfo=UTC)  # bounce.timestamp
    assert "550 5.1.1" in event.detail


def test_unknown_bounce_subtype_is_kept_unmapped():
    record = payloads.bounce(MESSAGE_ID, ["jane@example.com"], bounce_type="Permanent", subtype="Quarantined")
    event = only(parse_sqs_body(payloads.raw(record)))
    assert event.raw_status == "Bounce/Permanent/Quarantined"
    assert event.delivery_status is None
    assert event.failure_reason is None


def test_multi_recipient_bounce_gives_one_event_per_bounced_recipient():
    # As in AWS's "bounce notification without a DSN": three addressees, two of them bounced.
    record = payloads.bounce(
        MESSAGE_ID,
        ["jane@example.com", "richard@example.com"],
        destination=["jane@example.com", "mary@example.com", "richard@example.com"],
        kind="notificationType",
    )
    events = parse_sqs_body(payloads.sns_envelope(record))
    assert [event.recipient_email for event in events] == ["jane@example.com", "richard@example.com"]
    assert {event.delivery_status for event in events} == {"permanent_failure"}
    assert {event.provider_reference for event in events} == {MESSAGE_ID}


def test_bounce_recipient_without_dsn_fields():
    record = payloads.bounce(MESSAGE_ID, ["jane@example.com"], kind="notificationType")
    record["bounce"]["bouncedRecipients"] = [{"emailAddress": "jane@example.com"}]
    event = only(parse_sqs_body(payloads.raw(record)))
    assert event.delivery_status == "permanent_failure"
    assert event.detail is None


@pytest.mark.parametrize("kind", ["eventType", "notificationType"])
@pytest.mark.parametrize("wrap", [payloads.sns_envelope, payloads.raw], ids=["sns-envelope", "raw"])
def test_delivery_in_every_shape(kind, wrap):
    record = payloads.delivery(MESSAGE_ID, ["jane@example.com"], kind=kind)
    event = only(parse_sqs_body(wrap(record)))
    assert event.raw_status == "Delivery"
    assert event.delivery_status == "delivered"
    assert event.failure_reason is None
    assert event.event_at == datetime(2026, 3, 2, 17, 40, 14, 133000, tzinfo=UTC)  # delivery.timestamp
    assert event.detail == "250 2.6.0 Message received"


def test_multi_recipient_delivery():
    record = payloads.delivery(MESSAGE_ID, ["a@example.com", "B@example.com"])
    events = parse_sqs_body(payloads.raw(record))
    assert [(e.recipient_email, e.delivery_status) for e in events] == [
        ("a@example.com", "delivered"),
        ("b@example.com", "delivered"),
    ]


def test_send_is_pending_at_mail_timestamp_for_each_destination():
    events = parse_sqs_body(
        payloads.sns_envelope(payloads.send(MESSAGE_ID, ["a@example.com", "b@example.com"]))
    )
    assert [e.recipient_email for e in events] == ["a@example.com", "b@example.com"]
    assert {(e.raw_status, e.delivery_status) for e in events} == {("Send", "pending")}
    assert events[0].event_at == datetime(2026, 3, 2, 17, 40, 2, 12000, tzinfo=UTC)


def test_complaint():
    record = payloads.complaint(MESSAGE_ID, ["richard@example.com"])
    event = only(parse_sqs_body(payloads.sns_envelope(record)))
    assert (event.raw_status, event.delivery_status, event.failure_reason) == ("Complaint", "complaint", None)
    assert event.event_at == datetime(2026, 3, 2, 18, 0, tzinfo=UTC)
    assert event.detail.startswith("abuse")


def test_complaint_notification_with_null_subtype():
    record = payloads.complaint(MESSAGE_ID, ["richard@example.com"], kind="notificationType")
    record["complaint"]["complaintSubType"] = None
    assert only(parse_sqs_body(payloads.raw(record))).delivery_status == "complaint"


def test_complaint_on_account_suppression_list_means_never_sent():
    record = payloads.complaint(MESSAGE_ID, ["richard@example.com"], subtype="OnAccountSuppressionList")
    event = only(parse_sqs_body(payloads.raw(record)))
    assert event.raw_status == "Complaint/OnAccountSuppressionList"
    assert (event.delivery_status, event.failure_reason) == ("permanent_failure", "suppressed")


def test_reject_is_a_technical_failure_for_each_destination():
    event = only(parse_sqs_body(payloads.sns_envelope(payloads.reject(MESSAGE_ID, ["jane@example.com"]))))
    assert (event.raw_status, event.delivery_status, event.failure_reason) == (
        "Reject",
        "technical_failure",
        "content_rejected",
    )
    assert event.detail == "Bad content"
    assert event.event_at == datetime(2026, 3, 2, 17, 40, 2, 12000, tzinfo=UTC)


def test_rendering_failure():
    record = payloads.rendering_failure(MESSAGE_ID, ["jane@example.com"])
    event = only(parse_sqs_body(payloads.sns_envelope(record)))
    assert (event.raw_status, event.delivery_status, event.failure_reason) == (
        "Rendering Failure",
        "technical_failure",
        "content_rejected",
    )
    assert "ReturnReceived" in event.detail
    assert "return_id" in event.detail


def test_delivery_delay_stays_pending_with_the_delay_type():
    record = payloads.delivery_delay(MESSAGE_ID, ["jane@example.com"])
    event = only(parse_sqs_body(payloads.sns_envelope(record)))
    assert event.raw_status == "DeliveryDelay/TransientCommunicationFailure"
    assert event.delivery_status == "pending"
    assert event.failure_reason is None
    assert event.event_at == datetime(2026, 3, 2, 17, 50, 40, 95000, tzinfo=UTC)
    assert event.detail.startswith("TransientCommunicationFailure")
    assert "421 4.4.1" in event.detail


def test_delivery_delay_names_only_the_delayed_recipients():
    record = payloads.delivery_delay(MESSAGE_ID, ["jane@example.com"])
    record["mail"]["destination"] = ["jane@example.com", "mary@example.com"]
    assert [e.recipient_email for e in parse_sqs_body(payloads.raw(record))] == ["jane@example.com"]


def test_engagement_and_setup_notices_yield_nothing():
    assert parse_sqs_body(payloads.sns_envelope(payloads.open_event(MESSAGE_ID, ["jane@example.com"]))) == []
    subscribed = {
        "notificationType": "AmazonSnsSubscriptionSucceeded",
        "message": "You have successfully subscribed your SNS topic to receive 'Bounce' notifications.",
    }
    assert parse_sqs_body(payloads.sns_envelope(subscribed)) == []
    validated = "Successfully validated SNS topic for Amazon SES event publishing."
    assert parse_sqs_body(payloads.sns_envelope(validated)) == []


def test_unknown_event_type_is_kept_raw_and_unmapped():
    record = payloads.send(MESSAGE_ID, ["jane@example.com"])
    record["eventType"] = "Quarantine"
    record["quarantine"] = {"timestamp": "2026-03-02T18:30:00Z"}
    event = only(parse_sqs_body(payloads.raw(record)))
    assert event.raw_status == "Quarantine"
    assert event.delivery_status is None
    assert event.event_at == datetime(2026, 3, 2, 18, 30, tzinfo=UTC)


def test_mail_timestamp_with_spaced_offset_as_in_the_mail_object_example():
    record = payloads.send(MESSAGE_ID, ["jane@example.com"], sent_at="2026-03-02T14:05:45 +0000")
    assert only(parse_sqs_body(payloads.raw(record))).event_at == datetime(2026, 3, 2, 14, 5, 45, tzinfo=UTC)


def _without(record: dict, *path: str) -> dict:
    target = record
    for key in path[:-1]:
        target = target[key]
    del target[path[-1]]
    return record


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ("", "empty"),
        ("not json at all", "not JSON"),
        ('{"eventType": "Bounce", ', "not JSON"),
        ("[1, 2]", "not an object"),
        ('{"hello": "world"}', "neither an SNS envelope"),
        (json.dumps({"Type": "SubscriptionConfirmation", "Message": "confirm"}), "SubscriptionConfirmation"),
        (json.dumps({"Type": "Notification", "Message": "{oops"}), "SNS Message is not JSON"),
        (json.dumps({"Type": "Notification"}), "no Message"),
        (json.dumps({"eventType": "Bounce"}), "no mail object"),
        (
            payloads.raw(_without(payloads.delivery(MESSAGE_ID, ["a@example.com"]), "mail", "messageId")),
            "messageId",
        ),
        (
            payloads.raw(_without(payloads.bounce(MESSAGE_ID, ["a@example.com"]), "bounce")),
            "no bounce object",
        ),
        (
            payloads.raw(_without(payloads.bounce(MESSAGE_ID, ["a@example.com"]), "bounce", "timestamp")),
            "bounce.timestamp is missing",
        ),
        (
            payloads.raw(payloads.delivery(MESSAGE_ID, ["a@example.com"], at="yesterday")),
            "not an ISO 8601 time",
        ),
        (
            payloads.raw(payloads.delivery(MESSAGE_ID, ["a@example.com"], at="2026-03-02T17:40:14")),
            "no time zone",
        ),
        (payloads.raw(payloads.bounce(MESSAGE_ID, [])), "names no recipient"),
        (payloads.raw(payloads.delivery(MESSAGE_ID, ["not-an-address"])), "not an email address"),
    ],
)
def test_poison_bodies_raise_with_a_reason(body, reason):
    with pytest.raises(UnparseableMessage, match=reason):
        parse_sqs_body(body)


def test_bounced_recipients_not_a_list_is_poison():
    record = payloads.bounce(MESSAGE_ID, ["a@example.com"])
    record["bounce"]["bouncedRecipients"] = "a@example.com"
    with pytest.raises(UnparseableMessage, match="not a list"):
        parse_sqs_body(payloads.raw(record))
