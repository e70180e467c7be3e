"""Step 3, `summarize_run`: count what happened and fail while a row is unresolved."""

from __future__ import annotations

import csv
import io
import logging
from typing import Any

import psycopg

from mailtrace.id_list import (
    DEFAULT_MAX_BYTES,
    outcome_cell,
    to_csv,
)
from mailtrace.paths import read_sql
from mailtrace.resend.constants import OUTCOME_HEADER, UNKNOWN_DETAIL
from mailtrace.resend.counts import record_decisions, run_counts
from mailtrace.resend.errors import ResendError, ResendRefused
from mailtrace.resend.params import ResendParams
from mailtrace.resend.states import DecisionKind, LedgerStatus, Reason
from mailtrace.resend.storage import read_s3_object, write_outcome_csv
from mailtrace.warehouse import connect

log = logging.getLogger(__name__)


def summarize_run(params: ResendParams, *, run_id: str) -> dict[str, Any]:
    """Count the run's ledger rows by status into its audit row; fail while any is unresolved.

    Returns the run's counts as the Delivery page shows them (`mailtrace.resend.counts`): rows per
    decision and reason, and the ledger's `sent`, `failed`, `claimed` (unresolved) and `unknown`.
    Rows left `claimed` can be retried; rows that ended `unknown` need a human: they are counted in
    `resend_run.unknown`, marked in the run's outcome CSV (and its decision counts) and named in the error.
    """
    with connect() as conn:
        counts = run_counts(conn, [run_id])[run_id]
        conn.execute(
            read_sql("resend/record_run_counts.sql"),
            {
                "sent": counts[LedgerStatus.SENT],
                "failed": counts[LedgerStatus.FAILED],
                "claimed": counts[LedgerStatus.CLAIMED],
                "unknown": counts[LedgerStatus.UNKNOWN],
                "run_id": run_id,
            },
        )
        conn.commit()
        unknown_ids = []
        if counts[LedgerStatus.UNKNOWN]:
            unknown_ids = [
                subject_id
                for (subject_id,) in conn.execute(
                    read_sql("resend/run_unknown_subjects.sql"),
                    (run_id,),
                ).fetchall()
            ]
            outcome = conn.execute(read_sql("resend/run_outcome_uri.sql"), (run_id,)).fetchone()
            if outcome and outcome[0]:
                _mark_outcome_unknown(conn, params.incident_id, run_id, outcome[0], set(unknown_ids))
                counts = run_counts(conn, [run_id])[run_id]
    summary = {
        status: counts[status] for status in (LedgerStatus.SENT, LedgerStatus.FAILED, LedgerStatus.CLAIMED)
    }
    log.info(
        "resend %s run %s finished: %s, unknown %d", params.incident_id, run_id, summary, len(unknown_ids)
    )
    problems = []
    if summary["claimed"]:
        problems.append(
            f"{summary['claimed']} emails are still unresolved; clear the failed send_chunk tasks or "
            "trigger the same list again (already-sent IDs are skipped, unresolved ones looked up first)."
        )
    if summary["failed"] and not summary["sent"] and not summary["claimed"] and not unknown_ids:
        raise ResendRefused(
            f"every email of the run was refused ({summary['failed']} failed, none sent): "
            f"{_refusal_reasons(run_id)}. Fix the cause, then trigger again: refused IDs are sent again."
        )
    if unknown_ids:
        shown = ", ".join(unknown_ids[:20]) + (", …" if len(unknown_ids) > 20 else "")
        problems.append(
            f"{len(unknown_ids)} emails may or may not have been sent (status 'unknown': the SES call's "
            f"outcome cannot be known) and are never re-sent automatically: {shown}. {UNKNOWN_DETAIL}."
        )
    if problems:
        raise ResendError(" ".join(problems))
    return counts


def _refusal_reasons(run_id: str, shown: int = 3) -> str:
    """The run's most common refusals, with counts (errors are stored masked)."""
    with connect() as conn:
        rows = conn.execute(
            read_sql("resend/refusal_reasons.sql"),
            (run_id, shown),
        ).fetchall()
    return "; ".join(f"{count} × {error[:300]}" for error, count in rows)


def _mark_outcome_unknown(
    conn: psycopg.Connection, incident_id: str, run_id: str, outcome_uri: str, subject_ids: set[str]
) -> None:
    """Rewrite the run's outcome CSV, and its decision counts: rows planned as `send` whose email ended
    `unknown` say so."""
    text = read_s3_object(outcome_uri, max_bytes=64 * DEFAULT_MAX_BYTES).decode("utf-8")
    rows = list(csv.reader(io.StringIO(text)))
    if not rows or rows[0] != OUTCOME_HEADER:
        log.error("outcome %s has an unexpected header; not marking unknown rows in it", outcome_uri)
        return
    shown_ids = {outcome_cell(subject_id) for subject_id in subject_ids}
    decision_at, reason_at, detail_at = (
        OUTCOME_HEADER.index(name) for name in ("decision", "reason", "detail")
    )
    subject_at = OUTCOME_HEADER.index("subject_id")
    for row in rows[1:]:
        if row[subject_at] in shown_ids and row[decision_at] in (DecisionKind.SEND, DecisionKind.UNKNOWN):
            row[decision_at], row[reason_at], row[detail_at] = (
                DecisionKind.UNKNOWN,
                Reason.SEND_UNKNOWN,
                UNKNOWN_DETAIL,
            )
    write_outcome_csv(incident_id, run_id, to_csv(rows[0], rows[1:]))
    record_decisions(conn, run_id, ((row[decision_at], row[reason_at]) for row in rows[1:]))
    conn.commit()
