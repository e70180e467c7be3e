"""What the email says: the period's failures by status and reason, and the addresses newly flagged."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg

from mailtrace.events import FAILED_STATUSES
from mailtrace.paths import read_sql
from mailtrace.report.constants import FLAGGED_LISTED_PER_GROUP
from mailtrace.report.periods import ReportPeriod, _zone


def _change_rows(counts: dict[Any, list[int]], names: tuple[str, ...]) -> list[dict]:
    rows = []
    for key, (current, previous) in counts.items():
        values = key if isinstance(key, tuple) else (key,)
        row = dict(zip(names, values, strict=True))
        row.update(current=current, previous=previous, change=current - previous)
        rows.append(row)
    # Biggest problems first; names break ties so the email reads the same on every run.
    rows.sort(key=lambda r: (-r["current"], -r["previous"], *(str(r[n]) for n in names)))
    return rows


def summarise_failures(conn: psycopg.Connection, period: ReportPeriod) -> dict:
    """Failures of the period and of the one before, by notification type and by status and reason.

    The previous period is counted as the warehouse knows it now, so late receipts are included.
    """
    previous = period.previous()
    params = {
        "previous_start": previous.start,
        "period_start": period.start,
        "period_end": period.end,
        "failed_statuses": list(FAILED_STATUSES),
    }
    totals = {"current": 0, "previous": 0}
    by_type: dict[str, list[int]] = {}
    by_reason: dict[tuple[str, str], list[int]] = {}
    for which, notification_type, status, reason, failures in conn.execute(
        read_sql("report/failed_summary.sql"), params
    ):
        slot = 0 if which == "current" else 1
        totals[which] += failures
        by_type.setdefault(notification_type, [0, 0])[slot] += failures
        by_reason.setdefault((status, reason or ""), [0, 0])[slot] += failures
    return {
        "total": totals["current"],
        "previous_total": totals["previous"],
        "change": totals["current"] - totals["previous"],
        "previous_label": previous.label,
        "by_type": _change_rows(by_type, ("notification_type",)),
        "by_reason": _change_rows(by_reason, ("delivery_status", "failure_reason")),
    }


@dataclass(frozen=True)
class NewlyFlagged:
    """Flags set in a report's window: those still in effect (listed, up to a limit) and those cleared."""

    listed: list[dict]
    reason_totals: dict[str, int]  # still flagged now, per failure reason ("" for none)
    total: int  # still flagged now
    cleared: int  # set in the window, cleared since (contact changed, a later email delivered)


def newly_flagged(
    conn: psycopg.Connection, flags_since: datetime, flags_until: datetime, timezone: str
) -> NewlyFlagged:
    """Flags set (recorded) in [flags_since, flags_until) and still in effect, oldest first.

    Lists at most FLAGGED_LISTED_PER_GROUP per failure reason (the email shows that many per heading,
    and each heading gathers one or more reasons); `flagged_at` is when the flag was set, `failed_sent_at`
    when the failed email that caused it was sent (it may be in an earlier week).
    """
    rows = conn.execute(
        read_sql("report/newly_flagged.sql"),
        {"flags_since": flags_since, "flags_until": flags_until, "max_rows": FLAGGED_LISTED_PER_GROUP},
    ).fetchall()
    zone = _zone(timezone)

    def local_minute(instant: datetime) -> str:
        return instant.astimezone(zone).strftime("%Y-%m-%d %H:%M")

    listed = []
    reason_totals: dict[str, int] = {}
    for row in rows:
        subject_type, subject_id, email, failure_reason, happened_at, recorded_at, reason_total = row[2:]
        if subject_type is None:
            continue  # nothing to list: the row carries the counts alone
        reason_totals[failure_reason or ""] = reason_total
        listed.append(
            {
                "subject_type": subject_type,
                "subject_id": subject_id,
                "email": email,
                "failure_reason": failure_reason or "",
                "flagged_at": local_minute(recorded_at),
                "failed_sent_at": local_minute(happened_at),
            }
        )
    total, cleared = rows[0][:2]
    return NewlyFlagged(listed, reason_totals, total, cleared)


def flags_window(
    conn: psycopg.Connection, period: ReportPeriod, cutoff: datetime
) -> tuple[datetime, datetime]:
    """The [since, until) of flag_history.recorded_at a new report's email lists as newly flagged.

    Weekly: from where the previous weekly report's window ended (the first weekly report: from the
    period's start) to `cutoff` (see sql/report_flags_cutoff.sql), never into a later weekly report's
    window. Ad hoc: the flags set within the period, up to `cutoff`. Call under MANIFEST_LOCK.
    """
    if period.kind != "weekly":
        since = period.start
        return since, max(since, min(cutoff, period.end))
    previous_until, next_since = conn.execute(
        read_sql("report/flags_window.sql"), {"period_start": period.start}
    ).fetchone()
    since = previous_until or period.start
    until = min(cutoff, next_since) if next_since is not None else cutoff
    return since, max(since, until)


def _manifest_flags_window(manifest: dict) -> tuple[datetime, datetime]:
    """A manifest row's window; a row build_report did not write (no window) is [period_start, built_at)."""
    since = manifest["flags_since"] or manifest["period_start"]
    until = manifest["flags_until"] or max(since, manifest["built_at"])
    return since, until
