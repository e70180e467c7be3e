"""Invalid-address flags: set, clear, re-flag, audit history, rebuild = incremental.

Rows go straight into the event log, the contact table and mailtrace.delivery (the verdicts), as
reconcile leaves them; `update_flags` / `rebuild_flags` then run against real Postgres.
"""

from __future__ import annotations

import os
import random
from datetime import UTC, datetime, timedelta

import pytest
from conftest import REPO_ROOT
from eventlog import insert_logged
from eventlog import set_verdict as record_verdict

from mailtrace.flags import rebuild_flags, update_flags

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
SUBJECT = ("registration", "STR-1")


def at(hours: float) -> datetime:
    return T0 + timedelta(hours=hours)


def set_contact(conn, email, *, subject=SUBJECT, updated_at=None):
    conn.execute(
        """INSERT INTO mailtrace.contact (subject_type, subject_id, email, updated_at)
           VALUES (%(type)s, %(id)s, %(email)s, coalesce(%(updated_at)s, now()))
           ON CONFLICT (subject_type, subject_id)
           DO UPDATE SET email = EXCLUDED.email, updated_at = EXCLUDED.updated_at""",
        {"type": subject[0], "id": subject[1], "email": email, "updated_at": updated_at},
    )
    conn.commit()


def add_event(conn, event_id, email, sent_at, status, reason=None, *, subject=SUBJECT, verdict_at=None):
    """One notification with its verdict (as reconcile writes it: delivery_updated_at = now())."""
    insert_logged(
        conn,
        {
            "event_id": event_id,
            "subject_type": subject[0],
            "subject_id": subject[1],
            "notification_type": "NOC",
            "recipient_email": email,
            "provider": "gc_notify",
            "provider_reference": event_id,
            "sent_at": sent_at,
            "local_status": "SENT",
            "delivery_status": status,
            "failure_reason": reason,
            "delivery_updated_at": verdict_at,
        },
    )
    conn.commit()


def set_verdict(conn, event_id, status, reason=None):
    record_verdict(conn, event_id, status, reason)
    conn.commit()


def rows(conn, query):
    """Fetch, then end the read transaction: the flag functions refuse an open one."""
    result = conn.execute(query).fetchall()
    conn.commit()
    return result


def flagged(conn):
    return rows(
        conn,
        """SELECT subject_type, subject_id, email, failure_reason, flagged_at, last_failed_event_id
             FROM mailtrace.flagged_address ORDER BY subject_type, subject_id""",
    )


def history(conn):
    return rows(
        conn,
        """SELECT subject_id, email, action, failure_reason, cause, event_id, happened_at
             FROM mailtrace.flag_history ORDER BY id""",
    )


def state(conn):
    """The whole flag state, without its bookkeeping timestamp."""
    return rows(
        conn,
        """SELECT subject_type, subject_id, email, failure_reason, cause, flagged_at, last_failed_event_id
             FROM mailtrace.address_flag ORDER BY subject_type, subject_id""",
    )


def run(conn, **kwargs):
    counts = update_flags(conn, **kwargs)
    return counts["set"], counts["cleared"]


def test_hard_bounce_sets_flag_with_history(warehouse_conn):
    set_contact(warehouse_conn, "Ann@Example.gov")
    add_event(warehouse_conn, "e1", "ann@example.gov", at(0), "delivered")
    add_event(warehouse_conn, "e2", " ANN@example.gov", at(1), "permanent_failure", "invalid_address")

    assert run(warehouse_conn) == (1, 0)

    assert flagged(warehouse_conn) == [
        ("registration", "STR-1", "Ann@Example.gov", "invalid_address", at(1), "e2")
    ]
    assert history(warehouse_conn) == [
        ("STR-1", "ann@example.gov", "set", "invalid_address", "bounce", "e2", at(1))
    ]


def test_suppressed_sets_flag(warehouse_conn):
    set_contact(warehouse_conn, "bob@example.gov")
    add_event(warehouse_conn, "e1", "bob@example.gov", at(0), "permanent_failure", "suppressed")

    assert run(warehouse_conn) == (1, 0)

    assert [row[3] for row in flagged(warehouse_conn)] == ["suppressed"]


