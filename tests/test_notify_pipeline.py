"""Extract, load and reconcile against the Notify simulator and a real Postgres warehouse."""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from mailtrace.events import ProviderEvent
from mailtrace.load import load_provider_events
from mailtrace.notify_extract import WATERMARK_STATE, extract_list, lookup_open_events, walk_start
from mailtrace.providers.gc_notify import NotifyApiError, NotifyClient, PaginationLoopError
from mailtrace.reconcile import reconcile
from mailtrace.warehouse import get_state

NOW = datetime.now(UTC).replace(microsecond=0)


def make_client(sim, delays=None):
    recorded = delays if delays is not None else []
    return NotifyClient(sim.api_key, sim.base_url, backoff_base=0.01, sleep=recorded.append)


def add_event(
    conn,
    event_id,
    *,
    provider_reference=None,
    client_reference=None,
    sent_at=None,
    local_status="SENT",
    email="person@example.gov",
    notification_type="RENEWAL_REMINDER",
):
    conn.execute(
        """INSERT INTO mailtrace.notification_event (event_id, subject_type, subject_id, notification_type,
               recipient_email, provider, provider_reference, client_reference, sent_at, local_status)
           VALUES (%s, 'registration', %s, %s, %s, 'gc_notify', %s, %s, %s, %s)""",
        (
            event_id,
            "STR-" + event_id,
            notification_type,
            email,
            provider_reference,
            client_reference,
            sent_at or NOW - timedelta(minutes=30),
            local_status,
        ),
    )
    conn.commit()


def sim_row(
    notification_id=None,
    *,
    status="delivered",
    created_at=None,
    email="person@example.gov",
    reference=None,
    **extra,
):
    created_at = created_at or NOW - timedelta(minutes=30)
    row = {
        "id": notification_id or str(uuid.uuid4()),
        "email_address": email,
        "status": status,
        "created_at": created_at,
        "sent_at": created_at + timedelta(seconds=2),
        "completed_at": created_at + timedelta(seconds=9) if status not in ("sending", "created") else None,
        "reference": reference,
    }
    row.update(extra)
    return row


def verdict(conn, event_id):
    row = conn.execute(
        "SELECT delivery_status, failure_reason FROM mailtrace.notification_status WHERE event_id = %s",
        (event_id,),
    ).fetchone()
    conn.commit()
    return row


def history_count(conn):
    (count,) = conn.execute("SELECT count(*) FROM mailtrace.provider_event").fetchone()
    conn.commit()
    return count


def test_list_walk_follows_pagination_and_sets_watermark(warehouse_conn, notify_sim):
    rows = [sim_row(created_at=NOW - timedelta(minutes=600 - i)) for i in range(600)]
    notify_sim.add_notifications(rows)

    result = extract_list(warehouse_conn, make_client(notify_sim), now=NOW)

    # 250 + 250 + 100, then the empty page Notify links to after any non-empty one.
    assert result["pages"] == 4
    assert result["notifications"] == 600
    assert result["inserted"] == 600
    assert history_count(warehouse_conn) == 600
    newest = max(r["created_at"] for r in rows)
    assert datetime.fromisoformat(get_state(warehouse_conn, WATERMARK_STATE)) == newest


def test_walk_stops_at_watermark_minus_overlap(warehouse_conn, notify_sim):
    old = [sim_row(created_at=NOW - timedelta(hours=10, minutes=i)) for i in range(5)]
    notify_sim.add_notifications([*old, sim_row(created_at=NOW - timedelta(hours=1))])
    extract_list(warehouse_conn, make_client(notify_sim), now=NOW)
    recent = [sim_row(created_at=NOW - timedelta(minutes=5 + i)) for i in range(3)]
    notify_sim.add_notifications(recent)

    second = extract_list(warehouse_conn, make_client(notify_sim), now=NOW, overlap=timedelta(hours=2))

    # Watermark is NOW-1h: the walk re-reads back to NOW-3h (the overlap) and stops before the old rows.
    assert second["notifications"] == 4
    assert second["inserted"] == 3
    assert history_count(warehouse_conn) == 9


