"""Reconcile on the contract-version-2 layout: the event log is only read, verdicts go to mailtrace.delivery.

References the application logged with spaces around them or in another letter case (a Notify id is a
UUID) are matched on both sides normalised, through mailtrace's own alias table rather than an index on
the application's table; rows the application logs late, or changes after the fact, are picked up by the
sent_at overlap and by the periodic catch-up.
"""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

import mailtrace.reconcile
from mailtrace.input_indexes import INPUT_LOOKUPS, missing_index_warnings
from mailtrace.notify_extract import extract_list
from mailtrace.providers.gc_notify import NotifyClient
from mailtrace.reconcile import reconcile
from mailtrace.warehouse import apply_migrations, indexes_built_after

NOW = datetime.now(UTC).replace(microsecond=0)


def make_client(sim):
    return NotifyClient(sim.api_key, sim.base_url, backoff_base=0.01, sleep=lambda _: None)


def log_event(
    conn, event_id, *, provider_reference=None, client_reference=None, sent_at=None, local_status="SENT"
):
    conn.execute(
        """INSERT INTO mailtrace.notification_event (event_id, subject_type, subject_id, notification_type,
               recipient_email, provider, provider_reference, client_reference, sent_at, local_status)
           VALUES (%s, 'registration', %s, 'NOC', 'Person@Example.gov', 'gc_notify', %s, %s, %s, %s)""",
        (
            event_id,
            "STR-" + event_id,
            provider_reference,
            client_reference,
            sent_at or NOW - timedelta(minutes=30),
            local_status,
        ),
    )
    conn.commit()


def sim_row(notification_id, *, status="delivered", reference=None):
    created_at = NOW - timedelta(minutes=30)
    return {
        "id": notification_id,
        "email_address": "person@example.gov",
        "status": status,
        "created_at": created_at,
        "sent_at": created_at + timedelta(seconds=2),
        "completed_at": created_at + timedelta(seconds=9),
        "reference": reference,
    }


def verdicts(conn):
    rows = conn.execute(
        "SELECT event_id, delivery_status FROM mailtrace.notification_status ORDER BY event_id"
    ).fetchall()
    conn.commit()
    return dict(rows)


def orphans(conn):
    (count,) = conn.execute("SELECT count(*) FROM mailtrace.orphan_notification").fetchone()
    conn.commit()
    return count


def test_references_with_spaces_or_upper_case_get_their_verdict_and_leave_no_orphan(
    warehouse_conn, notify_sim
):
    upper, spaced, both = (str(uuid.uuid4()) for _ in range(3))
    notify_sim.add_notifications(
        [
            sim_row(upper, status="delivered"),
            sim_row(spaced, status="permanent-failure"),
            sim_row(both, status="delivered"),
            sim_row(str(uuid.uuid4()), status="delivered", reference="app-ref-7"),
        ]
    )
    log_event(warehouse_conn, "upper", provider_reference=upper.upper())
    log_event(warehouse_conn, "spaced", provider_reference=f"  {spaced}\t")
    log_event(warehouse_conn, "client", client_reference=" app-ref-7 ")

    extract_list(warehouse_conn, make_client(notify_sim), now=NOW)
    reconcile(warehouse_conn, now=NOW)

    assert verdicts(warehouse_conn) == {
        "client": "delivered",
        "spaced": "permanent_failure",
        "upper": "delivered",
    }
    # `both` has no log row yet: the one orphan. Its row then arrives, upper case and padded, and adopts it.
    assert orphans(warehouse_conn) == 1
    log_event(warehouse_conn, "both", provider_reference=f" {both.upper()} ")
    reconcile(warehouse_conn, now=NOW)
    assert verdicts(warehouse_conn)["both"] == "delivered"
    assert orphans(warehouse_conn) == 0
    # The application's values are left as they were logged; the normal forms live in mailtrace's table.
    aliases = warehouse_conn.execute(
        "SELECT event_id, provider_reference_key, client_reference_key FROM mailtrace.event_reference_alias"
        " ORDER BY event_id"
    ).fetchall()
    assert aliases == [
        ("both", both, None),
        ("client", None, "app-ref-7"),
        ("spaced", spaced, None),
        ("upper", upper, None),
    ]
    logged = warehouse_conn.execute(
        "SELECT provider_reference FROM mailtrace.notification_event WHERE event_id = 'upper'"
    ).fetchone()
    assert logged == (upper.upper(),)