def test_failures_that_say_nothing_about_the_address_do_not_flag(warehouse_conn):
    set_contact(warehouse_conn, "bob@example.gov")
    add_event(warehouse_conn, "e1", "bob@example.gov", at(0), "permanent_failure", "content_rejected")
    add_event(warehouse_conn, "e2", "bob@example.gov", at(1), "technical_failure", "provider_error")
    add_event(warehouse_conn, "e3", "bob@example.gov", at(2), "send_failed")

    assert run(warehouse_conn) == (0, 0)
    assert flagged(warehouse_conn) == []


def test_temporary_failures_below_threshold_do_not_flag(warehouse_conn):
    set_contact(warehouse_conn, "cat@example.gov")
    add_event(warehouse_conn, "e1", "cat@example.gov", at(0), "temporary_failure", "mailbox_full")
    add_event(warehouse_conn, "e2", "cat@example.gov", at(1), "temporary_failure", "no_receipt")

    assert run(warehouse_conn, soft_failure_threshold=3) == (0, 0)
    assert flagged(warehouse_conn) == []
    # Without a threshold soft failures never flag, however many there are.
    add_event(warehouse_conn, "e3", "cat@example.gov", at(2), "temporary_failure", "mailbox_full")
    assert run(warehouse_conn) == (0, 0)
    assert flagged(warehouse_conn) == []


def test_flags_at_threshold_of_consecutive_temporary_failures(warehouse_conn):
    set_contact(warehouse_conn, "cat@example.gov")
    add_event(warehouse_conn, "e1", "cat@example.gov", at(0), "temporary_failure", "mailbox_full")
    add_event(warehouse_conn, "e2", "cat@example.gov", at(1), "temporary_failure", "mailbox_full")
    add_event(warehouse_conn, "e3", "cat@example.gov", at(2), "delivered")
    add_event(warehouse_conn, "e4", "cat@example.gov", at(3), "temporary_failure", "mailbox_full")
    add_event(warehouse_conn, "e5", "cat@example.gov", at(4), "temporary_failure", "no_receipt")
    # A delivery breaks the streak: only e4 and e5 count.
    assert run(warehouse_conn, soft_failure_threshold=3) == (0, 0)

    add_event(warehouse_conn, "e6", "cat@example.gov", at(5), "temporary_failure", "no_receipt")
    assert run(warehouse_conn, soft_failure_threshold=3) == (1, 0)

    assert flagged(warehouse_conn) == [
        ("registration", "STR-1", "cat@example.gov", "no_receipt", at(5), "e6")
    ]
    assert history(warehouse_conn)[-1][2:6] == ("set", "no_receipt", "soft_failures", "e6")


def test_address_change_clears(warehouse_conn):
    set_contact(warehouse_conn, "old@example.gov")
    add_event(warehouse_conn, "e1", "old@example.gov", at(0), "permanent_failure", "invalid_address")
    run(warehouse_conn)
    changed_at = at(10)

    set_contact(warehouse_conn, "new@example.gov", updated_at=changed_at)
    # The contract view drops the row at once, before any flags run.
    assert flagged(warehouse_conn) == []
    assert run(warehouse_conn) == (0, 1)

    assert state(warehouse_conn) == []
    assert history(warehouse_conn)[-1] == (
        "STR-1",
        "old@example.gov",
        "cleared",
        "invalid_address",
        "contact_change",
        None,
        changed_at,
    )


def test_case_only_change_does_not_clear(warehouse_conn):
    set_contact(warehouse_conn, "dan@example.gov")
    add_event(warehouse_conn, "e1", "dan@example.gov", at(0), "permanent_failure", "invalid_address")
    run(warehouse_conn)

    set_contact(warehouse_conn, "  Dan@EXAMPLE.gov ")
    assert run(warehouse_conn) == (0, 0)

    assert flagged(warehouse_conn) == [
        ("registration", "STR-1", "  Dan@EXAMPLE.gov ", "invalid_address", at(0), "e1")
    ]
    assert len(history(warehouse_conn)) == 1


def test_later_delivery_clears(warehouse_conn):
    set_contact(warehouse_conn, "eve@example.gov")
    add_event(warehouse_conn, "e1", "eve@example.gov", at(0), "permanent_failure", "invalid_address")
    run(warehouse_conn)

    add_event(warehouse_conn, "e2", "EVE@example.gov", at(5), "delivered")
    assert run(warehouse_conn) == (0, 1)

    assert flagged(warehouse_conn) == []
    assert history(warehouse_conn)[-1] == (
        "STR-1",
        "eve@example.gov",
        "cleared",
        "invalid_address",
        "delivery",
        "e2",
        at(5),
    )