def test_a_bounce_days_after_delivery_is_found_by_the_late_receipt_sweep(warehouse_conn, notify_sim):
    bounced = sim_row(status="delivered", created_at=NOW - timedelta(hours=30))
    notify_sim.add_notifications([bounced, sim_row(created_at=NOW - timedelta(minutes=10))])
    add_event(warehouse_conn, "e1", provider_reference=bounced["id"], sent_at=NOW - timedelta(hours=30))
    client = make_client(notify_sim)
    first = extract_list(warehouse_conn, client, now=NOW)
    reconcile(warehouse_conn, now=NOW)
    assert first["late_receipt_sweep"] is True  # the first walk reads everything Notify keeps anyway
    assert verdict(warehouse_conn, "e1") == ("delivered", None)

    notify_sim.set_status(bounced["id"], "permanent-failure", provider_response="550 No such user")
    # An hour later: only the overlap is re-read, which no longer reaches a 30-hour-old notification.
    routine = extract_list(warehouse_conn, client, now=NOW + timedelta(hours=1))
    reconcile(warehouse_conn, now=NOW + timedelta(hours=1))
    assert (routine["late_receipt_sweep"], routine["notifications"]) == (False, 1)
    assert verdict(warehouse_conn, "e1") == ("delivered", None)

    # Six hours after the last sweep the walk reaches three days back: the later bounce wins.
    swept = extract_list(warehouse_conn, client, now=NOW + timedelta(hours=6))
    reconcile(warehouse_conn, now=NOW + timedelta(hours=6))
    assert (swept["late_receipt_sweep"], swept["notifications"]) == (True, 2)
    assert verdict(warehouse_conn, "e1") == ("permanent_failure", "invalid_address")


def test_walk_start_is_the_overlap_unless_a_sweep_is_due():
    watermark = NOW - timedelta(minutes=5)
    settings = {
        "overlap": timedelta(hours=2),
        "initial_lookback": timedelta(days=7),
        "sweep_every": timedelta(hours=6),
        "sweep_window": timedelta(days=3),
    }
    recent_sweep = NOW - timedelta(hours=5)
    assert walk_start(NOW, watermark, recent_sweep, **settings) == (watermark - timedelta(hours=2), False)
    assert walk_start(NOW, watermark, NOW - timedelta(hours=6), **settings) == (NOW - timedelta(days=3), True)
    assert walk_start(NOW, None, None, **settings) == (NOW - timedelta(days=7), True)
    off = {**settings, "sweep_every": timedelta(0)}
    assert walk_start(NOW, watermark, None, **off) == (watermark - timedelta(hours=2), False)


def test_same_window_twice_adds_nothing_and_gives_same_verdicts(warehouse_conn, notify_sim):
    ids = [str(uuid.uuid4()) for _ in range(4)]
    statuses = ["delivered", "permanent-failure", "temporary-failure", "sending"]
    notify_sim.add_notifications(
        [sim_row(i, status=s, reference=f"e{n}") for n, (i, s) in enumerate(zip(ids, statuses, strict=True))]
    )
    for n, notification_id in enumerate(ids):
        add_event(warehouse_conn, f"e{n}", provider_reference=notification_id, client_reference=f"e{n}")

    extract_list(warehouse_conn, make_client(notify_sim), now=NOW)
    reconcile(warehouse_conn, now=NOW)
    first = [verdict(warehouse_conn, f"e{n}") for n in range(4)]
    first_count = history_count(warehouse_conn)

    warehouse_conn.execute("DELETE FROM mailtrace.pipeline_state")  # forget every watermark and cursor
    warehouse_conn.commit()
    again = extract_list(warehouse_conn, make_client(notify_sim), now=NOW)
    summary = reconcile(warehouse_conn, now=NOW)

    assert again["inserted"] == 0
    assert history_count(warehouse_conn) == first_count == 4
    assert summary["updated"] == 0
    assert (
        [verdict(warehouse_conn, f"e{n}") for n in range(4)]
        == first
        == [
            ("delivered", None),
            ("permanent_failure", "invalid_address"),
            ("temporary_failure", "unknown"),  # "Content or inbox issue" names no cause
            ("pending", None),
        ]
    )


