"""Read-only queries behind the Delivery page (SQL in `sql/ui/`, values bound as parameters).

Every function takes an open psycopg connection and returns plain dicts/lists ready for JSON;
addresses are returned as stored, masking is the caller's job (`mailtrace.ui.masking`).
"""

from __future__ import annotations

from collections import defaultdict
from datetime import date, datetime, time, timedelta
from functools import cache
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
from psycopg.rows import dict_row

from mailtrace.events import FAILED_STATUSES
from mailtrace.paths import read_sql

# Verdicts counted as failures on the chart (the report's failed statuses), most severe first.
_MOST_SEVERE_FIRST = ("permanent_failure", "complaint", "technical_failure", "temporary_failure")
FAILURE_STATUSES = _MOST_SEVERE_FIRST + tuple(s for s in FAILED_STATUSES if s not in _MOST_SEVERE_FIRST)
TIMELINE_EVENT_LIMIT = 50
SEARCH_LIMIT = 200


@cache
def _sql(name: str) -> str:
    return read_sql(f"ui/{name}.sql")


def query_rows(conn: psycopg.Connection, name: str, params: dict[str, Any]) -> list[dict[str, Any]]:
    """The rows of `sql/ui/<name>.sql` as dicts."""
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(_sql(name), params)
        return cur.fetchall()


def _rate(delivered: int, decided: int) -> float | None:
    """delivered / events with a final verdict, as deliverability_daily computes it (4 places)."""
    return round(delivered / decided, 4) if decided else None


# Reputation limits providers enforce, drawn on the chart. Amazon SES reviews an account whose bounce rate
# reaches 5 % or whose complaint rate reaches 0.1 %; GC Notify publishes no per-service limit.
REPUTATION_THRESHOLDS = {"ses": {"bounce_rate": 0.05, "complaint_rate": 0.001}}
PROVIDERS = ("gc_notify", "ses")


def _blank() -> dict[str, Any]:
    return {
        "sent": 0,
        "delivered": 0,
        "pending": 0,
        "failures_by_status": defaultdict(int),
        "failures_by_reason": defaultdict(int),
    }


def _finish(bucket: dict[str, Any]) -> dict[str, Any]:
    failed = sum(bucket["failures_by_status"].values())
    # Bounce and complaint rates as providers compute them: over what was handed to the provider.
    handed = bucket["sent"] - bucket["failures_by_status"].get("send_failed", 0)
    bounced = bucket["failures_by_status"].get("permanent_failure", 0)
    complained = bucket["failures_by_status"].get("complaint", 0)
    return {
        "sent": bucket["sent"],
        "delivered": bucket["delivered"],
        "pending": bucket["pending"],
        "failed": failed,
        "delivery_rate": _rate(bucket["delivered"], bucket["sent"] - bucket["pending"]),
        "bounced": bounced,
        "complained": complained,
        "bounce_rate": _rate(bounced, handed),
        "complaint_rate": round(complained / handed, 6) if handed else None,
        "failures_by_status": dict(sorted(bucket["failures_by_status"].items())),
        "failures_by_reason": dict(sorted(bucket["failures_by_reason"].items())),
    }


def trend(
    conn: psycopg.Connection,
    *,
    first: date,
    last: date,
    timezone: str = "UTC",
    provider: str | None = None,
) -> dict[str, Any]:
    """Daily delivery, bounce and complaint rates and failures for the days `first`..`last` (inclusive)
    in `timezone`, for one provider or all.

    Returns `days` (one entry per calendar day, empty days included, oldest first) with sent, delivered,
    pending, the rates and failures by verdict and by reason; `providers`, the same days per provider (so
    one feed going silent shows); `by_type`, the window's totals per notification type; and the providers'
    reputation `thresholds`.
    """
    zone = ZoneInfo(timezone)
    since = datetime.combine(first, time.min, tzinfo=zone)
    until = datetime.combine(last + timedelta(days=1), time.min, tzinfo=zone)
    rows = query_rows(
        conn, "trend", {"since": since, "until": until, "timezone": timezone, "provider": provider}
    )
    count = (last - first).days + 1
    calendar = [first + timedelta(days=i) for i in range(count)]
    per_day: dict[date, dict[str, Any]] = {day: _blank() for day in calendar}
    shown_providers = [provider] if provider else list(PROVIDERS)
    shown_providers += sorted({row["provider"] for row in rows} - set(shown_providers))
    per_provider = {name: {day: _blank() for day in calendar} for name in shown_providers}
    per_type: dict[str, dict[str, Any]] = defaultdict(_blank)
    for row in rows:
        status, n = row["delivery_status"], row["n"]
        buckets = (
            per_day[row["day"]],
            per_provider[row["provider"]][row["day"]],
            per_type[row["notification_type"]],
        )
        for bucket in buckets:
            bucket["sent"] += n
            if status == "delivered":
                bucket["delivered"] += n
            elif status == "pending":
                bucket["pending"] += n
            elif status in FAILURE_STATUSES:
                bucket["failures_by_status"][status] += n
                bucket["failures_by_reason"][row["failure_reason"] or "unknown"] += n

    return {
        "since": first.isoformat(),
        "until": last.isoformat(),
        "timezone": timezone,
        "provider": provider,
        "days": [{"day": day.isoformat(), **_finish(bucket)} for day, bucket in per_day.items()],
        "providers": [
            {
                "provider": name,
                "thresholds": REPUTATION_THRESHOLDS.get(name),
                "days": [{"day": day.isoformat(), **_finish(bucket)} for day, bucket in days.items()],
            }
            for name, days in per_provider.items()
        ],
        "by_type": [
            {"notification_type": name, **_finish(bucket)} for name, bucket in sorted(per_type.items())
        ],
        "thresholds": REPUTATION_THRESHOLDS,
    }


