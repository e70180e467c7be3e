"""A malformed Notify notification is set aside on its own and never halts the extract or moves its watermark.

Through the DAG tasks' entry points (`mailtrace.pipeline`) against the Notify simulator, which serves the
malformed notification as Notify would keep serving it (a "patch" fault), and a real Postgres warehouse.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime, timedelta

import pytest
from test_notify_pipeline import add_event, sim_row

from mailtrace.intake import INDEXED_FIELD_MAX_BYTES, REPLACEMENT
from mailtrace.notify_extract import WATERMARK_STATE
from mailtrace.pipeline import run_notify_list_extract, run_notify_lookups
from mailtrace.warehouse import get_state

NOW = datetime.now(UTC).replace(microsecond=0)
GOOD = 5

# (case, fields served for the hostile notification, whether it is stored made storable or set aside)
HOSTILE = [
    ("no-id", {"id": None}, False),
    ("unhashable-status", {"status": [1, 2]}, False),
    ("created-without-zone", {"created_at": "2026-12-01T10:00:00.000000"}, False),
    ("created-in-2099", {"created_at": "2099-01-01T00:00:00.000000Z"}, False),
    ("completed-in-2099", {"completed_at": "2099-01-01T00:00:00.000000Z"}, False),
    ("not-a-time", {"sent_at": "yesterday-ish"}, False),
    ("nul-in-provider-response", {"provider_response": "550 5.1.1 no\x00such user"}, True),
    ("lone-surrogate-in-status-description", {"status_description": "No such \ud800address"}, True),
    ("multi-kb-reference", {"reference": "r" * 5000}, True),
    ("multi-kb-status", {"status": "s" * 5000}, True),
]


def seed(notify_sim):
    rows = [sim_row(created_at=NOW - timedelta(minutes=10 + n)) for n in range(GOOD)]
    hostile = sim_row(status="permanent-failure", created_at=NOW - timedelta(minutes=5))
    notify_sim.add_notifications([*rows, hostile])
    return rows, hostile


def serve_as(notify_sim, hostile_id: str, fields: dict) -> None:
    """Notify keeps serving the notification this way, to every list page and look-up."""
    notify_sim.add_fault("patch", count=1000, patches={hostile_id: fields})


def quarantine_rows(conn):
    rows = conn.execute(
        "SELECT notification_id, source, reason, raw_json, times_seen FROM mailtrace.notify_quarantine"
    ).fetchall()
    conn.commit()
    return rows


def stored_references(conn):
    rows = conn.execute("SELECT provider_reference FROM mailtrace.provider_event").fetchall()
    conn.commit()
    return {row[0] for row in rows}


@pytest.mark.parametrize(("fields", "stored"), [c[1:] for c in HOSTILE], ids=[c[0] for c in HOSTILE])
def test_one_malformed_notification_never_halts_the_list_extract(
    warehouse_conn, notify_sim, caplog, capfd, fields, stored
):
    rows, hostile = seed(notify_sim)
    serve_as(notify_sim, hostile["id"], fields)

    with caplog.at_level(logging.WARNING, logger="mailtrace"):
        result = run_notify_list_extract()

    good_ids = {row["id"] for row in rows}
    assert good_ids <= stored_references(warehouse_conn)
    newest_good = max(row["created_at"] for row in rows)
    watermark = datetime.fromisoformat(get_state(warehouse_conn, WATERMARK_STATE))
    warehouse_conn.commit()
    if stored:
        assert result["quarantined"] == 0 and quarantine_rows(warehouse_conn) == []
        (reference, raw_status, detail, client_reference) = warehouse_conn.execute(
            """SELECT provider_reference, raw_status, detail, client_reference FROM mailtrace.provider_event
               WHERE provider_reference = %s""",
            (hostile["id"],),
        ).fetchone()
        for value in (raw_status, client_reference or ""):
            assert len(value.encode("utf-8")) <= INDEXED_FIELD_MAX_BYTES
        if "provider_response" in fields or "status_description" in fields:
            assert REPLACEMENT in detail
        assert watermark == hostile["created_at"]
    else:
        assert result["quarantined"] == 1
        assert stored_references(warehouse_conn) == good_ids
        ((notification_id, source, reason, raw_json, times_seen),) = quarantine_rows(warehouse_conn)
        assert source == "notify_list" and reason and times_seen == 1
        raw = json.loads(raw_json)
        for name, value in fields.items():
            assert raw[name] == value  # the notification as Notify served it
        # A set-aside notification never moves the watermark: it stays at the newest good one.
        assert watermark == newest_good
        assert "set aside in mailtrace.notify_quarantine" in caplog.text + "".join(capfd.readouterr())

        again = run_notify_list_extract()  # Notify keeps serving it: one row, counted again
        assert again["quarantined"] == 1
        assert [row[4] for row in quarantine_rows(warehouse_conn)] == [2]


def test_lookups_set_a_malformed_notification_aside_and_load_the_rest(
    warehouse_conn, notify_sim, monkeypatch
):
    sent = NOW - timedelta(hours=3)
    rows = [sim_row(created_at=sent, status="delivered") for _ in range(3)]
    notify_sim.add_notifications(rows)
    for n, row in enumerate(rows):
        add_event(warehouse_conn, f"ev-{n}", provider_reference=row["id"].upper(), sent_at=sent)
    notify_sim.add_fault(
        "patch",
        count=1000,
        patches={
            rows[1]["id"]: {"completed_at": "2026-12-01 10:00:00"},  # no zone
            rows[2]["id"]: {"provider_response": "250\x00 ok"},  # storable once sanitised
        },
    )

    result = run_notify_lookups()

    assert (result["checked"], result["missing"], result["quarantined"]) == (3, 0, 1)
    assert stored_references(warehouse_conn) == {rows[0]["id"], rows[2]["id"]}  # normalised: lower case
    ((notification_id, source, reason, _, _),) = quarantine_rows(warehouse_conn)
    assert (notification_id, source) == (rows[1]["id"], "notify_lookup") and "time zone" in reason
    found = warehouse_conn.execute("SELECT count(*) FROM mailtrace.provider_lookup WHERE found").fetchone()
    assert found == (3,)  # Notify has all three: none of them may turn into not_at_provider


def test_quarantine_reason_masks_addresses(warehouse_conn, notify_sim):
    rows, hostile = seed(notify_sim)
    serve_as(notify_sim, hostile["id"], {"created_at": "someone.private@example.gov"})
    result = run_notify_list_extract()
    assert result["quarantined"] == 1
    ((_, _, reason, raw_json, _),) = quarantine_rows(warehouse_conn)
    assert "someone.private" not in reason and "s***@example.gov" in reason
    assert "someone.private@example.gov" in raw_json  # the raw item is kept whole


def test_a_notification_the_warehouse_refuses_is_set_aside_and_the_page_loads(warehouse_conn, notify_sim):
    """Any store-time refusal of one notification's values (here a CHECK the test adds) sets only it aside."""
    rows, hostile = seed(notify_sim)
    warehouse_conn.execute(
        f"""ALTER TABLE mailtrace.provider_event
            ADD CONSTRAINT refuse_for_test CHECK (provider_reference <> '{hostile["id"]}')"""
    )
    warehouse_conn.commit()

    result = run_notify_list_extract()

    assert result["quarantined"] == 1
    assert stored_references(warehouse_conn) == {row["id"] for row in rows}
    ((notification_id, source, reason, raw_json, _),) = quarantine_rows(warehouse_conn)
    assert (notification_id, source) == (hostile["id"], "notify_list")
    assert "the warehouse refused it" in reason and "refuse_for_test" in reason
    assert json.loads(raw_json)["mapped_observation"]["raw_status"] == "permanent-failure"