def test_outcomes_sent_through_the_api_reach_the_event_log(warehouse_conn, notify_sim, notify_client):
    outcomes = {
        "delivered": ("delivered", None),
        "bounce": ("permanent_failure", "invalid_address"),
        "suppressed": ("permanent_failure", "suppressed"),
        "account-suppressed": ("permanent_failure", "suppressed"),
        # The v2 API says only "Content or inbox issue" for a full inbox: the cause is not named.
        "mailbox-full": ("temporary_failure", "unknown"),
        "tech-fail": ("technical_failure", "provider_error"),
        "stuck": ("pending", None),
    }
    template_id = str(uuid.uuid4())
    for local_part in outcomes:
        response = notify_client.send_email_notification(
            email_address=f"{local_part}@example.gov", template_id=template_id, reference=local_part
        )
        add_event(
            warehouse_conn,
            local_part,
            provider_reference=response["id"],
            client_reference=local_part,
            email=f"{local_part}@example.gov",
            sent_at=NOW - timedelta(minutes=1),
        )

    extract_list(warehouse_conn, make_client(notify_sim), now=NOW)
    reconcile(warehouse_conn, now=NOW)

    assert {name: verdict(warehouse_conn, name) for name in outcomes} == outcomes


def test_id_lookup_refreshes_pending_events_older_than_the_list_window(warehouse_conn, notify_sim):
    old_id = str(uuid.uuid4())
    notify_sim.add_notifications([sim_row(old_id, status="sending", created_at=NOW - timedelta(days=2))])
    add_event(warehouse_conn, "old", provider_reference=old_id, sent_at=NOW - timedelta(days=2))
    load_provider_events(warehouse_conn, [pending_event(old_id, NOW - timedelta(days=2))])
    reconcile(warehouse_conn, now=NOW)
    assert verdict(warehouse_conn, "old") == ("pending", None)

    # The receipt arrives long after the list walk passed this notification; newer mail moved
    # the watermark on, so the walk no longer re-reads it.
    notify_sim.set_status(old_id, "delivered", completed_at=NOW - timedelta(hours=20))
    notify_sim.add_notifications([sim_row(created_at=NOW - timedelta(minutes=1))])
    extract_list(warehouse_conn, make_client(notify_sim), now=NOW)
    assert verdict(warehouse_conn, "old") == ("pending", None)
    looked_up = lookup_open_events(warehouse_conn, make_client(notify_sim), now=NOW)
    reconcile(warehouse_conn, now=NOW)

    assert looked_up["checked"] == 1
    assert verdict(warehouse_conn, "old") == ("delivered", None)


def pending_event(reference, at):
    return ProviderEvent(
        provider="gc_notify",
        provider_reference=reference,
        raw_status="sending",
        delivery_status="pending",
        event_at=at,
        source="test",
        recipient_email="person@example.gov",
    )


def final_event(reference, status, raw, at, reason=None):
    return ProviderEvent(
        provider="gc_notify",
        provider_reference=reference,
        raw_status=raw,
        delivery_status=status,
        failure_reason=reason,
        event_at=at,
        source="test",
        recipient_email="person@example.gov",
    )


def test_out_of_order_receipts_never_go_back_to_pending(warehouse_conn):
    add_event(warehouse_conn, "e1", provider_reference="n1")
    load_provider_events(
        warehouse_conn, [final_event("n1", "delivered", "delivered", NOW - timedelta(minutes=5))]
    )
    reconcile(warehouse_conn, now=NOW)
    # A pending observation dated later arrives afterwards (e.g. a stale page read by a slow run).
    load_provider_events(warehouse_conn, [pending_event("n1", NOW - timedelta(minutes=1))])
    reconcile(warehouse_conn, now=NOW)
    assert verdict(warehouse_conn, "e1") == ("delivered", None)


def test_bounce_after_delivered_wins_and_earlier_delivery_never_replaces_it(warehouse_conn):
    add_event(warehouse_conn, "e1", provider_reference="n1")
    load_provider_events(
        warehouse_conn, [final_event("n1", "delivered", "delivered", NOW - timedelta(minutes=20))]
    )
    reconcile(warehouse_conn, now=NOW)
    assert verdict(warehouse_conn, "e1") == ("delivered", None)

    bounce = final_event(
        "n1", "permanent_failure", "permanent-failure", NOW - timedelta(minutes=10), "invalid_address"
    )
    load_provider_events(warehouse_conn, [bounce])
    reconcile(warehouse_conn, now=NOW)
    assert verdict(warehouse_conn, "e1") == ("permanent_failure", "invalid_address")

    late_delivery = final_event("n1", "delivered", "Delivery", NOW - timedelta(minutes=15))
    load_provider_events(warehouse_conn, [late_delivery])
    reconcile(warehouse_conn, now=NOW)
    assert verdict(warehouse_conn, "e1") == ("permanent_failure", "invalid_address")


