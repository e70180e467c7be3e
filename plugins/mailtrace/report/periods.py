"""Report periods: an ISO week or dates chosen by hand, as local days in the deployment's time zone."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from mailtrace.report.constants import DEFAULT_TIMEZONE, EARLIEST_DAY, KEY_PREFIX, LATEST_DAY, MAX_ADHOC_DAYS


class ReportPeriodError(ValueError):
    """An ad-hoc period the report cannot be built for (unparsable date, bad or too long range)."""


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as error:
        raise ValueError(f"unknown time zone {name[:60]!r} (Variable mailtrace_timezone)") from error


@dataclass(frozen=True)
class ReportPeriod:
    """Local days [first_day, end_day) in `timezone`; the report covers the instants between their midnights.

    Midnight is taken in the deployment's time zone, so a notification at 23:30 local Sunday belongs to
    the week that Sunday ends, whatever its UTC date.
    """

    kind: str  # 'weekly' (an ISO week) or 'adhoc' (dates chosen by hand)
    first_day: date
    end_day: date  # exclusive
    timezone: str

    @property
    def last_day(self) -> date:
        return self.end_day - timedelta(days=1)

    @property
    def start(self) -> datetime:
        return datetime.combine(self.first_day, time(0), tzinfo=_zone(self.timezone)).astimezone(UTC)

    @property
    def end(self) -> datetime:
        return datetime.combine(self.end_day, time(0), tzinfo=_zone(self.timezone)).astimezone(UTC)

    @property
    def label(self) -> str:
        if self.kind == "weekly":
            iso = self.first_day.isocalendar()
            return f"{iso.year}-W{iso.week:02d}"
        return f"{self.first_day.isoformat()} to {self.last_day.isoformat()}"

    @property
    def s3_key(self) -> str:
        """`failed-notifications/2026-W02.csv`; ad hoc `failed-notifications/adhoc/<first>_<last>.csv`."""
        if self.kind == "weekly":
            return f"{KEY_PREFIX}{self.label}.csv"
        return f"{KEY_PREFIX}adhoc/{self.first_day.isoformat()}_{self.last_day.isoformat()}.csv"

    def previous(self) -> ReportPeriod:
        """The period of the same length just before this one (the week before, for a weekly report)."""
        length = self.end_day - self.first_day
        return ReportPeriod(self.kind, self.first_day - length, self.first_day, self.timezone)


def weekly_period(when: datetime, timezone: str = DEFAULT_TIMEZONE) -> ReportPeriod:
    """The last ISO week that ended before `when` (a run's logical date), in local time.

    A run on Monday 06:00 reports the Monday-to-Sunday week that ended six hours earlier; a manual run
    mid-week reports the last complete week, never a partial one.
    """
    if when.tzinfo is None:
        raise ValueError("the run's logical date must be timezone-aware")
    local_day = when.astimezone(_zone(timezone)).date()
    this_monday = local_day - timedelta(days=local_day.weekday())
    return ReportPeriod("weekly", this_monday - timedelta(days=7), this_monday, timezone)


def _parse_day(value: Any, name: str) -> date:
    if isinstance(value, datetime):
        raise ReportPeriodError(f"{name} must be a date without a time, got {value.isoformat()}")
    if isinstance(value, date):
        return value
    if isinstance(value, str):
        try:
            return date.fromisoformat(value.strip())
        except ValueError:
            pass
    raise ReportPeriodError(f"{name} must be a date like 2026-01-31, got {str(value)[:40]!r}")


def adhoc_period(start: Any, end: Any, timezone: str = DEFAULT_TIMEZONE) -> ReportPeriod:
    """The local days `start` to `end`, both included (dates or ISO date strings from the trigger form)."""
    first = _parse_day(start, "start")
    last = _parse_day(end, "end")
    if last < first:
        raise ReportPeriodError(f"end {last.isoformat()} is before start {first.isoformat()}")
    if first < EARLIEST_DAY or last > LATEST_DAY:
        # Beyond these the period's bounds (and the previous period's) overflow Python's dates.
        raise ReportPeriodError(f"dates must lie between {EARLIEST_DAY} and {LATEST_DAY}")
    days = (last - first).days + 1
    if days > MAX_ADHOC_DAYS:
        raise ReportPeriodError(f"period of {days} days is longer than the maximum of {MAX_ADHOC_DAYS}")
    return ReportPeriod("adhoc", first, last + timedelta(days=1), timezone)


def resolve_period(params: dict | None, logical_date: datetime, timezone: str) -> ReportPeriod:
    """Ad-hoc period when the run has `start` and `end` params, else the ISO week just ended."""
    start = (params or {}).get("start")
    end = (params or {}).get("end")
    if not start and not end:
        return weekly_period(logical_date, timezone)
    if not start or not end:
        raise ReportPeriodError("an ad-hoc period needs both start and end (leave both empty for last week)")
    return adhoc_period(start, end, timezone)


def _period_from_manifest(manifest: dict) -> ReportPeriod:
    zone = _zone(manifest["period_timezone"])
    return ReportPeriod(
        manifest["period_kind"],
        manifest["period_start"].astimezone(zone).date(),
        manifest["period_end"].astimezone(zone).date(),
        manifest["period_timezone"],
    )
