"""The schema comes from numbered migrations, applied by one function, idempotently."""

from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest

from devtools.seed import EVENT_COLUMNS
from mailtrace.flags import update_flags
from mailtrace.reconcile import reconcile
from mailtrace.warehouse import LOAD_LOCK, MIGRATIONS_DIR, apply_migrations, list_migrations


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


APP_COLUMNS = list(EVENT_COLUMNS)  # the application's event log columns, as the seed writes them
V1_MIGRATIONS = Path(__file__).parent / "data" / "migrations_v1"


def _columns(conn, table):
    return [
        row[0]
        for row in conn.execute(
            """SELECT attname FROM pg_attribute
               WHERE attrelid = %s::regclass AND attnum > 0 AND NOT attisdropped ORDER BY attnum""",
            (table,),
        )
    ]


def _indexes(conn, table):
    return {
        row[0]
        for row in conn.execute(
            "SELECT indexrelid::regclass::text FROM pg_index WHERE indrelid = %s::regclass", (table,)
        )
    }


def test_existing_app_tables_are_read_not_altered(empty_database_dsn):
    """The application's event log and contacts exist before mailtrace: migrations leave them as they are."""
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
            """CREATE TABLE mailtrace.contact (subject_type text, subject_id text, email text,
                   updated_at timestamptz, PRIMARY KEY (subject_type, subject_id))"""
        )
        conn.execute(
            """INSERT INTO mailtrace.notification_event VALUES
               ('e1', 'registration', 'STR-1', 'NOC', 'a@example.gov', 'gc_notify', 'ref', NULL,
                now(), 'SENT')"""
        )
        conn.commit()
        apply_migrations(conn)
        row = conn.execute(
            "SELECT event_id, provider_reference, delivery_status FROM mailtrace.notification_status"
        ).fetchone()
        assert row == ("e1", "ref", None)
        assert _columns(conn, "mailtrace.notification_event") == APP_COLUMNS
        assert _indexes(conn, "mailtrace.notification_event") == {"mailtrace.notification_event_pkey"}
        assert _indexes(conn, "mailtrace.contact") == {"mailtrace.contact_pkey"}
        assert conn.execute("SELECT relation FROM mailtrace.created_input").fetchall() == []


def test_fresh_install_creates_demo_inputs_with_their_indexes(empty_database_dsn):
    with psycopg.connect(empty_database_dsn) as conn:
        apply_migrations(conn)
        created = {row[0] for row in conn.execute("SELECT relation FROM mailtrace.created_input")}
        assert created == {"notification_event", "contact"}
        assert _columns(conn, "mailtrace.notification_event") == APP_COLUMNS
        assert _indexes(conn, "mailtrace.notification_event") == {
            "mailtrace.notification_event_pkey",
            "mailtrace.notification_event_provider_reference_idx",
            "mailtrace.notification_event_client_reference_idx",
            "mailtrace.notification_event_sent_at_idx",
        }


def _fill_v1_warehouse(conn):
    """Rows as version 1 wrote them: verdicts on the event log, a look-up referencing it."""
    conn.execute(
        """INSERT INTO mailtrace.notification_event
               (event_id, subject_type, subject_id, notification_type, recipient_email, provider,
                provider_reference, client_reference, sent_at, local_status, delivery_status,
                failure_reason, delivery_detail, delivery_updated_at)
           SELECT 'v1-' || i, 'registration', 'STR-' || i, 'NOC', 'Person' || i || '@Example.gov ',
                  'gc_notify', 'ref-' || i, NULL, timestamptz '2026-11-01 12:00Z' + i * interval '1 minute',
                  'SENT',
                  CASE WHEN i % 3 = 0 THEN 'delivered' WHEN i % 3 = 1 THEN 'permanent_failure' END,
                  CASE WHEN i % 3 = 1 THEN 'invalid_address' END,
                  CASE WHEN i % 3 = 1 THEN 'No such address' END,
                  timestamptz '2026-11-02 00:00Z'
             FROM generate_series(1, 300) AS i"""
    )
    conn.execute(
        """INSERT INTO mailtrace.provider_lookup (event_id, last_checked_at, found)
           VALUES ('v1-2', '2026-11-03 00:00Z', false)"""
    )
    conn.execute(
        """INSERT INTO mailtrace.contact (subject_type, subject_id, email, updated_at)
           VALUES ('registration', 'STR-1', 'person1@example.gov', '2026-10-01 00:00Z')"""
    )
    conn.commit()