def test_equal_timestamps_go_to_the_more_severe_status(warehouse_conn):
    add_event(warehouse_conn, "e1", provider_reference="n1")
    at = NOW - timedelta(minutes=3)
    load_provider_events(
        warehouse_conn,
        [final_event("n1", "complaint", "Complaint", at), final_event("n1", "delivered", "Delivery", at)],
    )
    reconcile(warehouse_conn, now=NOW)
    assert verdict(warehouse_conn, "e1") == ("complaint", None)


def test_client_reference_fallback_when_app_has_no_provider_reference(warehouse_conn, notify_sim):
    notify_sim.add_notifications([sim_row(status="delivered", reference="evt-77")])
    add_event(warehouse_conn, "evt-77", provider_reference=None, client_reference="evt-77")
    extract_list(warehouse_conn, make_client(notify_sim), now=NOW)
    reconcile(warehouse_conn, now=NOW)
    assert verdict(warehouse_conn, "evt-77") == ("delivered", None)


def test_not_at_provider_after_grace_and_a_missed_lookup(warehouse_conn, notify_sim):
    lost_id = str(uuid.uuid4())  # the app recorded an id Notify never stored
    add_event(
        warehouse_conn, "young", provider_reference=str(uuid.uuid4()), sent_at=NOW - timedelta(minutes=30)
    )
    add_event(warehouse_conn, "lost", provider_reference=lost_id, sent_at=NOW - timedelta(hours=3))
    client = make_client(notify_sim)

    extract_list(warehouse_conn, client, now=NOW)
    looked_up = lookup_open_events(warehouse_conn, client, now=NOW, grace=timedelta(hours=2))
    reconcile(warehouse_conn, now=NOW, grace=timedelta(hours=2))

    assert looked_up == {"checked": 1, "missing": 1, "inserted": 0, "quarantined": 0}
    assert verdict(warehouse_conn, "lost") == ("not_at_provider", "unknown")
    assert verdict(warehouse_conn, "young") == (None, None)  # still inside the grace period


def test_a_garbled_or_blank_reference_does_not_stop_the_other_lookups(warehouse_conn, notify_sim):
    """Notify answers 400 to an id that is no UUID; one such event must not fail every look-up run."""
    three_hours_ago = NOW - timedelta(hours=3)
    add_event(warehouse_conn, "garbled", provider_reference="None", sent_at=three_hours_ago)
    add_event(
        warehouse_conn, "blank", provider_reference=" ", client_reference="ref-b", sent_at=three_hours_ago
    )
    delivered = sim_row(status="delivered", created_at=three_hours_ago)
    notify_sim.add_notifications([delivered, sim_row(reference="ref-b", created_at=three_hours_ago)])
    add_event(warehouse_conn, "found", provider_reference=delivered["id"], sent_at=three_hours_ago)

    looked_up = lookup_open_events(warehouse_conn, make_client(notify_sim), now=NOW)
    reconcile(warehouse_conn, now=NOW)

    # "blank" has no reference to ask by: a blank id is none, and reconcile matches by the client
    # reference only when there is no provider reference at all, so asking by it would find in vain.
    assert looked_up == {"checked": 2, "missing": 1, "inserted": 1, "quarantined": 0}
    assert verdict(warehouse_conn, "garbled") == ("not_at_provider", "unknown")
    assert verdict(warehouse_conn, "found") == ("delivered", None)
    assert verdict(warehouse_conn, "blank") == (None, None)


def test_not_at_provider_is_overturned_when_the_provider_reports_late(warehouse_conn, notify_sim):
    late_id = str(uuid.uuid4())
    add_event(warehouse_conn, "late", provider_reference=late_id, sent_at=NOW - timedelta(hours=3))
    lookup_open_events(warehouse_conn, make_client(notify_sim), now=NOW)
    reconcile(warehouse_conn, now=NOW)
    assert verdict(warehouse_conn, "late")[0] == "not_at_provider"

    notify_sim.add_notifications(
        [sim_row(late_id, status="delivered", created_at=NOW - timedelta(minutes=10))]
    )
    extract_list(warehouse_conn, make_client(notify_sim), now=NOW)
    reconcile(warehouse_conn, now=NOW)
    assert verdict(warehouse_conn, "late") == ("delivered", None)


