"""Step 1, `plan_resend`: decide the rows, write the outcome CSV, claim the rows to send."""

from __future__ import annotations

import json
import logging
from collections import Counter
from dataclasses import asdict, dataclass

from psycopg.rows import dict_row

from mailtrace.id_list import (
    IdListError,
    to_csv,
)
from mailtrace.paths import read_sql
from mailtrace.providers.ses import PROVIDER as SES_PROVIDER
from mailtrace.resend.constants import OUTCOME_HEADER, UNKNOWN_DETAIL
from mailtrace.resend.counts import record_decisions
from mailtrace.resend.errors import ResendInputError
from mailtrace.resend.params import ResendParams, id_patterns, reference_for
from mailtrace.resend.provider_config import check_provider_settings, resend_provider
from mailtrace.resend.rendering import render_email
from mailtrace.resend.states import DecisionKind, LedgerStatus, Reason
from mailtrace.resend.storage import write_outcome_csv
from mailtrace.resend.validation import (
    Decision,
    apply_allow_list,
    load_allow_list,
    read_id_rows,
    validate_rows,
)
from mailtrace.warehouse import connect

log = logging.getLogger(__name__)


@dataclass
class _Claim:
    """How a row to send enters the ledger: a new generation, or an existing unsent row taken over."""

    decision: Decision
    generation: int
    insert: bool
    forced: bool = False
    chunk_index: int = 0


def _existing_ledger_rows(conn, params: ResendParams, ids: list[str]) -> dict[str, dict]:
    """The newest ledger row per subject of this incident, locked until the plan commits."""
    with conn.cursor(row_factory=dict_row) as cursor:
        rows = cursor.execute(
            read_sql("resend/existing_ledger_rows.sql"),
            (params.incident_id, params.id_type, ids),
        ).fetchall()
    return {row["subject_id"]: row for row in rows}  # ordered by generation: the newest wins


def _outcome_unknown(latest: dict) -> bool:
    """The row's last call may have gone out and the provider cannot be asked: a human must decide."""
    if latest["status"] == LedgerStatus.UNKNOWN:
        return True
    return (
        latest["status"] == LedgerStatus.CLAIMED
        and latest["provider"] == SES_PROVIDER
        and latest["attempt_open"]
    )


def _plan_claims(decisions: list[Decision], existing: dict[str, dict], params: ResendParams, run_id: str):
    claims = []
    for decision in decisions:
        if not decision.pending:
            continue
        latest = existing.get(decision.row.subject_id)
        if latest is None:
            claims.append(_Claim(decision, generation=0, insert=True))
        elif latest["status"] not in (LedgerStatus.SENT, LedgerStatus.UNKNOWN) and not _outcome_unknown(
            latest
        ):
            # Never confirmed sent (failed, or left claimed by a killed or earlier run): take it over.
            # Its reference is kept, so an email an earlier attempt did send is found, not repeated.
            claims.append(_Claim(decision, generation=latest["generation"], insert=False))
        elif params.force_resend and latest["dag_run_id"] != run_id:
            claims.append(_Claim(decision, generation=latest["generation"] + 1, insert=True, forced=True))
        elif latest["status"] == LedgerStatus.SENT:
            when = latest["sent_at"].isoformat() if latest["sent_at"] else "earlier"
            decision.settle(
                DecisionKind.SKIP, Reason.ALREADY_SENT, f"sent {when} by run {latest['dag_run_id']}"
            )
        else:
            decision.settle(DecisionKind.SKIP, Reason.SEND_UNKNOWN, UNKNOWN_DETAIL)
    return claims


def _mark_unknown_claims(conn, existing: dict[str, dict]) -> None:
    """Rows an earlier SES call left open are `unknown` from now on (they are never sent again as is)."""
    references = [row["reference"] for row in existing.values() if _outcome_unknown(row)]
    conn.execute(
        read_sql("resend/mark_unknown_claims.sql"),
        (references,),
    )


def _write_claims(conn, claims: list[_Claim], params: ResendParams, run_id: str, provider: str) -> None:
    for claim in claims:
        decision = claim.decision
        reference = reference_for(
            params.incident_id, params.id_type, decision.row.subject_id, claim.generation
        )
        values = {
            "incident_id": params.incident_id,
            "subject_type": params.id_type,
            "subject_id": decision.row.subject_id,
            "generation": claim.generation,
            "template": params.template,
            "language": params.language,
            "notification_type": params.notification_type,
            "email": decision.email,
            "reference": reference,
            "run_id": run_id,
            "chunk_index": claim.chunk_index,
            "forced": claim.forced,
            "provider": provider,
        }
        if claim.insert:
            inserted = conn.execute(
                read_sql("resend/claim_row.sql"),
                values,
            ).rowcount
            if not inserted:
                decision.settle(
                    DecisionKind.SKIP,
                    Reason.CLAIMED_ELSEWHERE,
                    "another run claimed this ID at the same time",
                )
        else:
            # The address may only change while no provider call has been made for the row, the
            # provider while no call may be outstanding (it is looked up, or judged, where it went).
            conn.execute(
                read_sql("resend/reclaim_row.sql"),
                values,
            )