def test_upgrade_from_version_1_moves_verdicts_and_leaves_the_log_as_the_application_had_it(
    empty_database_dsn,
):
    with psycopg.connect(empty_database_dsn) as conn:
        v1_applied = apply_migrations(conn, V1_MIGRATIONS)
        assert v1_applied[0] == "001_core.sql" and v1_applied[-1] == "010_flags_by_address.sql"
        _fill_v1_warehouse(conn)
        v1_verdicts = conn.execute(
            """SELECT event_id, delivery_status, failure_reason, delivery_detail, delivery_updated_at
                 FROM mailtrace.notification_event WHERE delivery_status IS NOT NULL ORDER BY event_id"""
        ).fetchall()
        assert len(v1_verdicts) == 200

        applied = apply_migrations(conn)

        assert "013_contract_v2.sql" in applied
        assert "001_core.sql" not in applied  # its version-1 text counts as applied
        assert (
            conn.execute(
                """SELECT event_id, delivery_status, failure_reason, delivery_detail, delivery_updated_at
                     FROM mailtrace.delivery ORDER BY event_id"""
            ).fetchall()
            == v1_verdicts
        )
        assert conn.execute(
            "SELECT DISTINCT recipient_address FROM mailtrace.delivery WHERE event_id = 'v1-1'"
        ).fetchall() == [("person1@example.gov",)]
        assert _columns(conn, "mailtrace.notification_event") == APP_COLUMNS
        # mailtrace's own indexes and constraints are gone; those CONTRACT.md §1 asks of the log stay
        assert _indexes(conn, "mailtrace.notification_event") == {
            "mailtrace.notification_event_pkey",
            "mailtrace.notification_event_provider_reference_idx",
            "mailtrace.notification_event_client_reference_idx",
            "mailtrace.notification_event_sent_at_idx",
        }
        assert _indexes(conn, "mailtrace.contact") == {
            "mailtrace.contact_pkey",
            "mailtrace.contact_updated_at_idx",
        }
        constraints = conn.execute(
            """SELECT conname FROM pg_constraint
                WHERE conrelid = 'mailtrace.notification_event'::regclass
                   OR confrelid = 'mailtrace.notification_event'::regclass"""
        ).fetchall()
        assert constraints == [("notification_event_pkey",)]
        statuses = dict(
            conn.execute(
                "SELECT delivery_status, count(*) FROM mailtrace.notification_status GROUP BY 1"
            ).fetchall()
        )
        assert statuses == {"delivered": 100, "permanent_failure": 100, None: 100}
        (sent,) = conn.execute("SELECT sum(sent) FROM mailtrace.deliverability_daily").fetchone()
        assert sent == 300

        # Safe to run twice: again through the runner, and the migration's text itself once more.
        assert apply_migrations(conn) == []
        with conn.transaction():
            conn.execute((MIGRATIONS_DIR / "013_contract_v2.sql").read_text())
        assert conn.execute("SELECT count(*) FROM mailtrace.delivery").fetchone() == (200,)
        conn.commit()

        # The pipeline carries on from the copied verdicts: only the look-up's evidence gives a new one
        # (v1-2 was not found two days after it was sent), and the bounce flags its contact.
        summary = reconcile(conn, now=datetime(2026, 11, 3, 1, tzinfo=UTC))
        assert summary["updated"] == 1
        assert conn.execute(
            "SELECT delivery_status FROM mailtrace.notification_status WHERE event_id = 'v1-2'"
        ).fetchone() == ("not_at_provider",)
        conn.commit()
        assert update_flags(conn)["set"] == 1
        assert conn.execute(
            "SELECT subject_id, failure_reason FROM mailtrace.flagged_address"
        ).fetchall() == [("STR-1", "invalid_address")]


def _migrations_before(tmp_path, version):
    """The project's migrations numbered below `version`: a warehouse as an earlier release left it."""
    directory = tmp_path / "migrations"
    directory.mkdir()
    for migration in list_migrations():
        if migration.version < version:
            (directory / migration.name).write_text(migration.path.read_text())
    return directory


