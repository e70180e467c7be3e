"""Test helpers that stand in for the application (its event log) and for reconcile (its verdicts).

Since contract version 2 the event log holds only the application's columns and verdicts live in
mailtrace.delivery; a test that needs a notification "with its verdict" writes both through these.
"""

from __future__ import annotations

from typing import Any

VERDICT_COLUMNS = ("delivery_status", "failure_reason", "delivery_detail", "delivery_updated_at")


def insert_logged(conn, row: dict[str, Any], *, table: str = "mailtrace.notification_event") -> None:
    """Insert one log row; its verdict columns (when delivery_status is set) go to mailtrace.delivery."""
    logged = {name: value for name, value in row.items() if name not in VERDICT_COLUMNS}
    conn.execute(
        f"INSERT INTO {table} ({', '.join(logged)}) "  # noqa: S608 - fixed column names from the test itself
        f"VALUES ({', '.join('%(' + name + ')s' for name in logged)})",
        logged,
    )
    if row.get("delivery_status") is not None:
        set_verdict(
            conn,
            row["event_id"],
            row["delivery_status"],
            row.get("failure_reason"),
            detail=row.get("delivery_detail"),
            updated_at=row.get("delivery_updated_at"),
        )


def log_registration_send(conn, event_id, provider, sent_at, status=None, reason=None, local_status="SENT"):
    """One registration NOC in the log, reference `ref-<event_id>`, with an optional verdict."""
    insert_logged(
        conn,
        {
            "event_id": event_id,
            "subject_type": "registration",
            "subject_id": "STR-" + event_id,
            "notification_type": "NOC",
            "recipient_email": f"{event_id.lower()}@example.gov",
            "provider": provider,
            "provider_reference": "ref-" + event_id,
            "sent_at": sent_at,
            "local_status": local_status,
            "delivery_status": status,
            "failure_reason": reason,
        },
    )


def set_verdict(conn, event_id, status, reason=None, *, detail=None, updated_at=None) -> None:
    """Give a logged event a verdict as reconcile writes it (delivery_updated_at: now() unless given)."""
    conn.execute(
        """INSERT INTO mailtrace.delivery AS d
               (event_id, delivery_status, failure_reason, delivery_detail, delivery_updated_at,
                recipient_address, sent_at)
           SELECT event_id, %(status)s, %(reason)s, %(detail)s, coalesce(%(updated_at)s, now()),
                  lower(btrim(recipient_email)), sent_at
             FROM mailtrace.event_log
            WHERE event_id = %(event_id)s
           ON CONFLICT (event_id) DO UPDATE
           SET delivery_status = EXCLUDED.delivery_status,
               failure_reason = EXCLUDED.failure_reason,
               delivery_detail = EXCLUDED.delivery_detail,
               delivery_updated_at = EXCLUDED.delivery_updated_at""",
        {
            "event_id": event_id,
            "status": status,
            "reason": reason,
            "detail": detail,
            "updated_at": updated_at,
        },
    )


def insert_logged_from(conn, columns: str, source: str, params=None) -> None:
    """INSERT INTO the log "(columns) source" where columns may include the verdict columns.

    `source` is the test's own VALUES or SELECT; the rows pass through a temporary table of the version-1
    shape and are split into mailtrace.notification_event and mailtrace.delivery.
    """
    conn.execute(
        """CREATE TEMP TABLE logged_stage (LIKE mailtrace.notification_event);
           ALTER TABLE logged_stage ADD COLUMN delivery_status text, ADD COLUMN failure_reason text,
               ADD COLUMN delivery_detail text, ADD COLUMN delivery_updated_at timestamptz"""
    )
    conn.execute(f"INSERT INTO logged_stage ({columns}) {source}", params)  # noqa: S608 - the test's own SQL
    conn.execute(
        """INSERT INTO mailtrace.notification_event
               (event_id, subject_type, subject_id, notification_type, recipient_email, provider,
                provider_reference, client_reference, sent_at, local_status)
           SELECT event_id, subject_type, subject_id, notification_type, recipient_email, provider,
                  provider_reference, client_reference, sent_at, local_status
             FROM logged_stage"""
    )
    conn.execute(
        """INSERT INTO mailtrace.delivery
               (event_id, delivery_status, failure_reason, delivery_detail, delivery_updated_at,
                recipient_address, sent_at)
           SELECT event_id, delivery_status, failure_reason, delivery_detail,
                  coalesce(delivery_updated_at, now()), lower(btrim(recipient_email)), sent_at
             FROM logged_stage
            WHERE delivery_status IS NOT NULL"""
    )
    conn.execute("DROP TABLE logged_stage")