def test_client_references_stay_case_sensitive(warehouse_conn, notify_sim):
    """The application chooses its own references: only surrounding spaces are ignored, not case."""
    notify_sim.add_notifications([sim_row(str(uuid.uuid4()), reference="Ref-A")])
    log_event(warehouse_conn, "other-case", client_reference="ref-a")
    extract_list(warehouse_conn, make_client(notify_sim), now=NOW)
    reconcile(warehouse_conn, now=NOW)
    assert verdicts(warehouse_conn) == {"other-case": None}
    assert orphans(warehouse_conn) == 1


def unclaimed(conn):
    rows = conn.execute(
        "SELECT client_reference FROM mailtrace.unclaimed_notification ORDER BY client_reference"
    ).fetchall()
    conn.commit()
    return [row[0] for row in rows]


def test_client_reference_match_finds_statuses_loaded_before_the_event_and_skips_claimed_ones(
    warehouse_conn, notify_sim
):
    """Only notifications no log row claims by provider reference are kept for the client-reference match
    (mailtrace.unclaimed_notification): one whose statuses arrived before the event that names it still
    matches it; one claimed in the same run through an alias (its id logged in upper case) is never kept;
    one that a row claims later is dropped by the next catch-up, lends nothing, and stays out even once
    the claiming row loses its reference (the documented exception)."""
    early, later_claimed, claimed, upper = (str(uuid.uuid4()) for _ in range(4))
    notify_sim.add_notifications(
        [
            sim_row(early, status="permanent-failure", reference="app-ref-early"),
            sim_row(later_claimed, reference="app-ref-shared"),
            sim_row(claimed, reference="app-ref-claimed"),
            sim_row(upper, reference="app-ref-upper"),
        ]
    )
    log_event(warehouse_conn, "retry", provider_reference=claimed, client_reference="app-ref-claimed")
    log_event(
        warehouse_conn,
        "upper-retry",
        provider_reference=f" {upper.upper()} ",
        client_reference="app-ref-upper",
    )
    extract_list(warehouse_conn, make_client(notify_sim), now=NOW)
    first = reconcile(warehouse_conn, now=NOW)
    assert unclaimed(warehouse_conn) == ["app-ref-early", "app-ref-shared"]
    assert first["orphans_seen"] == orphans(warehouse_conn) == 2

    log_event(warehouse_conn, "failed-attempt", client_reference="app-ref-claimed")
    log_event(warehouse_conn, "logged-after", client_reference="app-ref-early")
    log_event(warehouse_conn, "claimer", provider_reference=later_claimed, client_reference="app-ref-shared")
    log_event(warehouse_conn, "first-try", client_reference="app-ref-shared")
    summary = reconcile(warehouse_conn, now=NOW + timedelta(minutes=5))
    assert summary["catch_up"] == 0
    assert verdicts(warehouse_conn) == {
        "claimer": "delivered",
        "failed-attempt": None,
        "first-try": None,
        "logged-after": "permanent_failure",
        "retry": "delivered",
        "upper-retry": "delivered",
    }
    assert orphans(warehouse_conn) == 0
    assert unclaimed(warehouse_conn) == ["app-ref-early", "app-ref-shared"]

    assert reconcile(warehouse_conn, now=NOW + timedelta(days=1, minutes=10))["catch_up"] == 1
    assert unclaimed(warehouse_conn) == ["app-ref-early"]
    assert verdicts(warehouse_conn)["first-try"] is None

    warehouse_conn.execute(
        "UPDATE mailtrace.notification_event SET provider_reference = NULL WHERE event_id = 'claimer'"
    )
    warehouse_conn.commit()
    assert reconcile(warehouse_conn, now=NOW + timedelta(days=2, minutes=15))["catch_up"] == 1
    assert verdicts(warehouse_conn)["first-try"] is None


