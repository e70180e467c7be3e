"""What a resend run did, counted in one place for its `summarize` task and the Delivery page.

Two sources, one query (`sql/resend/run_counts.sql`):

* the outcome CSV's rows per decision and reason (`mailtrace.resend_outcome_count`, written with the CSV by
  `record_decisions`): what the plan decided for every input row;
* the ledger (`mailtrace.resend_request`): what became of the emails the run set out to send: `sent`,
  `failed` (refused for that address), `claimed` (unresolved: not sent yet, or its outcome still being
  settled) and `unknown` (may or may not have gone out; a human decides).

`fold` turns the query's rows into the same dictionary for both callers, so the page and the task's
return value cannot disagree.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import Any

import psycopg

from mailtrace.paths import read_sql
from mailtrace.resend.states import DecisionKind, LedgerStatus

DECISIONS = (
    DecisionKind.SEND,
    DecisionKind.WOULD_SEND,
    DecisionKind.SKIP,
    DecisionKind.REJECT,
    DecisionKind.UNKNOWN,
)
LEDGER_STATUSES = (LedgerStatus.SENT, LedgerStatus.FAILED, LedgerStatus.CLAIMED, LedgerStatus.UNKNOWN)


def empty_counts() -> dict[str, Any]:
    """A run with nothing recorded: every decision and ledger status at 0."""
    return {
        "decisions": {str(decision): 0 for decision in DECISIONS},
        # {decision: {reason: rows}}; empty for a run planned before reasons were recorded.
        "reasons": {},
        "reasons_recorded": False,
        **{str(status): 0 for status in LEDGER_STATUSES},
    }


def fold(rows: Iterable[tuple[str, str, str, str | None, int]]) -> dict[str, dict[str, Any]]:
    """Rows (run_id, kind, name, reason, n) of `run_counts.sql` as counts per run (see `empty_counts`).

    `kind` is `decision` (name = decision, reason = the CSV's reason, or None when only totals are known)
    or `ledger` (name = the ledger status).
    """
    runs: dict[str, dict[str, Any]] = {}
    for run_id, kind, name, reason, n in rows:
        counts = runs.setdefault(run_id, empty_counts())
        if kind == "decision":
            counts["decisions"][name] = counts["decisions"].get(name, 0) + n
            if reason is not None:
                counts["reasons_recorded"] = True
                by_reason = counts["reasons"].setdefault(name, {})
                by_reason[reason] = by_reason.get(reason, 0) + n
        elif kind == "ledger":
            counts[name] = counts.get(name, 0) + n
        else:
            raise ValueError(f"unknown count kind {kind!r}")
    for counts in runs.values():
        counts["reasons"] = {
            decision: dict(sorted(reasons.items(), key=lambda item: (-item[1], item[0])))
            for decision, reasons in sorted(counts["reasons"].items())
        }
    return runs


def run_counts(conn: psycopg.Connection, run_ids: list[str]) -> dict[str, dict[str, Any]]:
    """Counts for each of `run_ids` (a run with nothing recorded gets `empty_counts()`)."""
    found = fold(conn.execute(read_sql("resend/run_counts.sql"), {"run_ids": run_ids}).fetchall())
    return {run_id: found.get(run_id, empty_counts()) for run_id in run_ids}


def record_decisions(conn: psycopg.Connection, run_id: str, pairs: Iterable[tuple[str, str]]) -> None:
    """Store the run's rows per (decision, reason), replacing what was stored (in the caller's
    transaction, with the outcome CSV they describe)."""
    tally = Counter((str(decision), str(reason)) for decision, reason in pairs)
    conn.execute(read_sql("resend/clear_outcome_counts.sql"), {"run_id": run_id})
    if not tally:
        return
    keys = sorted(tally)
    conn.execute(
        read_sql("resend/insert_outcome_counts.sql"),
        {
            "run_id": run_id,
            "decisions": [decision for decision, _ in keys],
            "reasons": [reason for _, reason in keys],
            "row_counts": [tally[key] for key in keys],
        },
    )
