"""Notify v2 notification JSON -> contract status and reason, with payloads shaped like the real API."""

from datetime import UTC, datetime

import pytest

from mailtrace.providers.gc_notify import MalformedNotification, to_provider_event


def notification(status, *, status_description=None, provider_response=None, **extra):
    payload = {
        "id": "740e5834-3a29-46b4-9a6f-16142fde533a",
        "reference": "evt-1",
        "email_address": "Someone@Example.gov",
        "phone_number": None,
        "line_1": None,
        "postcode": None,
        "type": "email",
        "status": status,
        "status_description": status_description,
        "provider_response": provider_response,
        "template": {"id": "f33517ff-2a88-4f6e-b855-c550268ce08a", "version": 1, "uri": "https://x/t"},
        "body": "Hello",
        "subject": "Renewal reminder",
        "created_at": "2026-11-20T10:00:00.000000Z",
        "created_by_name": None,
        "sent_at": "2026-11-20T10:00:02.000000Z",
        "completed_at": "2026-11-20T10:00:09.500000Z",
        "scheduled_for": None,
        "postage": None,
    }
    payload.update(extra)
    return payload


@pytest.mark.parametrize(
    ("status", "description", "provider_response", "expected"),
    [
        ("created", "In transit", None, ("pending", None)),
        ("sending", "In transit", None, ("pending", None)),
        ("pending", "In transit", None, ("pending", None)),
        ("pending-virus-check", "In transit", None, ("pending", None)),
        ("sent", "Delivered", None, ("pending", None)),
        ("delivered", "Delivered", None, ("delivered", None)),
        ("permanent-failure", "No such address", None, ("permanent_failure", "invalid_address")),
        (
            "permanent-failure",
            "Blocked",
            "The email address is on our email provider suppression list",
            ("permanent_failure", "suppressed"),
        ),
        (
            "permanent-failure",
            "Blocked",
            "The email address is on the GC Notify suppression list",
            ("permanent_failure", "suppressed"),
        ),
        # The generic label names no cause: the reason is not guessed.
        ("temporary-failure", "Content or inbox issue", None, ("temporary_failure", "unknown")),
        ("temporary-failure", "Content or inbox issue", "", ("temporary_failure", "unknown")),
        ("temporary-failure", "Inbox full", None, ("temporary_failure", "mailbox_full")),
        ("technical-failure", "Tech issue", None, ("technical_failure", "provider_error")),
        ("virus-scan-failed", "Attachment has virus", None, ("technical_failure", "content_rejected")),
        ("validation-failed", "Content or inbox issue", None, ("technical_failure", "provider_error")),
        ("pii-check-failed", "Exceeds Protected A", None, ("technical_failure", "content_rejected")),
    ],
)
def test_status_and_reason_mapping(status, description, provider_response, expected):
    event = to_provider_event(
        notification(status, status_description=description, provider_response=provider_response)
    )
    assert (event.delivery_status, event.failure_reason) == expected
    assert event.raw_status == status
    assert event.provider == "gc_notify"
    assert event.recipient_email == "someone@example.gov"
    assert event.client_reference == "evt-1"


@pytest.mark.parametrize(
    ("subtype", "reason"),
    [
        ("no-email", "invalid_address"),
        ("general", "invalid_address"),
        ("suppressed", "suppressed"),
        ("on-account-suppression-list", "suppressed"),
        ("OnAccountSuppressionList", "suppressed"),
        ("mailbox-full", "mailbox_full"),
        ("content-rejected", "content_rejected"),
        ("message-too-large", "content_rejected"),
        ("attachment-rejected", "content_rejected"),
    ],
)
def test_feedback_subtype_decides_reason_when_present(subtype, reason):
    event = to_provider_event(notification("permanent-failure", feedback_subtype=subtype))
    assert event.failure_reason == reason
    assert subtype in event.detail


def test_final_status_is_dated_by_completion_pending_by_sending():
    final = to_provider_event(notification("delivered"))
    pending = to_provider_event(notification("sending", completed_at=None))
    assert final.event_at == datetime(2026, 11, 20, 10, 0, 9, 500000, tzinfo=UTC)
    assert pending.event_at == datetime(2026, 11, 20, 10, 0, 2, tzinfo=UTC)


def test_unknown_status_is_kept_raw_not_guessed():
    event = to_provider_event(notification("weird-new-status"))
    assert event.raw_status == "weird-new-status"
    assert event.delivery_status is None
    assert event.failure_reason is None


def test_missing_status_is_kept_as_unknown():
    payload = notification("delivered")
    del payload["status"]
    event = to_provider_event(payload)
    assert (event.raw_status, event.delivery_status) == ("missing-status", None)


def test_missing_id_makes_the_notification_malformed():
    payload = notification("delivered")
    del payload["id"]
    with pytest.raises(MalformedNotification, match="without an id"):
        to_provider_event(payload)


def test_detail_joins_description_and_provider_response():
    event = to_provider_event(
        notification("permanent-failure", status_description="Blocked", provider_response="on a list")
    )
    assert event.detail == "Blocked | on a list"


@pytest.mark.parametrize(
    ("subtype", "description", "reason"),
    [
        ("general", "Content or inbox issue", "unknown"),
        ("mailbox-full", "Content or inbox issue", "mailbox_full"),
        ("content-rejected", "Content or inbox issue", "content_rejected"),
        (None, "Blocked", "unknown"),
    ],
)
def test_soft_bounce_never_gets_an_address_reason(subtype, description, reason):
    event = to_provider_event(
        notification("temporary-failure", status_description=description, feedback_subtype=subtype)
    )
    assert (event.delivery_status, event.failure_reason) == ("temporary_failure", reason)


def test_temporary_failure_without_a_cause_is_unknown_in_a_list_page_shape():
    """A list page as GET /v2/notifications returns it: the soft bounce names no cause, the other does."""
    page = {
        "notifications": [
            notification("temporary-failure", status_description="Content or inbox issue"),
            notification(
                "temporary-failure",
                status_description="Content or inbox issue",
                provider_response=None,
                feedback_subtype="mailbox-full",
                id="0b9a7ad2-8d1e-4a52-9a3f-6f3d3f4f1b11",
            ),
        ],
        "links": {"current": "https://api.notification.canada.ca/v2/notifications"},
    }
    reasons = [to_provider_event(n).failure_reason for n in page["notifications"]]
    assert reasons == ["unknown", "mailbox_full"]
