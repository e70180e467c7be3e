"""The Delivery page's resend section: per incident, its runs of `mailtrace_resend` and what each did.

Every run in the ledger (`mailtrace.resend_run`) is shown, however it was started (the trigger form, the
API, a list dropped in S3): the plan writes the run's row whatever started it. The counts come from
`mailtrace.resend.counts`, the same function the DAG's `summarize` task returns, so the page and the
task say the same. Runs that failed before their plan was written (a bad parameter) have no row here;
the Airflow UI shows them.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import psycopg

from mailtrace.resend.counts import run_counts
from mailtrace.resend.drop import RUN_ID_PREFIX as DROP_RUN_ID_PREFIX
from mailtrace.ui.data import query_rows

DEFAULT_INCIDENTS = 10


def started_by(run_id: str) -> str:
    """How the run was started, from its run id's prefix: Airflow's (manual__, scheduled__, …), or
    `s3_drop` for the dry runs `mailtrace_resend_drop` starts (run ids `s3drop__<incident>__<object>`)."""
    kind, separator, _ = run_id.partition("__")
    if not (separator and kind):
        return "unknown"
    return "s3_drop" if kind == DROP_RUN_ID_PREFIX else kind


def incidents(
    conn: psycopg.Connection,
    *,
    limit: int = DEFAULT_INCIDENTS,
    offset: int = 0,
    incident_id: str | None = None,
) -> dict[str, Any]:
    """One page of incidents, newest first, each with its runs (newest first) and their counts.

    Each run: `dag_run_id`, `started_by`, `dry_run`, what was asked for (`id_type`, `template`, `language`,
    `force_resend`, the list's `ids_s3_uri` or `inline_ids` true), `planned_at`, `finished_at`, `rows_read`,
    `chunks`, `outcome_uri` and `counts` (see `mailtrace.resend.counts.empty_counts`).
    """
    paging = {"incident_id": incident_id, "limit": limit, "offset": offset}
    found = query_rows(conn, "resend_incidents", paging)
    total = found[0]["total"] if found else 0
    names = [row["incident_id"] for row in found]
    runs = query_rows(conn, "resend_runs", {"incidents": names}) if names else []
    counts = run_counts(conn, [run["dag_run_id"] for run in runs]) if runs else {}
    by_incident: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for run in runs:
        by_incident[run.pop("incident_id")].append(
            {**run, "started_by": started_by(run["dag_run_id"]), "counts": counts[run["dag_run_id"]]}
        )
    return {
        "total": total,
        "offset": offset,
        "incidents": [
            {
                "incident_id": row["incident_id"],
                "last_planned_at": row["last_planned_at"],
                "run_count": row["run_count"],
                "runs": by_incident[row["incident_id"]],
            }
            for row in found
        ],
    }


def outcome_uri(conn: psycopg.Connection, run_id: str) -> str | None:
    """The s3:// URI of the run's outcome CSV, or None when the run is unknown or wrote none."""
    rows = query_rows(conn, "resend_outcome", {"run_id": run_id})
    return rows[0]["outcome_uri"] if rows else None