def plan_resend(params: ResendParams, *, run_id: str) -> list[dict[str, int]]:
    """Validate the list, write the outcome CSV, claim the rows to send; return the chunks to send.

    Re-running it for the same run gives the same claims and chunks. Fails (after writing the
    outcome CSV) when no row is valid or more than `max_recipients` would receive mail.
    """
    patterns = id_patterns()
    params.check(patterns)
    provider = resend_provider()
    if not params.dry_run:
        check_provider_settings(provider)  # fail before claiming anything if sending cannot work
    try:
        rows = read_id_rows(params)
        allow_list = load_allow_list()
    except IdListError as error:
        raise ResendInputError(str(error)) from None
    with connect() as conn:
        decisions = validate_rows(conn, rows, subject_type=params.id_type, pattern=patterns[params.id_type])
        apply_allow_list(decisions, allow_list)
        if not any(d.pending for d in decisions):
            _finish_plan(conn, params, run_id, decisions, claims=[])
            raise ResendInputError(_nothing_valid_message(decisions))
        sample = next(d for d in decisions if d.pending)
        try:
            render_email(
                params.template,
                params.language,
                subject_type=params.id_type,
                subject_id=sample.row.subject_id,
            )
        except (ValueError, LookupError) as error:  # a missing or broken template: fix it, then trigger
            raise ResendInputError(f"cannot render the {params.template} email: {error}") from None

        pending_ids = [d.row.subject_id for d in decisions if d.pending]
        existing = _existing_ledger_rows(conn, params, pending_ids)
        claims = _plan_claims(decisions, existing, params, run_id)
        if len(claims) > params.max_recipients:
            for claim in claims:
                claim.decision.settle(
                    DecisionKind.SKIP, Reason.MAX_RECIPIENTS_EXCEEDED, f"limit is {params.max_recipients}"
                )
            conn.rollback()
            _finish_plan(conn, params, run_id, decisions, claims=[])
            raise ResendInputError(
                f"{len(claims)} recipients would receive mail, more than "
                f"max_recipients={params.max_recipients}; "
                "nothing was sent. Check the list, or raise max_recipients deliberately."
            )
        for position, claim in enumerate(claims):
            claim.chunk_index = position // params.chunk_size
            if params.dry_run:
                claim.decision.settle(DecisionKind.WOULD_SEND, Reason.DRY_RUN, "dry run: nothing sent")
        if params.dry_run:
            conn.rollback()
        else:
            _mark_unknown_claims(conn, existing)
            _write_claims(conn, claims, params, run_id, provider)
        claims = [
            claim
            for claim in claims
            if claim.decision.decision in (DecisionKind.SEND, DecisionKind.WOULD_SEND)
        ]
        _finish_plan(conn, params, run_id, decisions, claims=claims)
    if params.dry_run:
        return []
    chunk_sizes = Counter(claim.chunk_index for claim in claims)
    return [{"chunk_index": index, "size": size} for index, size in sorted(chunk_sizes.items())]


def _nothing_valid_message(decisions: list[Decision]) -> str:
    reasons = Counter(d.reason for d in decisions)
    summary = ", ".join(f"{count} {reason}" for reason, count in reasons.most_common())
    return f"nothing to send: no row of the list can be used ({summary}); see the outcome CSV"


def _finish_plan(conn, params: ResendParams, run_id: str, decisions, *, claims) -> None:
    """Write the outcome CSV, the run's audit row and its counts per decision and reason (the claims, if
    any, commit with them)."""
    content = to_csv(OUTCOME_HEADER, [d.csv_row() for d in decisions])
    outcome_uri = write_outcome_csv(params.incident_id, run_id, content)
    counts = Counter(d.decision for d in decisions)
    set_aside = sum(1 for d in decisions if d.row.problem)
    chunks = len({claim.chunk_index for claim in claims}) if not params.dry_run else 0
    conn.execute(
        read_sql("resend/record_run.sql"),
        {
            "run_id": run_id,
            "incident_id": params.incident_id,
            "params": json.dumps(asdict(params)),
            "dry_run": params.dry_run,
            "outcome_uri": outcome_uri,
            "rows_read": len(decisions),
            "planned": len(claims),
            "skipped": counts[DecisionKind.SKIP],
            "rejected": counts[DecisionKind.REJECT],
            "chunks": chunks,
        },
    )
    record_decisions(conn, run_id, ((d.decision, d.reason) for d in decisions))
    conn.commit()
    log.info(
        "resend %s run %s: %d rows, %d to send, %d skipped, %d rejected (%d unreadable rows set aside)%s; "
        "outcome %s",
        params.incident_id,
        run_id,
        len(decisions),
        len(claims),
        counts[DecisionKind.SKIP],
        counts[DecisionKind.REJECT],
        set_aside,
        " (dry run)" if params.dry_run else "",
        outcome_uri,
    )
