"""The loader's two routes into mailtrace.provider_event give the same history.

New observations already in matched form are COPYed straight into the history; everything else (references
to normalise, a status repeated in the chunk, a chunk repeating stored observations) goes through the
staging table's INSERT … ON CONFLICT. Whichever route a chunk takes, what is stored is the same and a
re-run adds nothing.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from mailtrace.events import ProviderEvent
from mailtrace.load import _straight_rows, load_provider_events

T0 = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


def notify(
    n: int, *, reference: str | None = None, client: str | None = None, minutes: int = 0
) -> ProviderEvent:
    return ProviderEvent(
        provider="gc_notify",
        provider_reference=reference or f"00000000-0000-4000-8000-{n:012x}",
        raw_status="delivered",
        delivery_status="delivered",
        event_at=T0 + timedelta(minutes=minutes or n),
        source="notify_list",
        recipient_email=f"person{n}@example.gov",
        client_reference=client if client is not None else f"ref-{n}",
    )


def stored(conn) -> list[tuple]:
    rows = conn.execute(
        """SELECT provider_reference, client_reference, recipient_email, event_at
             FROM mailtrace.provider_event ORDER BY id"""
    ).fetchall()
    conn.commit()
    return rows


def test_only_new_rows_in_matched_form_take_the_straight_route():
    assert _straight_rows([notify(2), notify(1)]) == [notify(1), notify(2)]  # in event_at order
    assert _straight_rows([notify(1, reference=" 00000000-0000-4000-8000-000000000001")]) is None
    assert _straight_rows([notify(1, reference="00000000-0000-4000-8000-00000000000A")]) is None
    assert _straight_rows([notify(1, client="ref-1\t")]) is None
    assert _straight_rows([notify(1, client="")]) is None
    assert _straight_rows([notify(1), notify(1)]) is None  # one status observed twice in the chunk
    # two messages' statuses at the same instant are two observations; the same one among them is not
    same_instant = [notify(3, minutes=9), notify(1, minutes=5), notify(2, minutes=9)]
    assert _straight_rows(same_instant) == [same_instant[1], same_instant[0], same_instant[2]]
    assert _straight_rows([*same_instant, notify(3, minutes=9)]) is None


def test_both_routes_store_the_same_normalised_history(warehouse_conn):
    # chunk 1 straight; chunk 2 staged (references to normalise); chunk 3 straight again
    events = [
        notify(1),
        notify(2),
        notify(3, reference="  00000000-0000-4000-8000-00000000000B "),
        notify(4, client=" ref-4 "),
        notify(5),
        notify(6),
    ]
    assert load_provider_events(warehouse_conn, events, chunk_rows=2) == 6
    rows = stored(warehouse_conn)
    assert [row[0] for row in rows] == [
        "00000000-0000-4000-8000-000000000001",
        "00000000-0000-4000-8000-000000000002",
        "00000000-0000-4000-8000-00000000000b",
        "00000000-0000-4000-8000-000000000004",
        "00000000-0000-4000-8000-000000000005",
        "00000000-0000-4000-8000-000000000006",
    ]
    assert rows[3][1] == "ref-4"
    (ordered,) = warehouse_conn.execute(
        "SELECT bool_and(ok) FROM (SELECT event_at >= lag(event_at, 1, event_at) OVER (ORDER BY id) AS ok"
        " FROM mailtrace.provider_event) AS steps"
    ).fetchone()
    assert ordered  # identity values follow event_at on both routes here


def test_a_chunk_repeating_stored_statuses_stores_only_the_new_ones(warehouse_conn):
    assert load_provider_events(warehouse_conn, [notify(1), notify(2)], chunk_rows=2) == 2
    before = stored(warehouse_conn)
    # an overlapping window: the first chunk repeats one stored status, the later chunks are all new
    again = [notify(2), notify(3), notify(4), notify(5)]
    assert load_provider_events(warehouse_conn, again, chunk_rows=2) == 3
    after = stored(warehouse_conn)
    assert after[:2] == before and len(after) == 5
    # a re-run of everything adds nothing
    assert load_provider_events(warehouse_conn, [notify(n) for n in range(1, 6)], chunk_rows=2) == 0
    assert stored(warehouse_conn) == after


def test_a_status_repeated_within_one_chunk_is_stored_once(warehouse_conn):
    assert load_provider_events(warehouse_conn, [notify(1), notify(1), notify(2)], chunk_rows=10) == 2
    assert len(stored(warehouse_conn)) == 2