def test_a_row_logged_late_with_an_old_sent_at_is_judged_by_the_catch_up(warehouse_conn):
    """Outside the overlap and with no provider record, a failed send is found by the next catch-up run."""
    log_event(warehouse_conn, "earlier", local_status="FAILED", sent_at=NOW - timedelta(minutes=20))
    reconcile(warehouse_conn, now=NOW)  # first run: a catch-up; the log's watermark is now "earlier"
    log_event(warehouse_conn, "recent-failed", local_status="FAILED", sent_at=NOW - timedelta(minutes=5))
    log_event(warehouse_conn, "old-failed", local_status="FAILED", sent_at=NOW - timedelta(days=3))

    first = reconcile(warehouse_conn, now=NOW + timedelta(minutes=10))
    assert first["catch_up"] == 0
    assert verdicts(warehouse_conn) == {
        "earlier": "send_failed",
        "old-failed": None,
        "recent-failed": "send_failed",
    }

    later = reconcile(warehouse_conn, now=NOW + timedelta(days=1, minutes=1))
    assert later["catch_up"] == 1
    assert set(verdicts(warehouse_conn).values()) == {"send_failed"}


def test_a_run_with_nothing_new_reads_only_the_overlap(warehouse_conn):
    """A second run over the same log writes nothing and looks only at the rows inside the overlap."""
    for n in range(50):
        log_event(warehouse_conn, f"f{n}", local_status="FAILED", sent_at=NOW - timedelta(days=2, minutes=n))
    log_event(warehouse_conn, "fresh", local_status="FAILED", sent_at=NOW - timedelta(minutes=1))
    first = reconcile(warehouse_conn, now=NOW)
    assert first["updated"] == 51
    again = reconcile(warehouse_conn, now=NOW + timedelta(minutes=15))
    assert again == {
        "provider_events": 0,
        "affected": 1,  # "fresh", inside the overlap
        "updated": 0,
        "orphans_seen": 0,
        "orphans_adopted": 0,
        "catch_up": 0,
    }


def test_events_affected_for_several_reasons_are_judged_once_each(warehouse_conn):
    """A recent row matched through its alias and an older row matched by two new statuses count once each.

    03_events.sql takes the rows logged since the last run as it reads them and de-duplicates only the
    other reasons, for the other rows: the two sets must not overlap, or a verdict would be written twice.
    """
    from mailtrace.events import ProviderEvent
    from mailtrace.load import load_provider_events

    log_event(warehouse_conn, "older", provider_reference="ref-older", sent_at=NOW - timedelta(days=3))
    # moves the log's watermark, so that the next run's recent rows start long after "older"
    log_event(warehouse_conn, "anchor", local_status="FAILED", sent_at=NOW - timedelta(minutes=30))
    first = reconcile(warehouse_conn, now=NOW)
    assert first["catch_up"] == 1
    assert verdicts(warehouse_conn) == {"anchor": "send_failed", "older": None}

    # logged in upper case with spaces: matched through an alias made in the same run (a recent event that
    # the alias arms name as well)
    log_event(warehouse_conn, "recent", provider_reference=" REF-RECENT ", sent_at=NOW + timedelta(minutes=1))
    load_provider_events(
        warehouse_conn,
        [
            ProviderEvent(
                provider="gc_notify",
                provider_reference=reference,
                raw_status=status,
                delivery_status=status,
                event_at=NOW + timedelta(minutes=minutes),
                source="test",
            )
            for reference, status, minutes in (
                ("ref-recent", "delivered", 2),
                ("ref-older", "pending", 2),
                ("ref-older", "delivered", 3),
            )
        ],
    )
    second = reconcile(warehouse_conn, now=NOW + timedelta(minutes=10))
    assert second["catch_up"] == 0
    assert second["affected"] == 3  # anchor and recent as logged since the last run; older by its statuses
    assert second["updated"] == 2
    assert verdicts(warehouse_conn) == {"anchor": "send_failed", "older": "delivered", "recent": "delivered"}


