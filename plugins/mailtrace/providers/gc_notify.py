"""GC Notify / GOV.UK Notify v2: a retrying client and the mapping of its statuses to the contract.

The official `notifications-python-client` does the HTTP and the JWT; this module adds what a
scheduled pipeline needs on top: retries with exponential backoff and jitter that honour
`Retry-After`, page walking that refuses a `links.next` loop, and pure status mapping.
"""

from __future__ import annotations

import logging
import random
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, urlsplit

from notifications_python_client.errors import APIError, HTTPError, InvalidResponse
from notifications_python_client.notifications import NotificationsAPIClient

from mailtrace.events import ProviderEvent
from mailtrace.intake import PoisonItem, checked_time, storable_event

log = logging.getLogger(__name__)

PROVIDER = "gc_notify"
NOTIFY_CONN_ID = "notify_api"
RETRYABLE_STATUS_CODES = frozenset({429, 500, 502, 503, 504})

_PENDING_STATUSES = frozenset({"created", "sending", "pending", "sent", "pending-virus-check"})
_FINAL_STATUSES = {
    "delivered": "delivered",
    "permanent-failure": "permanent_failure",
    "temporary-failure": "temporary_failure",
    "technical-failure": "technical_failure",
    "virus-scan-failed": "technical_failure",
    "validation-failed": "technical_failure",
    "pii-check-failed": "technical_failure",
}
# Bounce detail: GC Notify's feedback subtypes (SES bounce subtypes, lower-cased and hyphenated).
_SUBTYPE_REASONS = {
    "general": "invalid_address",
    "no-email": "invalid_address",
    "noemail": "invalid_address",
    "suppressed": "suppressed",
    "on-account-suppression-list": "suppressed",
    "onaccountsuppressionlist": "suppressed",
    "mailbox-full": "mailbox_full",
    "mailboxfull": "mailbox_full",
    "content-rejected": "content_rejected",
    "contentrejected": "content_rejected",
    "message-too-large": "content_rejected",
    "messagetoolarge": "content_rejected",
    "attachment-rejected": "content_rejected",
    "attachmentrejected": "content_rejected",
}
# GC Notify's v2 API does not return the bounce subtype; its `status_description` label
# ("No such address", "Blocked", "Content or inbox issue", …) and `provider_response` text carry
# the reason instead. Checked in order; the first keyword found wins.
_DETAIL_KEYWORDS = (
    ("suppression", "suppressed"),
    ("suppressed", "suppressed"),
    ("blocked", "suppressed"),
    ("mailbox full", "mailbox_full"),
    ("inbox full", "mailbox_full"),
    ("no receipt", "no_receipt"),
    ("no such address", "invalid_address"),
    ("does not exist", "invalid_address"),
    ("doesn't exist", "invalid_address"),
    ("unknown user", "invalid_address"),
    ("content rejected", "content_rejected"),
    ("too large", "content_rejected"),
    ("attachment", "content_rejected"),
    ("virus", "content_rejected"),
    ("protected a", "content_rejected"),
)
# What Notify's documentation says each failure status means when nothing more specific is known:
# permanent = the address is wrong; technical = a problem on Notify's side. A temporary failure's
# generic label ("Content or inbox issue") covers a full inbox and an anti-spam filter alike, so with
# no cause named the reason is unknown (CONTRACT.md §2: never guessed).
_DEFAULT_REASONS = {
    "permanent_failure": "invalid_address",
    "temporary_failure": "unknown",
    "technical_failure": "provider_error",
}


class NotifyApiError(RuntimeError):
    """The API refused a request for good, or kept failing after every retry."""


class AmbiguousSendError(NotifyApiError):
    """A send failed in a way that leaves unknown whether Notify accepted it (5xx, timeout).

    Retrying blindly could send the email twice; the caller must look the `reference` up first.
    """


class PaginationLoopError(NotifyApiError):
    """`links.next` pointed back at a page already read."""


class MalformedNotification(PoisonItem):
    """One notification Notify returned that cannot become an observation (set aside, never fatal)."""


def is_notify_id(value: str) -> bool:
    """Notify names every notification by a UUID."""
    try:
        uuid.UUID(value)
    except (ValueError, TypeError, AttributeError):
        return False
    return True


def parse_timestamp(value: str | None) -> datetime | None:
    if not value:
        return None
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


# Reasons that only a permanent failure can carry: a soft bounce with subtype "general" says nothing
# about the address, and GC Notify's "Blocked" label exists only for permanent failures.
_PERMANENT_ONLY_REASONS = frozenset({"invalid_address", "suppressed"})


def _failure_reason(delivery_status: str, notification: dict[str, Any]) -> str:
    subtype = (notification.get("feedback_subtype") or "").strip().lower().replace("_", "-")
    detail = " ".join(
        str(notification.get(field) or "")
        for field in ("feedback_reason", "status_description", "provider_response")
    ).lower()
    candidates = [_SUBTYPE_REASONS.get(subtype)]
    candidates += [reason for keyword, reason in _DETAIL_KEYWORDS if keyword in detail]
    for reason in candidates:
        if reason and (delivery_status == "permanent_failure" or reason not in _PERMANENT_ONLY_REASONS):
            return reason
    return "unknown" if subtype else _DEFAULT_REASONS[delivery_status]


