"""The normalised provider observation every provider module produces and the loader stores."""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import datetime

DELIVERY_STATUSES = (
    "pending",
    "delivered",
    "permanent_failure",
    "temporary_failure",
    "technical_failure",
    "complaint",
    "not_at_provider",
    "send_failed",
)
FAILURE_REASONS = (
    "invalid_address",
    "suppressed",
    "mailbox_full",
    "content_rejected",
    "no_receipt",
    "provider_error",
    "unknown",
)
FINAL_STATUSES = frozenset(DELIVERY_STATUSES) - {"pending"}
# Every delivery status that means the person did not get the email (the weekly report's rows).
FAILED_STATUSES = tuple(status for status in DELIVERY_STATUSES if status not in ("pending", "delivered"))


@dataclass(frozen=True)
class ProviderEvent:
    """One status a provider reported for one recipient of one message (a row of provider_event).

    `delivery_status` is None when `raw_status` is not a value we know: the row is still stored,
    so nothing is lost, and reconcile leaves it out of the verdict until someone maps it.
    """

    provider: str
    provider_reference: str
    raw_status: str
    delivery_status: str | None
    event_at: datetime
    source: str
    recipient_email: str = ""
    client_reference: str | None = None
    failure_reason: str | None = None
    detail: str | None = None

    def __post_init__(self):
        if self.delivery_status is not None and self.delivery_status not in DELIVERY_STATUSES:
            raise ValueError(f"not a contract delivery_status: {self.delivery_status!r}")
        if self.failure_reason is not None and self.failure_reason not in FAILURE_REASONS:
            raise ValueError(f"not a contract failure_reason: {self.failure_reason!r}")
        if self.event_at.tzinfo is None:
            raise ValueError("event_at must be timezone-aware")

    def copy_row(self) -> tuple:
        """The field values in PROVIDER_EVENT_COLUMNS order, for COPY (faster than dataclasses.astuple)."""
        return (
            self.provider,
            self.provider_reference,
            self.raw_status,
            self.delivery_status,
            self.event_at,
            self.source,
            self.recipient_email,
            self.client_reference,
            self.failure_reason,
            self.detail,
        )


PROVIDER_EVENT_COLUMNS = tuple(f.name for f in fields(ProviderEvent))
# Their types in provider_event, in the same order: what a binary COPY of copy_row() sends.
PROVIDER_EVENT_COPY_TYPES = tuple(
    "timestamptz" if name == "event_at" else "text" for name in PROVIDER_EVENT_COLUMNS
)
