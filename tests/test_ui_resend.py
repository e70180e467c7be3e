"""The Delivery page's resend section (`/api/resend`) against a real warehouse, S3 (moto) and the Notify
simulator: runs made by the real resend code, counted the same way `summarize` counts them."""

from __future__ import annotations

import csv
import io
import json
import urllib.request

import pytest
import resend_seed

from mailtrace.resend.counts import empty_counts, fold
from mailtrace.ui.auth import Viewer

EXAMINER = Viewer(name="examiner", full_addresses=False)
ADMIN = Viewer(name="admin", full_addresses=True)


# ------------------------------------------------------------------------------ counting (no services)


def test_fold_counts_decisions_reasons_and_ledger_per_run():
    counts = fold(
        [
            ("r1", "decision", "send", "ok", 3),
            ("r1", "decision", "skip", "duplicate", 1),
            ("r1", "decision", "skip", "already_sent", 2),
            ("r1", "decision", "reject", "malformed_id", 1),
            ("r1", "ledger", "sent", None, 2),
            ("r1", "ledger", "claimed", None, 1),
            ("r2", "decision", "would_send", None, 4),  # a run from before reasons were recorded
        ]
    )
    assert counts["r1"]["decisions"] == {"send": 3, "would_send": 0, "skip": 3, "reject": 1, "unknown": 0}
    # Reasons per decision, most rows first.
    assert list(counts["r1"]["reasons"]["skip"].items()) == [("already_sent", 2), ("duplicate", 1)]
    assert (counts["r1"]["sent"], counts["r1"]["claimed"], counts["r1"]["unknown"]) == (2, 1, 0)
    assert counts["r1"]["reasons_recorded"] is True
    assert counts["r2"]["decisions"]["would_send"] == 4
    assert counts["r2"]["reasons"] == {} and counts["r2"]["reasons_recorded"] is False
    with pytest.raises(ValueError, match="unknown count kind"):
        fold([("r3", "guess", "send", None, 1)])


def test_empty_counts_name_every_decision_and_ledger_status():
    counts = empty_counts()
    assert set(counts["decisions"]) == {"send", "would_send", "skip", "reject", "unknown"}
    assert {k: counts[k] for k in ("sent", "failed", "claimed", "unknown")} == dict.fromkeys(
        ("sent", "failed", "claimed", "unknown"), 0
    )


# ------------------------------------------------------------------------------ routes


@pytest.fixture
def seeded(warehouse_conn, notify_sim, s3_bucket, aws, monkeypatch):
    resend_seed.configure(monkeypatch, s3_bucket)
    summaries = resend_seed.seed(warehouse_conn, aws.client("s3"), s3_bucket)
    return summaries


def test_incidents_newest_first_with_runs_and_the_counts_summarize_returned(seeded, as_viewer):
    response = as_viewer(EXAMINER).get("/api/resend")
    assert response.status_code == 200
    payload = response.json()
    assert payload["total"] == 2
    assert [i["incident_id"] for i in payload["incidents"]] == [
        resend_seed.INCIDENT,
        resend_seed.OLDER_INCIDENT,
    ]
    newer, older = payload["incidents"]
    assert [r["dag_run_id"] for r in newer["runs"]] == [resend_seed.REAL_RUN_ID, resend_seed.DRY_RUN_ID]
    # The page shows exactly what each run's summarize task returned.
    for run in newer["runs"] + older["runs"]:
        assert run["counts"] == json.loads(json.dumps(seeded[run["dag_run_id"]]))

    real, dry = newer["runs"]
    assert (real["dry_run"], dry["dry_run"]) == (False, True)
    assert dry["counts"]["decisions"] == {"send": 0, "would_send": 3, "skip": 1, "reject": 3, "unknown": 0}
    assert real["counts"]["decisions"] == {"send": 3, "would_send": 0, "skip": 1, "reject": 3, "unknown": 0}
    assert real["counts"]["reasons"] == {
        "reject": {"malformed_id": 1, "no_contact_email": 1, "unknown_id": 1},
        "send": {"ok": 3},
        "skip": {"duplicate": 1},
    }
    assert (real["counts"]["sent"], real["counts"]["claimed"], real["counts"]["unknown"]) == (3, 0, 0)
    assert real["ids_s3_uri"].endswith(f"resend-requests/{resend_seed.INCIDENT}/ids.csv")
    assert (real["started_by"], older["runs"][0]["started_by"]) == ("manual", "s3_drop")
    assert real["outcome_uri"].endswith(
        f"/resend-outcomes/{resend_seed.INCIDENT}/manual__2026-12-01T11_00_00_00_00.csv"
    )
    # An examiner gets no link to the outcome CSV and no address anywhere.
    assert real["outcome_url"] is None
    assert "@" not in response.text


def test_outcome_csv_link_for_users_who_may_see_addresses(seeded, as_viewer):
    runs = as_viewer(ADMIN).get("/api/resend").json()["incidents"][0]["runs"]
    link = runs[0]["outcome_url"]
    assert link.startswith("/api/resend/outcome?run_id=manual__")
    assert as_viewer(EXAMINER).get(link, follow_redirects=False).status_code == 403
    response = as_viewer(ADMIN).get(link, follow_redirects=False)
    assert response.status_code == 307
    with urllib.request.urlopen(response.headers["location"]) as fetched:  # noqa: S310 - presigned, moto
        rows = list(csv.DictReader(io.StringIO(fetched.read().decode())))
    assert len(rows) == 7 and {r["decision"] for r in rows} == {"send", "skip", "reject"}
    missing = as_viewer(ADMIN).get("/api/resend/outcome", params={"run_id": "nope"}, follow_redirects=False)
    assert missing.status_code == 404


def test_incidents_page_and_filter(seeded, as_viewer):
    client = as_viewer(EXAMINER)
    second = client.get("/api/resend", params={"limit": 1, "offset": 1}).json()
    assert second["total"] == 2
    assert [i["incident_id"] for i in second["incidents"]] == [resend_seed.OLDER_INCIDENT]
    one = client.get("/api/resend", params={"incident_id": resend_seed.INCIDENT}).json()
    assert [i["incident_id"] for i in one["incidents"]] == [resend_seed.INCIDENT]
    assert one["incidents"][0]["run_count"] == 2
    refused = client.get("/api/resend", params={"incident_id": "INC-1\n"})  # anchored at the very end
    assert refused.status_code == 422 and "incident_id" in json.dumps(refused.json())


def test_run_planned_before_reasons_were_recorded_shows_its_totals(warehouse_conn, as_viewer):
    with warehouse_conn.transaction():
        warehouse_conn.execute(
            """INSERT INTO mailtrace.resend_run
                   (dag_run_id, incident_id, params, dry_run, rows_read, planned, skipped, rejected)
               VALUES ('manual__old', 'INC-OLD', '{"inline_ids": "STR-000001"}', true, 6, 4, 1, 1)"""
        )
    run = as_viewer(EXAMINER).get("/api/resend").json()["incidents"][0]["runs"][0]
    assert run["counts"]["decisions"] == {"send": 0, "would_send": 4, "skip": 1, "reject": 1, "unknown": 0}
    assert run["counts"]["reasons_recorded"] is False
    assert run["inline_ids"] is True and run["ids_s3_uri"] is None


def test_no_resend_yet_is_an_empty_page(warehouse_conn, as_viewer):
    assert as_viewer(EXAMINER).get("/api/resend").json() == {"total": 0, "offset": 0, "incidents": []}
