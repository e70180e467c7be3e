"""What GC Notify reports for an email, and which recipient address produces which fate.

The texts follow cds-snc/notification-api:
- `status_description` is the notification's `formatted_status` (the same labels GC Notify's admin
  shows): "In transit", "Delivered", "No such address", "Blocked" (a permanent failure whose bounce
  subtype is a suppression list), "Content or inbox issue", "Tech issue".
- `provider_response` is set only for the bounces GC Notify explains in words (suppression lists,
  attachments); plain hard and soft bounces leave it null.
- the SES bounce subtype is kept as `feedback_subtype` (GC Notify stores it on the notification and
  uses it for "Blocked"); the v2 API does not return it, so neither does the simulator.
"""

from __future__ import annotations

from dataclasses import dataclass

# Every status GC Notify accepts in GET /v2/notifications?status=...; "failed" is an alias for the
# failure statuses (Notification.substitute_status).
PENDING_STATUSES = ("created", "sending", "pending", "pending-virus-check")
FINAL_STATUSES = (
    "delivered",
    "sent",
    "permanent-failure",
    "temporary-failure",
    "technical-failure",
    "virus-scan-failed",
    "validation-failed",
    "pii-check-failed",
)
FAILED_ALIAS = "failed"
FAILURE_STATUSES = (
    "permanent-failure",
    "temporary-failure",
    "technical-failure",
    "virus-scan-failed",
    "validation-failed",
    "pii-check-failed",
)
QUERYABLE_STATUSES = (*PENDING_STATUSES, *FINAL_STATUSES, FAILED_ALIAS)

PROVIDER_SUPPRESSION_TEXT = "The email address is on our email provider suppression list"
ACCOUNT_SUPPRESSION_TEXT = "The email address is on the GC Notify suppression list"

_SUPPRESSION_SUBTYPES = frozenset({"suppressed", "on-account-suppression-list"})
_EMAIL_STATUS_LABELS = {
    "created": "In transit",
    "sending": "In transit",
    "pending": "In transit",
    "pending-virus-check": "In transit",
    "delivered": "Delivered",
    "sent": "Delivered",
    "permanent-failure": "No such address",
    "temporary-failure": "Content or inbox issue",
    "technical-failure": "Tech issue",
    "virus-scan-failed": "Attachment has virus",
    "validation-failed": "Content or inbox issue",
    "pii-check-failed": "Exceeds Protected A",
}


def status_description(status: str, feedback_subtype: str | None) -> str:
    """GC Notify's human label for an email status (unknown statuses are shown as themselves)."""
    if status == "permanent-failure" and feedback_subtype in _SUPPRESSION_SUBTYPES:
        return "Blocked"
    return _EMAIL_STATUS_LABELS.get(status, status)


def expand_status_filter(values: list[str]) -> list[str]:
    """The statuses a ?status= filter selects, with "failed" expanded like GC Notify does."""
    expanded: list[str] = []
    for value in values:
        for status in FAILURE_STATUSES if value == FAILED_ALIAS else (value,):
            if status not in expanded:
                expanded.append(status)
    return expanded


@dataclass(frozen=True)
class Outcome:
    """The fate of a POSTed email. `status` None means the notification is never stored ("lost")."""

    status: str | None
    provider_response: str | None = None
    feedback_subtype: str | None = None
    settles: bool = True


DELIVERED = Outcome("delivered")
LOST = Outcome(None)

# Keyed by the recipient's local part without any "+tag": bounce+anything@example.gov bounces.
OUTCOMES: dict[str, Outcome] = {
    "delivered": DELIVERED,
    "bounce": Outcome("permanent-failure", feedback_subtype="no-email"),
    "suppressed": Outcome(
        "permanent-failure", provider_response=PROVIDER_SUPPRESSION_TEXT, feedback_subtype="suppressed"
    ),
    "account-suppressed": Outcome(
        "permanent-failure",
        provider_response=ACCOUNT_SUPPRESSION_TEXT,
        feedback_subtype="on-account-suppression-list",
    ),
    "mailbox-full": Outcome("temporary-failure", feedback_subtype="mailbox-full"),
    # SES reports a content rejection as a Transient bounce, which GC Notify records as a
    # temporary failure with subtype content-rejected.
    "content-rejected": Outcome("temporary-failure", feedback_subtype="content-rejected"),
    "tech-fail": Outcome("technical-failure"),
    "stuck": Outcome("sending", settles=False),
    "lost": LOST,
}


def outcome_for(email_address: str) -> Outcome:
    local_part = email_address.rsplit("@", 1)[0].split("+", 1)[0].lower()
    return OUTCOMES.get(local_part, DELIVERED)