def _index_definitions(conn, table, *, commit=True):
    rows = conn.execute(
        """SELECT indexname, indexdef FROM pg_indexes
           WHERE schemaname = 'mailtrace' AND tablename = %s ORDER BY 1""",
        (table,),
    ).fetchall()
    if commit:
        conn.commit()
    return rows


def _judged(conn):
    rows = conn.execute(
        """SELECT event_id, delivery_status, failure_reason, delivery_detail
           FROM mailtrace.notification_status ORDER BY event_id"""
    ).fetchall()
    conn.commit()
    return rows


def test_a_first_run_builds_delivery_indexes_after_its_verdicts_and_judges_the_same(
    warehouse_conn, notify_sim, monkeypatch, caplog
):
    """The first run on a log fills an empty delivery with its indexes dropped, then builds them again: the
    table ends with exactly the migrations' indexes and key, and every verdict is the one the row-by-row
    route gives the same log."""
    statuses = ["delivered", "permanent-failure", "temporary-failure", "technical-failure", "sending"]
    references = [str(uuid.uuid4()) for _ in range(25)]
    notify_sim.add_notifications(
        [sim_row(reference, status=statuses[n % len(statuses)]) for n, reference in enumerate(references)]
        + [sim_row(str(uuid.uuid4()), status="delivered", reference="app-ref-1")]
    )
    for n, reference in enumerate(references):
        log_event(
            warehouse_conn, f"sent-{n:02}", provider_reference=reference.upper() if n % 4 == 0 else reference
        )
    log_event(warehouse_conn, "by-client-reference", client_reference="app-ref-1")
    for n in range(3):
        log_event(warehouse_conn, f"failed-{n}", local_status="FAILED")
    migrated = _index_definitions(warehouse_conn, "delivery")
    extract_list(warehouse_conn, make_client(notify_sim), now=NOW)

    monkeypatch.setattr(mailtrace.reconcile, "FIRST_FILL_MIN_ROWS", 10)
    with caplog.at_level(logging.INFO, logger="mailtrace.reconcile"):
        reconcile(warehouse_conn, now=NOW)
    assert "29 first verdicts into an empty mailtrace.delivery" in caplog.text
    built_after = _judged(warehouse_conn)
    assert _index_definitions(warehouse_conn, "delivery") == migrated
    primary_key = warehouse_conn.execute(
        "SELECT conname FROM pg_constraint WHERE conrelid = 'mailtrace.delivery'::regclass AND contype = 'p'"
    ).fetchall()
    assert primary_key == [("delivery_pkey",)]
    assert {row[1] for row in built_after} == {
        "delivered",
        "permanent_failure",
        "temporary_failure",
        "technical_failure",
        "pending",
        "send_failed",
    }

    # the same log again from the start, with the indexes kept in place
    warehouse_conn.execute("TRUNCATE mailtrace.delivery")
    warehouse_conn.execute("DELETE FROM mailtrace.pipeline_state WHERE name LIKE 'reconcile%'")
    warehouse_conn.commit()
    monkeypatch.setattr(mailtrace.reconcile, "FIRST_FILL_MIN_ROWS", 10**9)
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="mailtrace.reconcile"):
        reconcile(warehouse_conn, now=NOW)
    assert "indexes built after" not in caplog.text
    assert _judged(warehouse_conn) == built_after