def _detail(notification: dict[str, Any]) -> str | None:
    parts = []
    for field in ("status_description", "provider_response", "feedback_subtype", "feedback_reason"):
        value = notification.get(field)
        if value and str(value) not in parts:
            parts.append(str(value))
    return " | ".join(parts) or None


_TIMESTAMP_FIELDS = ("created_at", "sent_at", "completed_at")


def checked_timestamps(
    notification: dict[str, Any], now: datetime | None = None
) -> dict[str, datetime | None]:
    """The notification's timestamps, each None when absent.

    Raises `MalformedNotification` for one that is not an ISO 8601 time, has no time zone, or lies in
    the future beyond the clock-skew tolerance (`now` defaults to the wall clock: Notify cannot have
    stamped a notification later than the real present).
    """
    now = now or datetime.now(UTC)
    checked: dict[str, datetime | None] = {}
    for name in _TIMESTAMP_FIELDS:
        value = notification.get(name)
        if value is None or value == "":
            checked[name] = None
            continue
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
            checked[name] = checked_time(parsed, now, name)
        except PoisonItem as error:
            raise MalformedNotification(str(error)) from None
        except (AttributeError, TypeError, ValueError):
            raise MalformedNotification(f"{name} is not an ISO 8601 time: {str(value)[:80]!r}") from None
    return checked


def normalised_reference(notification_id: Any) -> str:
    """Notify's id as stored: trimmed, and lower-cased when it is a UUID (UUIDs ignore case)."""
    reference = str(notification_id).strip()
    return reference.lower() if is_notify_id(reference) else reference


def to_provider_event(
    notification: dict[str, Any], *, source: str = "notify_list", now: datetime | None = None
) -> ProviderEvent:
    """Map one Notify v2 notification JSON to the normalised, storable ProviderEvent.

    Unknown status values map to delivery_status None (kept raw, reported, never guessed). A
    notification without a status is kept as raw status `missing-status` for the same reason.
    Raises `MalformedNotification` for one that cannot be an observation (no id, a bad timestamp).
    """
    if not isinstance(notification, dict):
        raise MalformedNotification(f"Notify returned a {type(notification).__name__}, not a notification")
    notification_id = notification.get("id")
    if notification_id is None or not str(notification_id).strip():
        raise MalformedNotification(
            f"Notify returned a notification without an id: keys {sorted(notification)}"
        )
    timestamps = checked_timestamps(notification, now)
    raw_status = notification.get("status") or "missing-status"
    if raw_status in _PENDING_STATUSES:
        delivery_status = "pending"
    else:
        delivery_status = _FINAL_STATUSES.get(raw_status)
    failure_reason = None
    if delivery_status in _DEFAULT_REASONS:
        failure_reason = _failure_reason(delivery_status, notification)
    event_at = (
        (timestamps["completed_at"] if delivery_status not in (None, "pending") else None)
        or timestamps["sent_at"]
        or timestamps["created_at"]
    )
    if event_at is None:
        raise MalformedNotification("Notify notification has no timestamp at all")
    return storable_event(
        ProviderEvent(
            provider=PROVIDER,
            provider_reference=normalised_reference(notification_id),
            recipient_email=(notification.get("email_address") or "").strip().lower(),
            client_reference=notification.get("reference"),
            raw_status=raw_status,
            delivery_status=delivery_status,
            failure_reason=failure_reason,
            detail=_detail(notification),
            event_at=event_at,
            source=source,
        )
    )


def _older_than_from_next_link(links: dict[str, Any] | None) -> str | None:
    next_url = (links or {}).get("next")
    if not next_url:
        return None
    values = parse_qs(urlsplit(next_url).query).get("older_than")
    if not values:
        raise PaginationLoopError(f"links.next points back at the first page: {next_url}")
    return values[0]


def _describe(error: APIError) -> str:
    """What went wrong in words: Notify's status and message, or why no answer came at all.

    The official client reports a timeout or a dropped connection as a 503 "Request failed", which
    would read as if Notify had answered; name the real cause instead.
    """
    if getattr(error, "response", None) is None:
        cause = error.__cause__
        detail = f"{type(cause).__name__}: {cause}"[:300] if cause is not None else "no response"
        return f"no answer from Notify ({detail})"
    return f"Notify answered {error.status_code}: {error.message}"


