"""An application whose event log has other names maps it with views (the README's example, run for real).

The registry logs every interaction with a registrant in `registry.interactions` (emails among them, under
its own column names); the tax service keeps `tax.send_email_record`. Views in the `mailtrace` schema give
mailtrace the contract's `notification_event` and `contact`; mailtrace creates nothing on the application's
tables, its checks find every index it needs through the views, and reconcile gives verdicts to both logs.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import psycopg
from conftest import REPO_ROOT

from mailtrace.events import ProviderEvent
from mailtrace.input_indexes import INPUT_LOOKUPS, missing_index_warnings
from mailtrace.load import load_provider_events
from mailtrace.reconcile import reconcile
from mailtrace.warehouse import apply_migrations

# The application's own tables and indexes (not mailtrace's business: here so the example runs).
APPLICATION_TABLES = """
CREATE SCHEMA registry;
CREATE TABLE registry.interactions (
    interaction_id  text PRIMARY KEY,
    registration_no text NOT NULL,
    channel         text NOT NULL,          -- 'email', 'phone', 'letter', ...
    kind            text NOT NULL,          -- 'noc', 'approval', ...
    email_to        text,
    gateway_id      text,                   -- GC Notify's notification id
    our_ref         text,                   -- the reference passed to Notify
    created         timestamptz NOT NULL,
    outcome         text NOT NULL           -- 'queued', 'ok', 'error'
);
CREATE INDEX ON registry.interactions (gateway_id);
CREATE INDEX ON registry.interactions (our_ref);
CREATE INDEX ON registry.interactions (created);
CREATE TABLE registry.registrant (
    registration_no  text PRIMARY KEY,
    email            text NOT NULL,
    email_changed_at timestamptz NOT NULL
);
CREATE INDEX ON registry.registrant (email_changed_at);

CREATE SCHEMA tax;
CREATE TABLE tax.send_email_record (
    record_id      text PRIMARY KEY,
    tax_return_id  text NOT NULL,
    template_code  text NOT NULL,
    to_address     text NOT NULL,
    ses_message_id text,
    requested_at   timestamptz NOT NULL,
    send_ok        boolean NOT NULL
);
CREATE INDEX ON tax.send_email_record (ses_message_id);
CREATE INDEX ON tax.send_email_record (requested_at);
"""

# README "Mapping your own event log": the views (kept word for word in the README; a test checks it).
MAPPING_VIEWS = """
CREATE SCHEMA IF NOT EXISTS mailtrace;

CREATE VIEW mailtrace.notification_event AS
SELECT i.interaction_id         AS event_id,
       'registration'           AS subject_type,
       i.registration_no        AS subject_id,
       upper(i.kind)            AS notification_type,
       i.email_to               AS recipient_email,
       'gc_notify'              AS provider,
       i.gateway_id             AS provider_reference,
       i.our_ref                AS client_reference,
       i.created                AS sent_at,
       CASE i.outcome WHEN 'ok' THEN 'SENT' WHEN 'error' THEN 'FAILED' ELSE 'QUEUED' END AS local_status
  FROM registry.interactions i
 WHERE i.channel = 'email'
UNION ALL
SELECT r.record_id, 'tax_return', r.tax_return_id, upper(r.template_code), r.to_address,
       'ses', r.ses_message_id, NULL, r.requested_at,
       CASE WHEN r.send_ok THEN 'SENT' ELSE 'FAILED' END
  FROM tax.send_email_record r;

CREATE VIEW mailtrace.contact AS
SELECT 'registration' AS subject_type, registration_no AS subject_id, email, email_changed_at AS updated_at
  FROM registry.registrant;

-- mailtrace's role reads these and nothing else of the application's
-- GRANT USAGE ON SCHEMA registry, tax TO mailtrace;
-- GRANT SELECT ON registry.interactions, registry.registrant, tax.send_email_record TO mailtrace;
"""

NOW = datetime.now(UTC).replace(microsecond=0)


def test_readme_shows_the_tested_views():
    readme = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    assert MAPPING_VIEWS.strip() in readme


def test_reconcile_through_the_applications_own_tables(empty_database_dsn):
    sent = NOW - timedelta(minutes=30)
    with psycopg.connect(empty_database_dsn) as conn:
        conn.execute(APPLICATION_TABLES)
        conn.execute(MAPPING_VIEWS)
        conn.commit()
        apply_migrations(conn)
        assert conn.execute("SELECT relation FROM mailtrace.created_input").fetchall() == []
        for lookups in INPUT_LOOKUPS.values():
            assert missing_index_warnings(conn, lookups) == []

        conn.cursor().executemany(
            "INSERT INTO registry.interactions VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)",
            [
                (
                    "INT-1",
                    "STR-000001",
                    "email",
                    "noc",
                    "a@example.gov",
                    "0F8E-NOTIFY-1",
                    "int-1",
                    sent,
                    "ok",
                ),
                ("INT-2", "STR-000002", "email", "approval", "b@example.gov", None, " int-2 ", sent, "ok"),
                ("INT-3", "STR-000003", "email", "noc", "c@example.gov", None, None, sent, "error"),
                ("INT-4", "STR-000001", "phone", "call", None, None, None, sent, "ok"),
            ],
        )
        conn.cursor().executemany(
            "INSERT INTO tax.send_email_record VALUES (%s, %s, %s, %s, %s, %s, %s)",
            [
                ("TAX-9", "TR-2025-9", "return_received", "Filer@Example.gov", "ses-msg-9", sent, True),
                ("TAX-8", "TR-2025-8", "return_received", "other@example.gov", "ses-msg-8", sent, True),
            ],
        )
        conn.execute(
            "INSERT INTO registry.registrant VALUES ('STR-000001', 'a@example.gov', %s)",
            (sent - timedelta(days=9),),
        )
        conn.commit()

        def status(provider, reference, raw, verdict, *, recipient="", client_reference=None, reason=None):
            return ProviderEvent(
                provider=provider,
                provider_reference=reference,
                raw_status=raw,
                delivery_status=verdict,
                failure_reason=reason,
                event_at=sent + timedelta(seconds=5),
                source="test",
                recipient_email=recipient,
                client_reference=client_reference,
            )

        load_provider_events(
            conn,
            [
                status("gc_notify", "0f8e-notify-1", "delivered", "delivered", client_reference="int-1"),
                status(
                    "gc_notify",
                    "aaaa-notify-2",
                    "permanent-failure",
                    "permanent_failure",
                    client_reference="int-2",
                    reason="invalid_address",
                ),
                status("ses", "ses-msg-9", "Delivery", "delivered", recipient="filer@example.gov"),
                status(
                    "ses",
                    "ses-msg-8",
                    "Bounce",
                    "permanent_failure",
                    recipient="other@example.gov",
                    reason="invalid_address",
                ),
            ],
        )
        summary = reconcile(conn, now=NOW)

        verdicts = dict(conn.execute("SELECT event_id, delivery_status FROM mailtrace.notification_status"))
        assert verdicts == {
            "INT-1": "delivered",  # Notify id logged in upper case
            "INT-2": "permanent_failure",  # no Notify id logged: matched by its reference, spaces and all
            "INT-3": "send_failed",
            "TAX-9": "delivered",
            "TAX-8": "permanent_failure",
        }
        assert summary["orphans_seen"] == 0
        (daily,) = conn.execute(
            "SELECT sum(sent) FILTER (WHERE provider = 'ses'), sum(delivered)"
            " FROM mailtrace.deliverability_daily"
        ).fetchall()
        assert daily == (2, 2)
