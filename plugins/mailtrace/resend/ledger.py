"""Ledger writes on `mailtrace.resend_request`: claimed rows, attempts, sent, failed, unknown."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime

from psycopg.rows import dict_row

from mailtrace.paths import read_sql
from mailtrace.privacy import mask_email, mask_text
from mailtrace.providers.gc_notify import (
    PROVIDER,
    parse_timestamp,
)
from mailtrace.resend.constants import UNKNOWN_DETAIL

log = logging.getLogger(__name__)


@dataclass
class _LedgerRow:
    incident_id: str
    subject_type: str
    subject_id: str
    generation: int
    reference: str
    recipient_email: str
    template: str
    language: str
    notification_type: str
    provider: str = PROVIDER


def _chunk_rows(conn, run_id: str, chunk_index: int) -> list[_LedgerRow]:
    with conn.cursor(row_factory=dict_row) as cursor:
        rows = cursor.execute(
            read_sql("resend/chunk_rows.sql"),
            (run_id, chunk_index),
        ).fetchall()
    return [_LedgerRow(**row) for row in rows]


def _start_attempt(conn, row: _LedgerRow) -> None:
    """Commit that a provider call is about to start (its outcome is open until recorded or closed)."""
    conn.execute(
        read_sql("resend/start_attempt.sql"),
        (row.reference,),
    )


def _stored_error(message: object) -> str:
    """An error as it may be logged and stored: providers quote addresses in their answers."""
    return mask_text(message)[:2000]


def _close_attempt(conn, row: _LedgerRow, message: str) -> None:
    """The call was certainly not accepted (rate-limited, no connection): sending again is safe."""
    conn.execute(
        read_sql("resend/close_attempt.sql"),
        (_stored_error(message), row.reference),
    )


def _note_error(conn, row: _LedgerRow, message: str) -> None:
    conn.execute(
        read_sql("resend/note_error.sql"),
        (_stored_error(message), row.reference),
    )


def _mark_failed(conn, row: _LedgerRow, message: str) -> None:
    log.warning(
        "the provider refused the email to %s: %s", mask_email(row.recipient_email), _stored_error(message)
    )
    conn.execute(
        read_sql("resend/mark_failed.sql"),
        (_stored_error(message), row.reference),
    )


def _mark_unknown(conn, row: _LedgerRow, message: str) -> None:
    log.error(
        "email to %s may or may not have been sent (%s); it needs a human: %s",
        mask_email(row.recipient_email),
        _stored_error(message),
        UNKNOWN_DETAIL,
    )
    conn.execute(
        read_sql("resend/mark_unknown.sql"),
        (_stored_error(message), row.reference),
    )


def _record_sent(conn, row: _LedgerRow, notification: dict) -> None:
    """Mark the row sent and log the event for the delivery pipeline, in one transaction.

    `notification` is what the provider returned: Notify's notification (id, created_at) or, for SES,
    `{"id": <MessageId>}`.
    """
    provider_reference = str(notification["id"])
    sent_at = parse_timestamp(notification.get("created_at")) or datetime.now(UTC)
    with conn.transaction():
        conn.execute(
            read_sql("resend/mark_sent.sql"),
            {"provider_reference": provider_reference, "reference": row.reference, "sent_at": sent_at},
        )
        conn.execute(
            read_sql("resend/record_own_send.sql"),
            {
                "reference": row.reference,
                "subject_type": row.subject_type,
                "subject_id": row.subject_id,
                "notification_type": row.notification_type,
                "email": row.recipient_email,
                "provider": row.provider,
                "provider_reference": provider_reference,
                "sent_at": sent_at,
            },
        )