def test_send_failed_where_the_app_send_failed(warehouse_conn):
    add_event(warehouse_conn, "failed", local_status="FAILED", client_reference="failed")
    add_event(warehouse_conn, "queued", local_status="QUEUED")
    reconcile(warehouse_conn, now=NOW)
    assert verdict(warehouse_conn, "failed") == ("send_failed", "provider_error")
    assert verdict(warehouse_conn, "queued") == (None, None)


def test_orphans_recorded_then_adopted_when_the_event_appears(warehouse_conn, notify_sim):
    orphan_id = str(uuid.uuid4())
    notify_sim.add_notifications([sim_row(orphan_id, status="delivered", reference="nobody-logged-this")])
    extract_list(warehouse_conn, make_client(notify_sim), now=NOW)
    reconcile(warehouse_conn, now=NOW)
    orphans = warehouse_conn.execute(
        "SELECT provider_reference, last_status FROM mailtrace.orphan_notification"
    ).fetchall()
    assert orphans == [(orphan_id, "delivered")]

    # The app's row commits late (reconcile ran while the app was inserting): nothing is lost.
    add_event(warehouse_conn, "late-row", provider_reference=orphan_id)
    reconcile(warehouse_conn, now=NOW)
    assert warehouse_conn.execute("SELECT count(*) FROM mailtrace.orphan_notification").fetchone() == (0,)
    assert verdict(warehouse_conn, "late-row") == ("delivered", None)


def test_unknown_status_is_stored_raw_and_not_applied(warehouse_conn, notify_sim):
    notification_id = str(uuid.uuid4())
    notify_sim.add_notifications([sim_row(notification_id, status="delivered")])
    add_event(warehouse_conn, "e1", provider_reference=notification_id)
    notify_sim.add_fault("unknown_status")
    extract_list(warehouse_conn, make_client(notify_sim), now=NOW)
    reconcile(warehouse_conn, now=NOW)
    stored = warehouse_conn.execute(
        "SELECT raw_status, delivery_status FROM mailtrace.provider_event"
    ).fetchall()
    assert stored == [("weird-new-status", None)]
    assert verdict(warehouse_conn, "e1") == (None, None)


def test_429_with_retry_after_is_honoured(warehouse_conn, notify_sim):
    notify_sim.add_notifications([sim_row() for _ in range(3)])
    notify_sim.add_fault("status", status=429, retry_after=7, count=2)
    delays = []
    result = extract_list(warehouse_conn, make_client(notify_sim, delays), now=NOW)
    assert delays == [7.0, 7.0]
    assert result["inserted"] == 3
    assert notify_sim.stats()["faults_served"] == 2


def test_server_error_without_retry_after_backs_off_exponentially(warehouse_conn, notify_sim):
    notify_sim.add_notifications([sim_row()])
    notify_sim.add_fault("status", status=503, count=3)
    delays = []
    extract_list(warehouse_conn, make_client(notify_sim, delays), now=NOW)
    assert len(delays) == 3
    assert delays[0] <= 0.01 and 0.01 <= delays[2] <= 0.04  # 0.01 * 2**n, jittered down to half


def test_rate_limited_simulator_is_retried_until_it_answers(warehouse_conn, notify_sim):
    notify_sim.add_notifications([sim_row()])
    notify_sim.add_fault("status", status=503, count=1)
    notify_sim.add_fault("truncated_json", count=1)
    delays = []
    result = extract_list(warehouse_conn, make_client(notify_sim, delays), now=NOW)
    assert result["inserted"] == 1
    assert len(delays) == 2


def test_pagination_loop_fails_clearly_without_moving_the_watermark(warehouse_conn, notify_sim):
    notify_sim.configure(page_size=5)
    notify_sim.add_notifications([sim_row(created_at=NOW - timedelta(minutes=i)) for i in range(12)])
    notify_sim.add_fault("loop_next", count=5)
    with pytest.raises(PaginationLoopError, match="back at the first page|loops back"):
        extract_list(warehouse_conn, make_client(notify_sim), now=NOW)
    assert get_state(warehouse_conn, WATERMARK_STATE) is None