class NotifyClient:
    """The official client plus retries, backoff with jitter and `Retry-After`."""

    def __init__(
        self,
        api_key: str,
        base_url: str,
        *,
        timeout: float = 30,
        max_attempts: int = 6,
        backoff_base: float = 1.0,
        backoff_max: float = 60.0,
        sleep: Callable[[float], None] = time.sleep,
    ):
        self._client = NotificationsAPIClient(api_key, base_url=base_url.rstrip("/"), timeout=timeout)
        self.max_attempts = max_attempts
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self._sleep = sleep
        self.retries = 0

    @classmethod
    def from_connection(cls, conn_id: str = NOTIFY_CONN_ID, **kwargs: Any) -> NotifyClient:
        """Build from an Airflow connection: host = API base URL, password = API key."""
        from airflow.sdk import BaseHook

        conn = BaseHook.get_connection(conn_id)
        if not conn.host or not conn.password:
            raise ValueError(f"connection {conn_id} needs host (API base URL) and password (API key)")
        base_url = conn.host if "://" in conn.host else f"https://{conn.host}"
        if conn.port:
            base_url = f"{base_url}:{conn.port}"
        return cls(conn.password, base_url, **kwargs)

    def _delay(self, attempt: int, error: APIError) -> float:
        response = getattr(error, "response", None)
        retry_after = response.headers.get("Retry-After") if response is not None else None
        if retry_after:
            try:
                return min(self.backoff_max, max(0.0, float(retry_after)))
            except ValueError:
                pass  # an HTTP-date: fall back to our own backoff
        return min(self.backoff_max, self.backoff_base * 2**attempt) * random.uniform(0.5, 1.0)

    def _call(
        self,
        description: str,
        request: Callable[[], Any],
        *,
        retry_statuses: frozenset[int] = RETRYABLE_STATUS_CODES,
        retry_invalid_json: bool = True,
    ) -> Any:
        for attempt in range(self.max_attempts):
            try:
                return request()
            except (HTTPError, InvalidResponse) as error:
                status = error.status_code
                if isinstance(error, InvalidResponse):
                    retryable = retry_invalid_json
                else:
                    retryable = status in retry_statuses
                if not retryable:
                    raise NotifyApiError(f"{description}: {_describe(error)}") from error
                if attempt + 1 == self.max_attempts:
                    raise NotifyApiError(
                        f"{description}: still failing after {self.max_attempts} attempts "
                        f"(last: {_describe(error)})"
                    ) from error
                delay = self._delay(attempt, error)
                self.retries += 1
                log.warning("%s: %s, retry %d in %.1fs", description, _describe(error), attempt + 1, delay)
                self._sleep(delay)
        raise AssertionError("unreachable")

    def get_notification(self, notification_id: str) -> dict[str, Any] | None:
        """The notification, or None when Notify has no record of it (404).

        An id that is not a UUID cannot name a Notify notification: None as well, without asking
        (Notify would answer 400, and one such id logged by the application must not fail every
        look-up run after it).
        """
        if not is_notify_id(notification_id):
            log.warning("not a Notify notification id (no UUID): %r; taken as not at Notify", notification_id)
            return None
        try:
            return self._call(
                f"GET notification {notification_id}",
                lambda: self._client.get_notification_by_id(notification_id),
            )
        except NotifyApiError as error:
            cause = error.__cause__
            if isinstance(cause, HTTPError) and cause.status_code == 404:
                return None
            raise

    def find_by_reference(self, reference: str) -> list[dict[str, Any]]:
        """Notifications sent with this client `reference` (first page is enough: references are unique)."""
        page = self._call(
            "GET notifications by reference",
            lambda: self._client.get_all_notifications(template_type="email", reference=reference),
        )
        return page.get("notifications", [])

    def iter_pages(self, *, older_than: str | None = None) -> Iterator[list[dict[str, Any]]]:
        """Yield pages of email notifications newest first, following `links.next`.

        Stops when a page has no `links.next`. A `next` link that points at a page already read
        would make the walk endless, so it is an error.
        """
        seen_cursors = {older_than}
        while True:
            cursor = older_than
            page = self._call(
                f"GET notifications page older_than={cursor}",
                lambda cursor=cursor: self._client.get_all_notifications(
                    template_type="email", older_than=cursor
                ),
            )
            notifications = page.get("notifications")
            if notifications is None:
                raise NotifyApiError("Notify list response has no 'notifications' field")
            yield notifications
            older_than = _older_than_from_next_link(page.get("links"))
            if older_than is None:
                return
            if older_than in seen_cursors:
                raise PaginationLoopError(f"links.next loops back to older_than={older_than}")
            seen_cursors.add(older_than)

    def send_email(
        self,
        email_address: str,
        template_id: str,
        personalisation: dict[str, Any],
        reference: str,
    ) -> dict[str, Any]:
        """POST one email. Retries only when Notify certainly did not accept it (429).

        A 5xx or a timeout is ambiguous (the email may have been accepted), so it raises
        AmbiguousSendError instead of retrying.
        """
        try:
            return self._call(
                "POST email",
                lambda: self._client.send_email_notification(
                    email_address=email_address,
                    template_id=template_id,
                    personalisation=personalisation,
                    reference=reference,
                ),
                retry_statuses=frozenset({429}),
                retry_invalid_json=False,
            )
        except NotifyApiError as error:
            cause = error.__cause__
            if isinstance(cause, InvalidResponse) or (
                isinstance(cause, HTTPError) and cause.status_code >= 500
            ):
                raise AmbiguousSendError(str(error)) from cause
            raise