SECOND = ("registration", "STR-2")


def test_a_bounce_flags_every_subject_at_that_address(warehouse_conn):
    """The flag judges the address: a host's two registrations share it, one notice bounces."""
    set_contact(warehouse_conn, "host@example.gov")
    set_contact(warehouse_conn, " Host@Example.gov", subject=SECOND)
    set_contact(warehouse_conn, "other@example.gov", subject=("registration", "STR-3"))
    add_event(warehouse_conn, "e1", "host@example.gov", at(0), "permanent_failure", "invalid_address")

    assert run(warehouse_conn) == (2, 0)

    assert [(row[1], row[5]) for row in flagged(warehouse_conn)] == [("STR-1", "e1"), ("STR-2", "e1")]


def test_a_later_delivery_for_another_subject_at_that_address_clears(warehouse_conn):
    set_contact(warehouse_conn, "host@example.gov")
    add_event(warehouse_conn, "e1", "host@example.gov", at(0), "permanent_failure", "invalid_address")
    run(warehouse_conn)

    # The address works after all: a notice about another registration (whose contact is elsewhere now).
    set_contact(warehouse_conn, "elsewhere@example.gov", subject=SECOND)
    add_event(warehouse_conn, "e2", "HOST@example.gov", at(5), "delivered", subject=SECOND)
    assert run(warehouse_conn) == (0, 1)

    assert flagged(warehouse_conn) == []
    assert history(warehouse_conn)[-1][4:] == ("delivery", "e2", at(5))


def test_earlier_dated_delivery_does_not_clear(warehouse_conn):
    set_contact(warehouse_conn, "fay@example.gov")
    add_event(warehouse_conn, "e2", "fay@example.gov", at(5), "permanent_failure", "invalid_address")
    add_event(warehouse_conn, "e1", "fay@example.gov", at(0), "pending")
    run(warehouse_conn)

    # The receipt for the earlier notification arrives after the bounce was recorded.
    set_verdict(warehouse_conn, "e1", "delivered")
    assert run(warehouse_conn) == (0, 0)

    assert flagged(warehouse_conn) == [
        ("registration", "STR-1", "fay@example.gov", "invalid_address", at(5), "e2")
    ]


def test_unrelated_later_outcome_does_not_clear(warehouse_conn):
    set_contact(warehouse_conn, "fay@example.gov")
    add_event(warehouse_conn, "e1", "fay@example.gov", at(0), "permanent_failure", "invalid_address")
    add_event(warehouse_conn, "e2", "fay@example.gov", at(1), "technical_failure", "provider_error")
    add_event(warehouse_conn, "e3", "other@example.gov", at(2), "delivered")

    assert run(warehouse_conn) == (1, 0)
    assert [row[5] for row in flagged(warehouse_conn)] == ["e1"]


def test_new_address_that_bounces_is_flagged_again(warehouse_conn):
    set_contact(warehouse_conn, "gus@example.gov")
    add_event(warehouse_conn, "e1", "gus@example.gov", at(0), "permanent_failure", "invalid_address")
    run(warehouse_conn)
    set_contact(warehouse_conn, "gus@example.org", updated_at=at(1))
    run(warehouse_conn)

    add_event(warehouse_conn, "e2", "gus@example.org", at(2), "permanent_failure", "suppressed")
    assert run(warehouse_conn) == (1, 0)

    assert flagged(warehouse_conn) == [
        ("registration", "STR-1", "gus@example.org", "suppressed", at(2), "e2")
    ]
    assert [(row[1], row[2], row[4], row[5]) for row in history(warehouse_conn)] == [
        ("gus@example.gov", "set", "bounce", "e1"),
        ("gus@example.gov", "cleared", "contact_change", None),
        ("gus@example.org", "set", "bounce", "e2"),
    ]


