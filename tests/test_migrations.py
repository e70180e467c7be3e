"""The schema comes from numbered migrations, applied by one function, idempotently."""

import psycopg
import pytest

from mailtrace.warehouse import apply_migrations, list_migrations


def _tables(conn):
    return {
        row[0]
        for row in conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'mailtrace'"
        )
    }


def test_migrations_apply_twice_cleanly(empty_database_dsn):
    with psycopg.connect(empty_database_dsn) as conn:
        first = apply_migrations(conn)
        second = apply_migrations(conn)
        tables = _tables(conn)
    assert first == [m.name for m in list_migrations()]
    assert second == []
    assert {"notification_event", "contact", "provider_event", "pipeline_state"} <= tables


def test_later_migration_adds_to_existing_warehouse_without_loss(empty_database_dsn, tmp_path):
    migrations = list_migrations()
    partial = tmp_path / "migrations"
    partial.mkdir()
    (partial / migrations[0].name).write_text(migrations[0].path.read_text())
    with psycopg.connect(empty_database_dsn) as conn:
        apply_migrations(conn, partial)
        conn.execute(
            """INSERT INTO mailtrace.notification_event (event_id, subject_type, subject_id,
                   notification_type, recipient_email, provider, sent_at, local_status)
               VALUES ('e1', 'registration', 'STR-1', 'NOC', 'a@example.gov', 'gc_notify', now(), 'SENT')"""
        )
        conn.commit()
        (partial / "999_extra.sql").write_text(
            "ALTER TABLE mailtrace.notification_event ADD COLUMN IF NOT EXISTS extra_note text;"
        )
        applied = apply_migrations(conn, partial)
        rows = conn.execute("SELECT event_id, extra_note FROM mailtrace.notification_event").fetchall()
    assert applied == ["999_extra.sql"]
    assert rows == [("e1", None)]


def test_existing_app_tables_are_extended_not_replaced(empty_database_dsn):
    """The application may have created its event log before mailtrace was installed."""
    with psycopg.connect(empty_database_dsn) as conn:
        conn.execute("CREATE SCHEMA mailtrace")
        conn.execute(
            """CREATE TABLE mailtrace.notification_event (
                   event_id text PRIMARY KEY, subject_type text NOT NULL, subject_id text NOT NULL,
                   notification_type text NOT NULL, recipient_email text NOT NULL, provider text NOT NULL,
                   provider_reference text, client_reference text, sent_at timestamptz NOT NULL,
                   local_status text NOT NULL)"""
        )
        conn.execute(
            """INSERT INTO mailtrace.notification_event VALUES
               ('e1', 'registration', 'STR-1', 'NOC', 'a@example.gov', 'gc_notify', 'ref', NULL,
                now(), 'SENT')"""
        )
        conn.commit()
        apply_migrations(conn)
        row = conn.execute(
            "SELECT event_id, provider_reference, delivery_status FROM mailtrace.notification_event"
        ).fetchone()
    assert row == ("e1", "ref", None)


def test_edited_migration_is_refused(empty_database_dsn, tmp_path):
    migrations = list_migrations()
    copy = tmp_path / "migrations"
    copy.mkdir()
    target = copy / migrations[0].name
    target.write_text(migrations[0].path.read_text())
    with psycopg.connect(empty_database_dsn) as conn:
        apply_migrations(conn, copy)
        target.write_text(target.read_text() + "\n-- edited\n")
        with pytest.raises(RuntimeError, match="changed after it was applied"):
            apply_migrations(conn, copy)


def test_bad_migration_name_is_refused(tmp_path):
    (tmp_path / "1_oops.sql").write_text("SELECT 1;")
    with pytest.raises(ValueError, match="001_name.sql"):
        list_migrations(tmp_path)
