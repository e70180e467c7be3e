"""Alerts for data engineers: delivery degrading, emails missing at the provider, receipts stopping."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import psycopg

from mailtrace.failure_alert import AlertAlreadySent
from mailtrace.paths import read_sql

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Thresholds:
    delivery_rate_floor: float = 0.90
    not_at_provider_max: int = 10
    # Below this many verdicts a rate says little; the rate check is skipped.
    min_sample: int = 20
    grace: timedelta = timedelta(hours=2)
    window: timedelta = timedelta(days=1)

    def __post_init__(self):
        if not 0 <= self.delivery_rate_floor <= 1:
            raise ValueError("delivery_rate_floor must be between 0 and 1")
        if self.not_at_provider_max < 0 or self.min_sample < 0:
            raise ValueError("thresholds must not be negative")
        # A negative grace or an empty window would measure nothing and so never alert.
        if self.grace < timedelta(0) or self.window <= timedelta(0):
            raise ValueError("grace must not be negative and window must be positive")


class DeliverabilityAlert(AlertAlreadySent):
    """Delivery has degraded; the message lists every breached threshold (already emailed)."""


def check_deliverability(
    conn: psycopg.Connection, thresholds: Thresholds, *, provider: str, now: datetime | None = None
) -> dict:
    """Measure `provider`'s last `window` of sends older than `grace` and list the thresholds breached."""
    now = now or datetime.now(UTC)
    window_end = now - thresholds.grace
    window_start = window_end - thresholds.window
    row = conn.execute(
        read_sql("deliverability_check.sql"),
        {"provider": provider, "window_start": window_start, "window_end": window_end},
    ).fetchone()
    conn.commit()
    sent, delivered, final, not_at_provider, without_receipt, sent_ok = row
    rate = delivered / final if final else None
    problems = []
    if rate is not None and final >= thresholds.min_sample and rate < thresholds.delivery_rate_floor:
        problems.append(
            f"delivery rate {rate:.1%} is below the floor {thresholds.delivery_rate_floor:.1%} "
            f"({delivered} delivered of {final} with a verdict)"
        )
    if not_at_provider > thresholds.not_at_provider_max:
        problems.append(
            f"{not_at_provider} emails the app marked SENT are unknown to the provider "
            f"(threshold {thresholds.not_at_provider_max})"
        )
    if sent_ok and without_receipt == sent_ok:
        problems.append(
            f"no receipts: none of the {sent_ok} emails sent through {provider} between "
            f"{window_start:%Y-%m-%d %H:%M} and {window_end:%Y-%m-%d %H:%M} UTC has any provider status "
            "— is extraction running?"
        )
    result = {
        "provider": provider,
        "window_start": window_start.isoformat(),
        "window_end": window_end.isoformat(),
        "sent": sent,
        "delivered": delivered,
        "with_verdict": final,
        "delivery_rate": rate,
        "not_at_provider": not_at_provider,
        "without_receipt": without_receipt,
        "problems": problems,
    }
    log.info("deliverability check: %s", result)
    return result


def alert_text(result: dict) -> str:
    lines = [f"mailtrace deliverability check failed for {result['provider']}:", ""]
    lines += [f"- {problem}" for problem in result["problems"]]
    lines += [
        "",
        f"Window: {result['window_start']} to {result['window_end']} (sends older than the grace period).",
    ]
    lines += ["Query mailtrace.deliverability_daily for the breakdown by type and provider."]
    return "\n".join(lines)