def test_change_to_an_address_that_already_bounced_clears_then_sets(warehouse_conn):
    set_contact(warehouse_conn, "hal@example.gov")
    add_event(warehouse_conn, "e1", "hal@example.org", at(0), "permanent_failure", "invalid_address")
    add_event(warehouse_conn, "e2", "hal@example.gov", at(1), "permanent_failure", "invalid_address")
    run(warehouse_conn)

    set_contact(warehouse_conn, "hal@example.org", updated_at=at(2))
    assert run(warehouse_conn) == (1, 1)

    assert [(row[1], row[2], row[5]) for row in history(warehouse_conn)[1:]] == [
        ("hal@example.gov", "cleared", None),
        ("hal@example.org", "set", "e1"),
    ]
    assert [row[5] for row in flagged(warehouse_conn)] == ["e1"]


def test_change_to_an_address_that_bounced_before_sets(warehouse_conn):
    long_ago = datetime.now(UTC) - timedelta(days=2)
    set_contact(warehouse_conn, "ida@example.gov", updated_at=long_ago)
    add_event(warehouse_conn, "e1", "ida@example.gov", at(0), "delivered", verdict_at=long_ago)
    add_event(
        warehouse_conn,
        "e2",
        "ida@example.org",
        at(1),
        "permanent_failure",
        "invalid_address",
        verdict_at=long_ago,
    )
    assert run(warehouse_conn) == (0, 0)

    # Only the contact moved; the event log did not (and no overlap re-reads it).
    set_contact(warehouse_conn, "ida@example.org")
    assert run(warehouse_conn, overlap=timedelta(0)) == (1, 0)
    assert [row[5] for row in flagged(warehouse_conn)] == ["e2"]


def test_contact_change_clears_even_without_a_newer_updated_at(warehouse_conn):
    long_ago = datetime.now(UTC) - timedelta(days=2)
    set_contact(warehouse_conn, "jo@example.gov", updated_at=long_ago)
    add_event(
        warehouse_conn,
        "e1",
        "jo@example.gov",
        at(0),
        "permanent_failure",
        "invalid_address",
        verdict_at=long_ago,
    )
    run(warehouse_conn)

    # An application that rewrites the address without touching updated_at.
    set_contact(warehouse_conn, "jo@example.org", updated_at=long_ago)
    assert run(warehouse_conn, overlap=timedelta(0)) == (0, 1)


def test_removed_contact_clears(warehouse_conn):
    set_contact(warehouse_conn, "ivy@example.gov")
    add_event(warehouse_conn, "e1", "ivy@example.gov", at(0), "permanent_failure", "invalid_address")
    run(warehouse_conn)

    warehouse_conn.execute("DELETE FROM mailtrace.contact")
    warehouse_conn.commit()

    assert run(warehouse_conn) == (0, 1)
    assert history(warehouse_conn)[-1][2:6] == ("cleared", "invalid_address", "contact_change", None)


def test_second_run_without_new_data_writes_nothing(warehouse_conn):
    set_contact(warehouse_conn, "jay@example.gov")
    add_event(warehouse_conn, "e1", "jay@example.gov", at(0), "permanent_failure", "invalid_address")
    run(warehouse_conn)
    (updated_at,) = warehouse_conn.execute("SELECT updated_at FROM mailtrace.address_flag").fetchone()
    warehouse_conn.commit()

    assert run(warehouse_conn) == (0, 0)
    assert rebuild_flags(warehouse_conn)["set"] == 0

    assert len(history(warehouse_conn)) == 1
    assert warehouse_conn.execute("SELECT updated_at FROM mailtrace.address_flag").fetchone() == (updated_at,)


def test_later_bounce_moves_last_failed_event_without_a_new_history_row(warehouse_conn):
    set_contact(warehouse_conn, "kim@example.gov")
    add_event(warehouse_conn, "e1", "kim@example.gov", at(0), "permanent_failure", "suppressed")
    run(warehouse_conn)
    add_event(warehouse_conn, "e2", "kim@example.gov", at(1), "permanent_failure", "invalid_address")

    assert run(warehouse_conn) == (0, 0)

    assert flagged(warehouse_conn) == [
        ("registration", "STR-1", "kim@example.gov", "invalid_address", at(0), "e2")
    ]
    assert len(history(warehouse_conn)) == 1