def test_unclaimed_notifications_migration_keeps_the_history_client_reference_matches_need(
    empty_database_dsn, tmp_path
):
    """018 replaces the history's client-reference index with mailtrace.unclaimed_notification, filled from a
    history laid out by the migrations before it: notifications with a client reference whose provider
    reference no log row claims (in any letter case or spacing), once however often it runs."""
    before = _migrations_before(tmp_path, 18)
    claimed = "6f1c2d3e-0000-4000-8000-000000000001"
    with psycopg.connect(empty_database_dsn) as conn:
        apply_migrations(conn, before)
        history_indexes = _indexes(conn, "mailtrace.provider_event")
        assert "mailtrace.provider_event_client_reference_idx" in history_indexes
        conn.execute(
            """INSERT INTO mailtrace.notification_event (event_id, subject_type, subject_id,
                   notification_type, recipient_email, provider, provider_reference, sent_at, local_status)
               VALUES ('e1', 'registration', 'STR-1', 'NOC', 'a@example.gov', 'gc_notify', %s, now(),
                       'SENT')""",
            (f" {claimed.upper()} ",),
        )
        conn.cursor().executemany(
            """INSERT INTO mailtrace.provider_event (provider, provider_reference, client_reference,
                   raw_status, delivery_status, event_at, source)
               VALUES ('gc_notify', %s, %s, %s, 'delivered', now() - %s * interval '1 minute', 'test')""",
            [
                (claimed, "ref-claimed", "delivered", 1),
                ("unclaimed-1", "ref-1", "sending", 2),
                ("unclaimed-1", "ref-1", "delivered", 1),
                ("unclaimed-2", None, "delivered", 1),
            ],
        )
        conn.commit()

        assert apply_migrations(conn) == ["018_unclaimed_notification.sql"]
        unclaimed = (
            "SELECT provider, provider_reference, client_reference FROM mailtrace.unclaimed_notification"
        )
        assert conn.execute(unclaimed).fetchall() == [("gc_notify", "unclaimed-1", "ref-1")]
        history_indexes = _indexes(conn, "mailtrace.provider_event")
        assert "mailtrace.provider_event_client_reference_idx" not in history_indexes
        with conn.transaction():
            conn.execute((MIGRATIONS_DIR / "018_unclaimed_notification.sql").read_text())
        assert conn.execute(unclaimed).fetchall() == [("gc_notify", "unclaimed-1", "ref-1")]


def test_a_pending_migration_waits_for_loads_and_reconcile_and_nothing_pending_never_does(
    empty_database_dsn, tmp_path
):
    """A migration may fill a table from the history (018), so it never runs beside a load or reconcile,
    which hold LOAD_LOCK; a task whose warehouse is up to date starts without waiting for them."""
    before = _migrations_before(tmp_path, 18)
    with psycopg.connect(empty_database_dsn) as conn, psycopg.connect(empty_database_dsn) as loader:
        apply_migrations(conn, before)
        loader.execute("SELECT pg_advisory_xact_lock(%s)", (LOAD_LOCK,))
        conn.execute("SET lock_timeout = '200ms'")
        assert apply_migrations(conn, before) == []
        with pytest.raises(psycopg.errors.LockNotAvailable):
            apply_migrations(conn)
        loader.commit()
        assert apply_migrations(conn) == ["018_unclaimed_notification.sql"]


def test_upgrade_gives_up_at_once_when_the_application_holds_its_table(empty_database_dsn):
    """The catalogue changes wait at most lock_timeout behind an application transaction, then fail whole."""
    with psycopg.connect(empty_database_dsn) as conn, psycopg.connect(empty_database_dsn) as app:
        apply_migrations(conn, V1_MIGRATIONS)
        _fill_v1_warehouse(conn)
        app.execute(
            """INSERT INTO mailtrace.notification_event (event_id, subject_type, subject_id,
                   notification_type, recipient_email, provider, sent_at, local_status)
               VALUES ('app-open', 'registration', 'STR-9', 'NOC', 'x@example.gov', 'gc_notify',
                       now(), 'SENT')"""
        )  # left uncommitted: the application's transaction holds its row lock on the table
        with pytest.raises(psycopg.errors.LockNotAvailable):
            apply_migrations(conn)
        conn.rollback()
        assert "delivery_status" in _columns(conn, "mailtrace.notification_event")
        app.commit()
        assert "013_contract_v2.sql" in apply_migrations(conn)
        assert conn.execute("SELECT count(*) FROM mailtrace.delivery").fetchone() == (200,)


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
