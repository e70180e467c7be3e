"""Warnings the pipeline records for the health panel (mailtrace.pipeline_warning, migration 015)."""

from __future__ import annotations

import pytest

from mailtrace.input_indexes import INPUT_LOOKUPS, warn_missing_input_indexes
from mailtrace.pipeline_warnings import MISSING_INPUT_INDEX, record_check


def rows(conn):
    return conn.execute(
        """SELECT kind, subject, message, run_count, resolved_at IS NULL AS open,
                  first_seen_at, last_seen_at
             FROM mailtrace.pipeline_warning ORDER BY kind, subject"""
    ).fetchall()


def check(conn, kind, found, checked):
    with conn.transaction():
        record_check(conn, kind, found, checked=checked)


def test_one_row_per_warning_counted_by_run_resolved_when_gone_and_started_over_when_back(warehouse_conn):
    conn = warehouse_conn
    check(conn, "k", {"a": "first a", "b": "b"}, ["a", "b", "c"])
    ((_, _, _, _, _, a_first, a_last), _) = rows(conn)
    check(conn, "k", {"a": "second a"}, ["a", "b", "c"])
    (a, b) = rows(conn)
    assert a[:5] == ("k", "a", "second a", 2, True)
    assert a[5] == a_first and a[6] > a_last
    assert b[:5] == ("k", "b", "b", 1, False)  # the check looked for it and did not find it

    # A check that covers other subjects, or proves nothing (no subjects), resolves nothing of these.
    check(conn, "k", {}, ["c"])
    check(conn, "k", {"b": "b again"}, [])
    (a, b) = rows(conn)
    assert (a[3:5], b[3:5]) == ((2, True), (1, True))
    assert b[5] > a[5]  # met again after it was resolved: it starts over

    # A walk over every subject of its kind (checked=None) resolves all it did not meet, of that kind only.
    check(conn, "other", {"x": "x"}, None)
    check(conn, "k", {}, None)
    assert [(r[0], r[1], r[4]) for r in rows(conn)] == [
        ("k", "a", False),
        ("k", "b", False),
        ("other", "x", True),
    ]


def test_addresses_are_masked_in_what_is_stored(warehouse_conn):
    check(warehouse_conn, "k", {"status for jane.doe@example.com": "Notify said jane.doe@example.com"}, None)
    ((_, subject, message, *_),) = rows(warehouse_conn)
    assert "jane.doe@example.com" not in subject + message
    assert message == "Notify said j***@example.com"
    check(warehouse_conn, "k", {}, ["status for jane.doe@example.com"])  # resolved by the same subject
    assert [r[4] for r in rows(warehouse_conn)] == [False]


def test_a_rolled_back_run_records_nothing(warehouse_conn):
    with pytest.raises(ZeroDivisionError):
        with warehouse_conn.transaction():
            record_check(warehouse_conn, "k", {"a": "a"}, checked=None)
            1 / 0  # noqa: B018 - the run fails after recording
    assert rows(warehouse_conn) == []


def test_the_index_check_records_a_missing_index_and_resolves_it_once_built(warehouse_conn):
    conn = warehouse_conn
    (name, definition) = conn.execute(
        """SELECT indexname, indexdef FROM pg_indexes
            WHERE schemaname = 'mailtrace' AND tablename = 'contact' AND indexdef LIKE '%%(updated_at)%%'"""
    ).fetchone()
    with conn.transaction():
        conn.execute(f'DROP INDEX mailtrace."{name}"')
    for _ in range(2):
        with conn.transaction():
            warn_missing_input_indexes(conn, INPUT_LOOKUPS["contact"])
    ((kind, subject, message, run_count, still_open, *_),) = rows(conn)
    assert (kind, subject, run_count, still_open) == (
        MISSING_INPUT_INDEX,
        "mailtrace.contact (updated_at)",
        2,
        True,
    )
    assert "no index serves look-ups by (updated_at)" in message

    with conn.transaction():
        conn.execute(definition)
        warn_missing_input_indexes(conn, INPUT_LOOKUPS["contact"])
    assert [r[4] for r in rows(conn)] == [False]


def _store_notify_status(conn, reference, raw_status, delivery_status, event_at):
    conn.execute(
        """INSERT INTO mailtrace.provider_event
               (provider, provider_reference, raw_status, delivery_status, event_at, observed_at, source)
           VALUES ('gc_notify', %s, %s, %s, %s, %s, 'test')""",
        (reference, raw_status, delivery_status, event_at, event_at),
    )


def test_an_unmapped_notify_status_stays_open_until_no_notification_is_held_back_by_it(warehouse_conn):
    from collections import Counter
    from datetime import UTC, datetime, timedelta

    from mailtrace.notify_extract import _report_unmapped
    from mailtrace.pipeline_warnings import UNMAPPED_NOTIFY_STATUS

    conn = warehouse_conn
    sent = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)
    _store_notify_status(conn, "n-1", "returned-to-sender", None, sent)
    _store_notify_status(conn, "n-2", "returned-to-sender", None, sent)
    _report_unmapped(conn, Counter({"returned-to-sender": 2}))

    def open_statuses():
        return conn.execute(
            "SELECT subject FROM mailtrace.pipeline_warning WHERE kind = %s AND resolved_at IS NULL",
            (UNMAPPED_NOTIFY_STATUS,),
        ).fetchall()

    # The next walk does not meet the status (its notifications are older than the walk's window): the
    # notifications are still without a verdict, so the warning holds.
    _report_unmapped(conn, Counter())
    assert open_statuses() == [("returned-to-sender",)]

    # One of them gets a mapped status later: the other still holds the warning open.
    _store_notify_status(conn, "n-1", "delivered", "delivered", sent + timedelta(minutes=5))
    _report_unmapped(conn, Counter())
    assert open_statuses() == [("returned-to-sender",)]

    # Both have: resolved.
    _store_notify_status(conn, "n-2", "permanent-failure", "permanent_failure", sent + timedelta(minutes=5))
    _report_unmapped(conn, Counter())
    assert open_statuses() == []
