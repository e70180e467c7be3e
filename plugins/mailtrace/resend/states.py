"""The words of the resend ledger and outcome CSV, each spelled once.

StrEnum members compare equal to their text, so rows read back from `mailtrace.resend_request` and
the outcome CSV compare with them directly.
"""

from enum import StrEnum


class LedgerStatus(StrEnum):
    """`mailtrace.resend_request.status`."""

    CLAIMED = "claimed"  # decided to send, not sent yet (or the outcome is still being settled)
    SENT = "sent"
    FAILED = "failed"  # refused by the provider for this one email
    UNKNOWN = "unknown"  # may or may not have gone out: a human decides (force_resend)


class DecisionKind(StrEnum):
    """The outcome CSV's `decision` column."""

    SEND = "send"
    WOULD_SEND = "would_send"  # a dry run's send
    SKIP = "skip"
    REJECT = "reject"
    UNKNOWN = "unknown"  # a send whose outcome is unknown, written back by the summary


class Reason(StrEnum):
    """The outcome CSV's `reason` column for the decisions made here (id_list adds its row problems)."""

    ALREADY_SENT = "already_sent"
    CLAIMED_ELSEWHERE = "claimed_elsewhere"
    DRY_RUN = "dry_run"
    DUPLICATE = "duplicate"
    FLAGGED_ADDRESS = "flagged_address"
    INVALID_ADDRESS = "invalid_address"
    MALFORMED_ID = "malformed_id"
    MAX_RECIPIENTS_EXCEEDED = "max_recipients_exceeded"
    NO_CONTACT_EMAIL = "no_contact_email"
    NOT_ON_ALLOW_LIST = "not_on_allow_list"
    SEND_UNKNOWN = "send_unknown"
    UNKNOWN_ID = "unknown_id"