def test_persistent_server_errors_fail_with_a_clear_message(warehouse_conn, notify_sim):
    notify_sim.add_fault("status", status=500, count=10)
    client = NotifyClient(notify_sim.api_key, notify_sim.base_url, max_attempts=3, sleep=lambda _: None)
    with pytest.raises(NotifyApiError, match="still failing after 3 attempts"):
        extract_list(warehouse_conn, client, now=NOW)
    assert get_state(warehouse_conn, WATERMARK_STATE) is None


def test_two_extracts_at_once_are_refused(warehouse_conn, warehouse_dsn, notify_sim):
    import psycopg

    from mailtrace.locks import EXTRACT_LOCK_BASE

    with psycopg.connect(warehouse_dsn, autocommit=True) as other:
        other.execute("SELECT pg_advisory_lock(%s)", (EXTRACT_LOCK_BASE,))
        with pytest.raises(RuntimeError, match="another Notify extract"):
            extract_list(warehouse_conn, make_client(notify_sim), now=NOW)


def test_failed_first_attempt_does_not_borrow_the_retry_receipt(warehouse_conn):
    """The app reused its reference for a retry: the retry's delivery is not the failed attempt's."""
    add_event(warehouse_conn, "first-try", local_status="FAILED", client_reference="REG-1")
    add_event(warehouse_conn, "retry", provider_reference="n9", client_reference="REG-1")
    delivered = final_event("n9", "delivered", "delivered", NOW - timedelta(minutes=5))
    load_provider_events(warehouse_conn, [replace(delivered, client_reference="REG-1")])
    reconcile(warehouse_conn, now=NOW)
    assert verdict(warehouse_conn, "retry") == ("delivered", None)
    assert verdict(warehouse_conn, "first-try") == ("send_failed", "provider_error")


def test_failed_send_that_reached_the_provider_gets_its_receipt(warehouse_conn):
    """The send call timed out on the app's side but Notify had accepted it: the receipt tells."""
    add_event(warehouse_conn, "timed-out", local_status="FAILED", client_reference="REG-2")
    delivered = final_event("n10", "delivered", "delivered", NOW - timedelta(minutes=5))
    load_provider_events(warehouse_conn, [replace(delivered, client_reference="REG-2")])
    reconcile(warehouse_conn, now=NOW)
    assert verdict(warehouse_conn, "timed-out") == ("delivered", None)


def test_pending_observation_never_reopens_not_at_provider(warehouse_conn, notify_sim):
    missing_id = str(uuid.uuid4())
    add_event(warehouse_conn, "gone", provider_reference=missing_id, sent_at=NOW - timedelta(hours=3))
    lookup_open_events(warehouse_conn, make_client(notify_sim), now=NOW)
    reconcile(warehouse_conn, now=NOW)
    assert verdict(warehouse_conn, "gone")[0] == "not_at_provider"

    load_provider_events(warehouse_conn, [pending_event(missing_id, NOW - timedelta(minutes=1))])
    reconcile(warehouse_conn, now=NOW)
    assert verdict(warehouse_conn, "gone")[0] == "not_at_provider"

    late = final_event(missing_id, "delivered", "delivered", NOW)
    load_provider_events(warehouse_conn, [late])
    reconcile(warehouse_conn, now=NOW)
    assert verdict(warehouse_conn, "gone") == ("delivered", None)


def test_old_failed_sends_get_a_verdict_outside_the_open_window(warehouse_conn):
    add_event(warehouse_conn, "old-failure", local_status="FAILED", sent_at=NOW - timedelta(days=90))
    add_event(warehouse_conn, "old-unknown", provider_reference="gone", sent_at=NOW - timedelta(days=90))
    summary = reconcile(warehouse_conn, now=NOW)
    assert verdict(warehouse_conn, "old-failure") == ("send_failed", "provider_error")
    assert verdict(warehouse_conn, "old-unknown") == (None, None)
    assert summary["affected"] == 1


def test_notify_receipt_matches_whatever_form_the_app_logged_the_address_in(warehouse_conn):
    add_event(warehouse_conn, "e1", provider_reference="n1", email="Person <person@example.gov>")
    load_provider_events(warehouse_conn, [final_event("n1", "delivered", "delivered", NOW)])
    reconcile(warehouse_conn, now=NOW)
    assert verdict(warehouse_conn, "e1") == ("delivered", None)