def test_indexes_built_after_restores_everything_when_the_block_fails_and_keeps_what_a_key_refers_to(
    warehouse_conn,
):
    warehouse_conn.execute(
        """CREATE TABLE mailtrace.fill_target (id int PRIMARY KEY, code text UNIQUE, note text);
           CREATE INDEX fill_target_note_idx ON mailtrace.fill_target (lower(note)) WHERE note IS NOT NULL;
           CREATE TABLE mailtrace.fill_referrer (code text REFERENCES mailtrace.fill_target (code))"""
    )
    warehouse_conn.commit()
    before = _index_definitions(warehouse_conn, "fill_target")
    assert len(before) == 3

    # the block fails and its caller carries on with the transaction: the drops are undone all the same
    with warehouse_conn.transaction():
        with pytest.raises(RuntimeError, match="half-way"):
            with indexes_built_after(warehouse_conn, "mailtrace.fill_target"):
                # inside the block only the unique code, which a foreign key relies on, is still there
                names = [row[0] for row in _index_definitions(warehouse_conn, "fill_target", commit=False)]
                assert names == ["fill_target_code_key"]
                warehouse_conn.execute("INSERT INTO mailtrace.fill_target VALUES (1, 'a', 'x')")
                raise RuntimeError("half-way")
        warehouse_conn.execute("INSERT INTO mailtrace.fill_target VALUES (5, 'e', 'v')")
    assert _index_definitions(warehouse_conn, "fill_target") == before
    assert warehouse_conn.execute("SELECT id FROM mailtrace.fill_target").fetchall() == [(5,)]
    warehouse_conn.commit()

    # rows the rebuilt primary key refuses: the rebuild fails and the indexes are as they were
    with pytest.raises(psycopg.errors.UniqueViolation):
        with warehouse_conn.transaction():
            with indexes_built_after(warehouse_conn, "mailtrace.fill_target"):
                warehouse_conn.execute(
                    "INSERT INTO mailtrace.fill_target VALUES (1, 'a', 'x'), (1, 'b', 'y')"
                )
    assert _index_definitions(warehouse_conn, "fill_target") == before

    with warehouse_conn.transaction():
        with indexes_built_after(warehouse_conn, "mailtrace.fill_target", maintenance_work_mem="96MB"):
            warehouse_conn.execute("INSERT INTO mailtrace.fill_target VALUES (1, 'a', 'x'), (2, 'b', 'y')")
            assert warehouse_conn.execute("SHOW maintenance_work_mem").fetchone() == ("96MB",)
    assert _index_definitions(warehouse_conn, "fill_target") == before
    with pytest.raises(psycopg.errors.UniqueViolation):
        warehouse_conn.execute("INSERT INTO mailtrace.fill_target VALUES (2, 'c', 'z')")


def test_a_first_run_waits_only_briefly_for_readers_of_delivery_then_keeps_its_indexes(
    warehouse_conn, warehouse_dsn, monkeypatch, caplog
):
    """A session reading delivery when the first run comes: the run does not queue behind it for long (nor
    make every later reader queue behind itself); it inserts through the indexes instead."""
    for n in range(12):
        log_event(warehouse_conn, f"failed-{n:02}", local_status="FAILED")
    migrated = _index_definitions(warehouse_conn, "delivery")
    monkeypatch.setattr(mailtrace.reconcile, "FIRST_FILL_MIN_ROWS", 10)
    monkeypatch.setattr(mailtrace.reconcile, "FIRST_FILL_LOCK_WAIT", "200ms")
    with psycopg.connect(warehouse_dsn) as reader:
        reader.execute(
            "SELECT count(*) FROM mailtrace.notification_status"
        ).fetchone()  # its transaction stays open
        with caplog.at_level(logging.INFO, logger="mailtrace.reconcile"):
            summary = reconcile(warehouse_conn, now=NOW)
        reader.rollback()
    assert "was in use for 200ms; 12 first verdicts go in through its indexes" in caplog.text
    assert "indexes built after" not in caplog.text
    assert summary["updated"] == 12
    assert set(verdicts(warehouse_conn).values()) == {"send_failed"}
    assert _index_definitions(warehouse_conn, "delivery") == migrated


def _unindexed_app_warehouse(dsn):
    with psycopg.connect(dsn) as conn:
        conn.execute("CREATE SCHEMA mailtrace")
        conn.execute(
            """CREATE TABLE public.interactions (id text, kind text, ref text, regno text, type text,
                   email text, channel text, provider_id text, client_ref text, at timestamptz, state text)"""
        )
        conn.execute(
            """CREATE VIEW mailtrace.notification_event AS
               SELECT id AS event_id, kind AS subject_type, regno AS subject_id, type AS notification_type,
                      email AS recipient_email, channel AS provider, provider_id AS provider_reference,
                      client_ref AS client_reference, at AS sent_at, state AS local_status
                 FROM public.interactions"""
        )
        conn.execute(
            "CREATE TABLE mailtrace.contact"
            " (subject_type text, subject_id text, email text, updated_at timestamptz)"
        )
        conn.commit()
        apply_migrations(conn)