def _listing(rows: list[dict[str, Any]]) -> dict[str, Any]:
    total = rows[0]["total"] if rows else 0
    return {"total": total, "rows": [{k: v for k, v in row.items() if k != "total"} for row in rows]}


def flagged(conn: psycopg.Connection, *, limit: int, offset: int = 0, **filters: Any) -> dict[str, Any]:
    """Flagged subjects, newest first; filters: reason, subject_type, since, until (flagged_at)."""
    params = {"reason": None, "subject_type": None, "since": None, "until": None, **filters}
    return _listing(query_rows(conn, "flagged", {**params, "limit": limit, "offset": offset}))


def not_at_provider(
    conn: psycopg.Connection, *, since: datetime, limit: int, offset: int = 0, **filters: Any
) -> dict[str, Any]:
    """Sends unknown to the provider, newest first; filters: until, notification_type, provider."""
    params = {"until": None, "notification_type": None, "provider": None, **filters}
    return _listing(
        query_rows(conn, "not_at_provider", {**params, "since": since, "limit": limit, "offset": offset})
    )


def pending_too_long(
    conn: psycopg.Connection, *, older_than: datetime, limit: int, offset: int = 0, **filters: Any
) -> dict[str, Any]:
    """Sends without a final verdict, oldest first; filters: since, notification_type, provider, status."""
    params = {"since": None, "notification_type": None, "provider": None, "status": None, **filters}
    return _listing(
        query_rows(conn, "pending", {**params, "older_than": older_than, "limit": limit, "offset": offset})
    )


def search(conn: psycopg.Connection, text: str, *, limit: int = SEARCH_LIMIT) -> list[dict[str, Any]]:
    """Subjects found by subject id, email address or provider reference (see sql/ui/search.sql)."""
    return query_rows(conn, "search", {"q": text, "limit": limit})


def reports(conn: psycopg.Connection, *, kinds: list[str], limit: int) -> list[dict[str, Any]]:
    return query_rows(conn, "reports", {"kinds": kinds, "limit": limit})


def report_object(conn: psycopg.Connection, report_id: int) -> dict[str, Any] | None:
    rows = query_rows(conn, "report_object", {"report_id": report_id})
    return rows[0] if rows else None


def subject_timeline(
    conn: psycopg.Connection,
    subject_id: str,
    *,
    subject_type: str | None = None,
    limit: int = TIMELINE_EVENT_LIMIT,
    offset: int = 0,
) -> dict[str, Any] | None:
    """Everything about one subject: address of record, its notifications newest first (`limit` of them
    after skipping `offset`) each with its provider events in order, and the flag history. None when the
    warehouse knows nothing of the subject."""
    if subject_type:
        types = [subject_type]
    else:
        types = [row["subject_type"] for row in query_rows(conn, "subject_types", {"subject_id": subject_id})]
    params = {"subject_id": subject_id, "subject_types": types}
    contacts = query_rows(conn, "subject_contacts", params)
    events = query_rows(conn, "subject_events", {**params, "limit": limit, "offset": offset})
    history = query_rows(conn, "subject_flag_history", params)
    if not (contacts or events or history):
        return None
    truncated = len(events) > limit
    events = events[:limit]
    by_event: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in query_rows(conn, "subject_provider_events", {"event_ids": [e["event_id"] for e in events]}):
        by_event[row.pop("event_id")].append(row)
    return {
        "subject_id": subject_id,
        "subject_types": sorted({*types, *(c["subject_type"] for c in contacts)}),
        "contacts": contacts,
        "events": [{**event, "provider_events": by_event.get(event["event_id"], [])} for event in events],
        "events_truncated": truncated,
        "offset": offset,
        "flag_history": history,
    }