def test_incremental_run_looks_only_at_touched_subjects(warehouse_conn):
    long_ago = datetime.now(UTC) - timedelta(days=2)
    for n in range(20):
        subject = ("registration", f"STR-{n}")
        set_contact(warehouse_conn, f"p{n}@example.gov", subject=subject, updated_at=long_ago)
        add_event(
            warehouse_conn,
            f"e{n}",
            f"p{n}@example.gov",
            at(0),
            "delivered",
            subject=subject,
            verdict_at=long_ago,
        )
    assert update_flags(warehouse_conn)["evaluated"] == 20
    assert update_flags(warehouse_conn)["evaluated"] == 0

    add_event(
        warehouse_conn,
        "bounce",
        "p3@example.gov",
        at(1),
        "permanent_failure",
        "invalid_address",
        subject=("registration", "STR-3"),
    )
    counts = update_flags(warehouse_conn)

    assert (counts["full"], counts["evaluated"], counts["set"]) == (False, 1, 1)


def test_late_committed_verdict_within_the_overlap_is_seen(warehouse_conn):
    set_contact(warehouse_conn, "lee@example.gov", updated_at=datetime.now(UTC) - timedelta(days=2))
    update_flags(warehouse_conn)

    # Stamped by a transaction that started before the last run but committed only after it.
    add_event(
        warehouse_conn,
        "e1",
        "lee@example.gov",
        at(1),
        "permanent_failure",
        "invalid_address",
        verdict_at=datetime.now(UTC) - timedelta(minutes=30),
    )
    assert run(warehouse_conn) == (1, 0)


def test_changed_threshold_recomputes_every_subject(warehouse_conn):
    set_contact(warehouse_conn, "max@example.gov")
    add_event(warehouse_conn, "e1", "max@example.gov", at(0), "temporary_failure", "mailbox_full")
    add_event(warehouse_conn, "e2", "max@example.gov", at(1), "temporary_failure", "mailbox_full")
    assert run(warehouse_conn, soft_failure_threshold=2) == (1, 0)

    counts = update_flags(warehouse_conn, soft_failure_threshold=3)

    assert (counts["full"], counts["cleared"]) == (True, 1)
    assert history(warehouse_conn)[-1][2:6] == ("cleared", "mailbox_full", "recomputed", None)


def test_dry_run_rebuild_counts_and_writes_nothing(warehouse_conn):
    set_contact(warehouse_conn, "ned@example.gov")
    add_event(warehouse_conn, "e1", "ned@example.gov", at(0), "permanent_failure", "invalid_address")

    counts = rebuild_flags(warehouse_conn, dry_run=True)

    assert counts["set"] == 1
    assert state(warehouse_conn) == [] and history(warehouse_conn) == []


def test_refuses_to_run_inside_an_open_transaction(warehouse_conn):
    warehouse_conn.execute("SELECT 1")
    with pytest.raises(RuntimeError, match="no open transaction"):
        update_flags(warehouse_conn)
    warehouse_conn.rollback()


@pytest.mark.parametrize("threshold", [0, -1, True])
def test_rejects_a_threshold_that_is_not_a_positive_integer(warehouse_conn, threshold):
    with pytest.raises(ValueError, match="positive integer"):
        update_flags(warehouse_conn, soft_failure_threshold=threshold)


def test_export_view_lists_the_flagged_addresses(warehouse_conn):
    set_contact(warehouse_conn, "oz@example.gov")
    add_event(warehouse_conn, "e1", "oz@example.gov", at(0), "permanent_failure", "invalid_address")
    run(warehouse_conn)

    rows = warehouse_conn.execute(
        """SELECT subject_type, subject_id, email, failure_reason, cause, flagged_at, last_failed_event_id
             FROM mailtrace.flagged_address_export"""
    ).fetchall()
    (kind,) = warehouse_conn.execute(
        "SELECT relkind FROM pg_class WHERE oid = 'mailtrace.flagged_address_export'::regclass"
    ).fetchone()

    assert rows == [("registration", "STR-1", "oz@example.gov", "invalid_address", "bounce", at(0), "e1")]
    assert kind == "v"


OUTCOMES = [
    ("delivered", None),
    ("complaint", None),
    ("permanent_failure", "invalid_address"),
    ("permanent_failure", "suppressed"),
    ("permanent_failure", "content_rejected"),
    ("temporary_failure", "mailbox_full"),
    ("temporary_failure", "no_receipt"),
    ("technical_failure", "provider_error"),
    ("pending", None),
]