def test_missing_indexes_are_named_through_a_view(empty_database_dsn, caplog):
    _unindexed_app_warehouse(empty_database_dsn)
    with psycopg.connect(empty_database_dsn) as conn:
        warnings = missing_index_warnings(conn, INPUT_LOOKUPS["notification_event"])
        assert len(warnings) == 4
        assert all("public.interactions sequentially" in w for w in warnings)
        assert any("(provider, provider_reference)" in w for w in warnings)

        conn.execute("CREATE INDEX ON public.interactions (channel, provider_id)")
        conn.execute("CREATE INDEX ON public.interactions (channel, client_ref)")
        conn.execute("CREATE INDEX ON public.interactions (at)")
        conn.execute("CREATE UNIQUE INDEX ON public.interactions (id)")
        conn.commit()
        assert missing_index_warnings(conn, INPUT_LOOKUPS["notification_event"]) == []

        # Once per run, in the run's log.
        conn.execute("DROP INDEX public.interactions_at_idx")
        conn.commit()
        with caplog.at_level(logging.WARNING, logger="mailtrace.input_indexes"):
            reconcile(conn, now=NOW)
        named = [r.getMessage() for r in caplog.records if r.name == "mailtrace.input_indexes"]
        assert len(named) == 1
        assert "(sent_at)" in named[0]


def test_contact_without_indexes_is_named(empty_database_dsn):
    _unindexed_app_warehouse(empty_database_dsn)
    with psycopg.connect(empty_database_dsn) as conn:
        warnings = missing_index_warnings(conn, INPUT_LOOKUPS["contact"])
    assert [w.split(" by ")[1].split(" (")[0] for w in warnings] == [
        "(updated_at)",
        "(subject_type, subject_id)",
    ]


def test_demo_tables_have_every_index(warehouse_conn):
    for lookups in INPUT_LOOKUPS.values():
        assert missing_index_warnings(warehouse_conn, lookups) == []


@pytest.mark.parametrize("relation", ["notification_event", "contact"])
def test_mailtrace_never_indexes_a_relation_it_did_not_create(empty_database_dsn, relation):
    _unindexed_app_warehouse(empty_database_dsn)
    with psycopg.connect(empty_database_dsn) as conn:
        (indexes,) = conn.execute(
            """SELECT count(*) FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid
                WHERE c.relname IN ('interactions', %s) AND c.relnamespace <> 'pg_catalog'::regnamespace""",
            (relation,),
        ).fetchone()
    assert indexes == 0


def test_ses_message_ids_are_trimmed_but_keep_their_case(warehouse_conn):
    """SES MessageIds are not UUIDs: white space around one never counts, its letter case does."""
    from mailtrace.events import ProviderEvent
    from mailtrace.load import load_provider_events

    for event_id, message_id in (("ses-spaced", " 0100018c-AbC-1 \n"), ("ses-other-case", "0100018C-ABC-2")):
        warehouse_conn.execute(
            """INSERT INTO mailtrace.notification_event (event_id, subject_type, subject_id,
                   notification_type, recipient_email, provider, provider_reference, sent_at, local_status)
               VALUES (%s, 'tax_return', 'TR-1', 'NOC', 'Filer@Example.gov', 'ses', %s, %s, 'SENT')""",
            (event_id, message_id, NOW - timedelta(minutes=30)),
        )
    warehouse_conn.commit()
    load_provider_events(
        warehouse_conn,
        [
            ProviderEvent(
                provider="ses",
                provider_reference=reference,
                raw_status="Delivery",
                delivery_status="delivered",
                event_at=NOW - timedelta(minutes=29),
                source="test",
                recipient_email="filer@example.gov",
            )
            for reference in ("0100018c-AbC-1", "0100018c-abc-2")
        ],
    )
    summary = reconcile(warehouse_conn, now=NOW)
    assert verdicts(warehouse_conn) == {"ses-other-case": None, "ses-spaced": "delivered"}
    assert summary["orphans_seen"] == 1


