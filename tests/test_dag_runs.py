"""Whole DAG runs through Airflow itself (`airflow dags test`), against the simulator and a real warehouse."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from devtools.seed import seed_event_log

DAGS_DIR = Path(__file__).resolve().parents[1] / "dags"


AIRFLOW = str(Path(sys.executable).with_name("airflow"))


def airflow_env():
    return {
        **os.environ,
        "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS_DIR),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(DAGS_DIR.parent / "plugins"),
    }


@pytest.fixture(scope="session")
def airflow_metadata_db():
    """Airflow's own metadata DB (SQLite in the session's AIRFLOW_HOME), migrated once."""
    subprocess.run([AIRFLOW, "db", "migrate"], check=True, capture_output=True, env=airflow_env())


def dags_test(dag_id, tmp_path):
    log = tmp_path / f"{dag_id}.log"
    with log.open("w") as out:
        completed = subprocess.run(
            [AIRFLOW, "dags", "test", dag_id], env=airflow_env(), stdout=out, stderr=out
        )
    return completed.returncode, log.read_text()


def test_notify_pipeline_dag_run_sets_verdicts(
    airflow_metadata_db, warehouse_conn, notify_sim, smtp_server, monkeypatch, tmp_path
):
    monkeypatch.setenv("AIRFLOW_VAR_MAILTRACE_ALERT_DELIVERY_RATE_FLOOR", "0.5")
    monkeypatch.setenv("AIRFLOW_VAR_MAILTRACE_ALERT_NOT_AT_PROVIDER_MAX", "1000")
    counts = seed_event_log(warehouse_conn, notify_sim, subjects=60, weeks=1)

    returncode, log = dags_test("mailtrace_notify_pipeline", tmp_path)

    assert returncode == 0, log[-3000:]
    assert "up_for_retry" not in log
    (with_verdict,) = warehouse_conn.execute(
        "SELECT count(*) FROM mailtrace.notification_status WHERE delivery_status IS NOT NULL"
    ).fetchone()
    (history,) = warehouse_conn.execute("SELECT count(*) FROM mailtrace.provider_event").fetchone()
    assert history >= counts["provider_rows"] - counts["orphans"] > 0
    # Every event has a verdict: a local failure its own, an email the provider saw (its history rows
    # minus the orphans, which match no event) the provider's. This seed loses no email (a lost one would
    # have no verdict until the not-at-provider grace has passed).
    assert counts["lost"] == 0
    assert counts["failed"] + (history - counts["orphans"]) == counts["events"]
    assert with_verdict == counts["events"]