@pytest.mark.parametrize(
    ("seed", "threshold", "shared"),
    [
        (1, None, False),
        (2, 2, False),
        (3, 3, False),
        (4, None, False),
        (5, 2, False),
        (6, None, True),
        (7, 2, True),
    ],
)
def test_rebuild_equals_incremental(warehouse_conn, seed, threshold, shared):
    """Random event arrivals, late receipts and contact changes; incremental after every step.

    With `shared`, every subject may also use one family address, so subjects flag and clear each other.
    """
    rng = random.Random(seed)
    subjects = [("registration", f"STR-{n}") for n in range(8)]
    addresses = {
        subject: [f"{subject[1].lower()}@example.gov", f"{subject[1].lower()}@example.org"]
        + (["family@example.gov"] if shared else [])
        for subject in subjects
    }
    for subject in subjects:
        set_contact(warehouse_conn, addresses[subject][0], subject=subject)
    events = []
    for step in range(60):
        subject = rng.choice(subjects)
        action = rng.random()
        if action < 0.15:
            # a real change, or only a change of case and spacing
            email = rng.choice(addresses[subject])
            set_contact(warehouse_conn, rng.choice([email, f" {email.upper()} "]), subject=subject)
        elif action < 0.35 and events:
            # a verdict arriving late, or revised, for an earlier notification
            status, reason = rng.choice(OUTCOMES)
            set_verdict(warehouse_conn, rng.choice(events), status, reason)
        else:
            status, reason = rng.choice(OUTCOMES)
            event_id = f"s{seed}-{step}"
            # sent_at not in arrival order: receipts and logs do not come in order
            sent_at = at(step + rng.randint(-5, 5))
            email = rng.choice(addresses[subject] + [addresses[subject][0].upper()])
            add_event(warehouse_conn, event_id, email, sent_at, status, reason, subject=subject)
            events.append(event_id)
        # No overlap: nothing commits late here, so each run sees only what the cursors let through.
        update_flags(warehouse_conn, soft_failure_threshold=threshold, overlap=timedelta(0))
    incremental = state(warehouse_conn)
    history_rows = history(warehouse_conn)
    assert incremental, "the scenario should leave some address flagged"
    # The history replays to the state: a subject's last transition is a 'set' exactly when it is flagged.
    last_transition = {row[0]: (row[1], row[2]) for row in history_rows}
    standing = {subject_id: (email, "set") for _, subject_id, email, *_ in incremental}
    assert {key: value for key, value in last_transition.items() if value[1] == "set"} == standing

    counts = rebuild_flags(warehouse_conn, soft_failure_threshold=threshold)
    assert (counts["set"], counts["cleared"]) == (0, 0)
    assert state(warehouse_conn) == incremental
    assert history(warehouse_conn) == history_rows

    warehouse_conn.execute("DELETE FROM mailtrace.address_flag")
    warehouse_conn.commit()
    rebuild_flags(warehouse_conn, soft_failure_threshold=threshold)
    assert state(warehouse_conn) == incremental


def test_rebuild_dag_runs_the_rebuild_with_the_variable_threshold(warehouse_conn, monkeypatch):
    from airflow.dag_processing.dagbag import DagBag

    set_contact(warehouse_conn, "pat@example.gov")
    add_event(warehouse_conn, "e1", "pat@example.gov", at(0), "temporary_failure", "mailbox_full")
    add_event(warehouse_conn, "e2", "pat@example.gov", at(1), "temporary_failure", "no_receipt")
    monkeypatch.setenv("AIRFLOW_VAR_MAILTRACE_SOFT_FAILURE_FLAG_THRESHOLD", "2")
    bag = DagBag(dag_folder=os.path.join(REPO_ROOT, "dags", "mailtrace_flags_rebuild.py"))
    dag = bag.dags["mailtrace_flags_rebuild"]

    assert not bag.import_errors
    assert dag.schedule is None and dag.params["dry_run"] is False
    result = dag.get_task("rebuild_address_flags").python_callable(params={"dry_run": False})

    assert (result["full"], result["set"]) == (True, 1)
    assert [row[5] for row in flagged(warehouse_conn)] == ["e2"]
