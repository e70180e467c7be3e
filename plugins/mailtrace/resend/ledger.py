"""Ledger writes on `mailtrace.resend_request`: claimed rows, attempts, sent, failed, unknown."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime

from psycopg.rows import dict_row

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
            """SELECT incident_id, subject_type, subject_id, generation, reference, recipient_email,
                      template, language, notification_type, provider
               FROM mailtrace.resend_request
               WHERE dag_run_id = %s AND chunk_index = %s AND status = 'claimed'
               ORDER BY subject_id, generation""",
            (run_id, chunk_index),
        ).fetchall()
    return [_LedgerRow(**row) for row in rows]


def _start_attempt(conn, row: _LedgerRow) -> None:
    """Commit that a provider call is about to start (its outcome is open until recorded or closed)."""
    conn.execute(
        """UPDATE mailtrace.resend_request
           SET attempts = attempts + 1, last_attempt_at = clock_timestamp(), attempt_open = true,
               updated_at = now()
           WHERE reference = %s""",
        (row.reference,),
    )


def _stored_error(message: object) -> str:
    """An error as it may be logged and stored: providers quote addresses in their answers."""
    return mask_text(message)[:2000]


def _close_attempt(conn, row: _LedgerRow, message: str) -> None:
    """The call was certainly not accepted (rate-limited, no connection): sending again is safe."""
    conn.execute(
        """UPDATE mailtrace.resend_request SET attempt_open = false, error = %s, updated_at = now()
           WHERE reference = %s""",
        (_stored_error(message), row.reference),
    )


def _note_error(conn, row: _LedgerRow, message: str) -> None:
    conn.execute(
        "UPDATE mailtrace.resend_request SET error = %s, updated_at = now() WHERE reference = %s",
        (_stored_error(message), row.reference),
    )


def _mark_failed(conn, row: _LedgerRow, message: str) -> None:
    log.warning(
        "the provider refused the email to %s: %s", mask_email(row.recipient_email), _stored_error(message)
    )
    conn.execute(
        """UPDATE mailtrace.resend_request
           SET status = 'failed', attempt_open = false, error = %s, updated_at = now()
           WHERE reference = %s AND status = 'claimed'""",
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
        """UPDATE mailtrace.resend_request SET status = 'unknown', error = %s, updated_at = now()
           WHERE reference = %s AND status = 'claimed'""",
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
            """UPDATE mailtrace.resend_request
               SET status = 'sent', provider_reference = %(provider_reference)s, event_id = %(reference)s,
                   sent_at = %(sent_at)s, attempt_open = false, error = NULL, updated_at = now()
               WHERE reference = %(reference)s""",
            {"provider_reference": provider_reference, "reference": row.reference, "sent_at": sent_at},
        )
        conn.execute(
            """INSERT INTO mailtrace.own_notification_event
                   (event_id, subject_type, subject_id, notification_type, recipient_email, provider,
                    provider_reference, client_reference, sent_at, local_status)
               VALUES (%(reference)s, %(subject_type)s, %(subject_id)s, %(notification_type)s, %(email)s,
                       %(provider)s, %(provider_reference)s, %(reference)s, %(sent_at)s, 'SENT')
               ON CONFLICT (event_id) DO NOTHING""",
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