def test_an_unplannable_probe_says_it_cannot_tell_and_the_run_goes_on(empty_database_dsn):
    """A view whose sent_at is text cannot be probed with a timestamp: a warning, never a failed run."""
    with psycopg.connect(empty_database_dsn) as conn:
        conn.execute("CREATE SCHEMA mailtrace")
        conn.execute(
            """CREATE TABLE public.log (id text PRIMARY KEY, provider text, ref text, at text, state text)"""
        )
        conn.execute(
            """CREATE VIEW mailtrace.notification_event AS
               SELECT id AS event_id, 'registration' AS subject_type, id AS subject_id,
                      'NOC' AS notification_type, 'a@example.gov' AS recipient_email, provider,
                      ref AS provider_reference,
                      NULL::text AS client_reference, at::timestamptz AS sent_at, state AS local_status
                 FROM public.log"""
        )
        conn.commit()
        apply_migrations(conn)
        conn.execute("DROP VIEW mailtrace.notification_event CASCADE")
        conn.execute(
            """CREATE VIEW mailtrace.notification_event AS
               SELECT id AS event_id, 'registration' AS subject_type, id AS subject_id,
                      'NOC' AS notification_type, 'a@example.gov' AS recipient_email, provider,
                      ref AS provider_reference,
                      NULL::text AS client_reference, at AS sent_at, state AS local_status
                 FROM public.log"""
        )
        conn.commit()
        warnings = missing_index_warnings(conn, INPUT_LOOKUPS["notification_event"])
        assert any(
            w.startswith(
                "mailtrace.notification_event: cannot tell whether an index serves look-ups by (sent_at)"
            )
            for w in warnings
        ), warnings
        assert conn.execute("SELECT count(*) FROM pg_prepared_statements").fetchone() == (0,)


def test_a_large_load_is_sampled_for_the_plans_and_left_to_autovacuum_for_the_rest(warehouse_conn):
    """The run samples provider_event's planned columns only, so autovacuum still analyses all of it later.

    A full ANALYZE would reset the count of changed rows that autovacuum's own ANALYZE waits for, and leave
    the table with the run's coarse sample until the next 10 % of changes.
    """
    from mailtrace.events import ProviderEvent
    from mailtrace.load import load_provider_events

    # autovacuum's own ANALYZE of the new rows would reset the count this test looks at
    warehouse_conn.execute("ALTER TABLE mailtrace.provider_event SET (autovacuum_enabled = off)")
    warehouse_conn.commit()
    load_provider_events(
        warehouse_conn,
        [
            ProviderEvent(
                provider="gc_notify",
                provider_reference=f"ref-{i}",
                raw_status="delivered",
                delivery_status="delivered",
                event_at=NOW - timedelta(minutes=i),
                source="test",
                detail=f"detail {i}",
            )
            for i in range(500)
        ],
    )
    warehouse_conn.execute("SELECT pg_stat_force_next_flush()")
    warehouse_conn.commit()
    reconcile(warehouse_conn, now=NOW)
    warehouse_conn.execute("SELECT pg_stat_force_next_flush()")
    warehouse_conn.commit()
    (known_rows,) = warehouse_conn.execute(
        "SELECT reltuples FROM pg_class WHERE oid = 'mailtrace.provider_event'::regclass"
    ).fetchone()
    histogram_bounds = dict(
        warehouse_conn.execute(
            """SELECT attname, coalesce(array_length(histogram_bounds::text::text[], 1), 0) FROM pg_stats
               WHERE schemaname = 'mailtrace' AND tablename = 'provider_event'"""
        ).fetchall()
    )
    (changed_since_analyze,) = warehouse_conn.execute(
        """SELECT n_mod_since_analyze FROM pg_stat_user_tables
           WHERE relid = 'mailtrace.provider_event'::regclass"""
    ).fetchone()
    warehouse_conn.commit()
    assert known_rows == 500
    assert {"id", "provider", "provider_reference"} <= histogram_bounds.keys()
    assert "detail" not in histogram_bounds
    # 500 distinct references: 11 bounds at the quick target of 10, 101 at the default 100
    assert 0 < histogram_bounds["provider_reference"] <= 11
    assert changed_since_analyze >= 500
