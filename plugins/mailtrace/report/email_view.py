"""The report emails' content in the examiners' words: counts and newly flagged addresses grouped by what to
do (`mailtrace.report.wording`), each with a link to the Delivery page's filtered view where it has one.

Pure functions from the summary's rows (which carry the contract's codes) to what the templates show; the
codes themselves never reach a template.
"""

from __future__ import annotations

from collections.abc import Iterable
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from mailtrace.report.wording import (
    ACTIONS,
    action_for,
    flag_action_for,
    flag_reason,
    outcome,
    subject_label,
)

# Failures the Delivery page lists with filters of their own (the page's shareable URL parameters, see
# templates/ui/delivery.js STATE_FIELDS): emails the provider never received, and addresses flagged by a
# hard bounce (a flag's date is when its failed email was sent).
_FLAGGED_BY_HARD_BOUNCE = {("permanent_failure", "invalid_address"), ("permanent_failure", "suppressed")}


def page_link(base_url: str | None, **filters: str | None) -> str | None:
    """The Delivery page at `base_url` with these filters in its query (None without a base URL)."""
    if not base_url:
        return None
    parts = urlsplit(base_url)
    query = [*parse_qsl(parts.query), *((name, value) for name, value in filters.items() if value)]
    return urlunsplit(parts._replace(query=urlencode(query)))


def period_link(base_url: str | None, first_day: str, last_day: str) -> str | None:
    """The page's deliverability trend over the report's days."""
    return page_link(base_url, days="custom", since=first_day, until=last_day)


def _count_link(base_url: str | None, status: str, reason: str, first_day: str, last_day: str) -> str | None:
    if status == "not_at_provider":
        return page_link(base_url, nap_since=first_day, nap_until=last_day)
    if (status, reason) in _FLAGGED_BY_HARD_BOUNCE:
        return page_link(base_url, flagged_reason=reason, flagged_since=first_day, flagged_until=last_day)
    return None


def action_groups(
    rows: Iterable[dict],
    *,
    counts: tuple[str, ...] = ("current", "previous"),
    base_url: str | None = None,
    first_day: str = "",
    last_day: str = "",
) -> list[dict]:
    """Rows with `delivery_status`, `failure_reason` and the `counts` columns, grouped by what to do.

    Each group: `heading`, `explanation`, the summed counts and `rows` (`outcome` in plain words, the
    counts, `link` or None), in the order of `wording.ACTIONS`; rows that read the same are merged.
    """
    groups: dict[str, dict] = {}
    for row in rows:
        status, reason = row["delivery_status"], row["failure_reason"] or ""
        action = action_for(status, reason or None)
        group = groups.setdefault(
            action.key,
            {
                "heading": action.heading,
                "explanation": action.explanation,
                "rows": {},
                **dict.fromkeys(counts, 0),
            },
        )
        said = outcome(status, reason or None)
        line = group["rows"].setdefault(
            said,
            {"outcome": said, "link": _count_link(base_url, status, reason, first_day, last_day)}
            | dict.fromkeys(counts, 0),
        )
        for name in counts:
            line[name] += row[name]
            group[name] += row[name]
    ordered = [groups[key] for key in ACTIONS if key in groups]
    for group in ordered:
        group["rows"] = list(group["rows"].values())
        if counts == ("current", "previous"):
            for item in (group, *group["rows"]):
                item["change"] = item["current"] - item["previous"]
    return ordered


def flagged_groups(
    listed: list[dict],
    reason_totals: dict[str, int] | None = None,
    *,
    per_group: int,
    base_url: str | None = None,
) -> list[dict]:
    """Newly flagged addresses grouped by what to do, at most `per_group` listed in each.

    `listed`: rows with `subject_type`, `subject_id`, `email`, `failure_reason`, `flagged_at`,
    `failed_sent_at`, oldest flag first. `reason_totals`: how many are flagged per reason in all (more than
    are listed when there are many); counted from `listed` when not given. Each group: `heading`,
    `explanation`, `total`, `subject_header`, `rows` (with `subject` and `reason` in words), `omitted` and
    `links` to the page's flagged list filtered by each of its reasons.
    """
    if reason_totals is None:
        reason_totals = {}
        for row in listed:
            reason_totals[row["failure_reason"] or ""] = reason_totals.get(row["failure_reason"] or "", 0) + 1
    groups: dict[str, dict] = {}
    for reason, total in sorted(reason_totals.items()):
        action = flag_action_for(reason or None)
        group = groups.setdefault(
            action.key,
            {
                "heading": action.heading,
                "explanation": action.explanation,
                "total": 0,
                "rows": [],
                "links": [],
            },
        )
        group["total"] += total
        link = page_link(base_url, flagged_reason=reason)
        if link and reason:
            group["links"].append({"label": flag_reason(reason), "url": link})
    for row in listed:
        group = groups[flag_action_for(row["failure_reason"] or None).key]
        if len(group["rows"]) < per_group:
            group["rows"].append(row)
    ordered = [groups[key] for key in ACTIONS if key in groups]
    for group in ordered:
        types = {row["subject_type"] for row in group["rows"]}
        single = len(types) == 1
        group["subject_header"] = subject_label(types.pop()) if single else "Subject"
        group["rows"] = [
            {
                "subject": row["subject_id"]
                if single
                else f"{subject_label(row['subject_type'])} {row['subject_id']}",
                "email": row["email"],
                "reason": flag_reason(row["failure_reason"] or None),
                "flagged_at": row["flagged_at"],
                "failed_sent_at": row.get("failed_sent_at", ""),
            }
            for row in group["rows"]
        ]
        group["omitted"] = group["total"] - len(group["rows"])
    return ordered
