"""A deployment without an SES queue: the SES DAG's runs are skipped with a reason, never failed."""

import json
import subprocess

from test_dag_runs import AIRFLOW, airflow_env, airflow_metadata_db, dags_test  # noqa: F401 - fixture

DAG_ID = "mailtrace_ses_events"


def task_states(dag_id: str) -> dict[str, str]:
    """Task id -> state of the DAG's latest run, read back from the metadata database."""

    def cli_json(*args: str) -> list[dict]:
        completed = subprocess.run(
            [AIRFLOW, *args, "-o", "json"], env=airflow_env(), capture_output=True, text=True, check=True
        )
        # Airflow may log to stdout before the JSON document, which is the last line.
        return json.loads(completed.stdout.strip().splitlines()[-1])

    run_id = max(cli_json("dags", "list-runs", dag_id), key=lambda run: run["run_after"])["run_id"]
    return {row["task_id"]: row["state"] for row in cli_json("tasks", "states-for-dag-run", dag_id, run_id)}


def test_ses_dag_without_a_queue_skips_every_task_and_says_why(airflow_metadata_db, monkeypatch, tmp_path):  # noqa: F811
    monkeypatch.delenv("AIRFLOW_VAR_MAILTRACE_SES_QUEUE_URL", raising=False)

    returncode, log = dags_test(DAG_ID, tmp_path)

    assert returncode == 0, log[-3000:]
    assert "mailtrace_ses_queue_url is unset" in log
    assert "up_for_retry" not in log
    assert task_states(DAG_ID) == {
        "drain_ses_queue": "skipped",
        "reconcile_verdicts": "skipped",
        "update_address_flags": "skipped",
        "check_deliverability": "skipped",
    }
