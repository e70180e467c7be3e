"""The `make up` stack for end-to-end tests, and what they need to drive it through the REST API v2.

Every test module starts one stack (`devtools.up.AirflowStack`, the code `make up` runs) on databases of
the test server and loopback ports of its own, with the provider pipelines every few seconds.
"""

from __future__ import annotations

import mailbox
import sqlite3
import time
import uuid
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from devtools.up import AirflowStack, ApiClient, StackSettings

PIPELINE_EVERY_SECONDS = 30
FINISHED = {"success", "failed"}


def stack_settings(
    state_dir: Path, admin_dsn: str, ui_port: int, *, executor: str = "local"
) -> StackSettings:
    return StackSettings(
        state_dir=state_dir,
        executor=executor,
        ui_port=ui_port,
        ui_user="e2e",
        ui_password=uuid.uuid4().hex,
        celery_workers=2,
        admin_dsn=admin_dsn,
        database_suffix=f"_{uuid.uuid4().hex[:8]}",
        subjects=100,
        trickle_seconds=5,
        pipeline_every_seconds=PIPELINE_EVERY_SECONDS,
        dag_parse_seconds=5,
        extra_env={
            # A task whose process was killed is given up on after this many seconds without a heartbeat.
            "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": "20",
            "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL": "5",
            # A restarted scheduler adopts the dead one's task instances (then times them out) this soon,
            # not after the default five minutes.
            "AIRFLOW__SCHEDULER__ORPHANED_TASKS_CHECK_INTERVAL": "15",
            "AIRFLOW__SCHEDULER__SCHEDULER_HEALTH_CHECK_THRESHOLD": "15",
            # A task queued in a killed scheduler's LocalExecutor is queued again after this, not 10 minutes.
            "AIRFLOW__SCHEDULER__TASK_QUEUED_TIMEOUT": "120",
            "AIRFLOW__SCHEDULER__TASK_QUEUED_TIMEOUT_CHECK_INTERVAL": "15",
            "AIRFLOW_VAR_MAILTRACE_RESEND_SETTLE_SECONDS": "5",
        },
    )


def wait_for(condition: Callable[[], object], *, timeout: float, what: str, interval: float = 1.0):
    """Poll `condition` until it returns something truthy; fail naming `what` at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


def trigger(api: ApiClient, dag_id: str, conf: dict) -> str:
    run = api.post(f"/dags/{dag_id}/dagRuns", {"logical_date": None, "conf": conf})
    return run["dag_run_id"]


def run_state(api: ApiClient, dag_id: str, run_id: str) -> str:
    return api.get(f"/dags/{dag_id}/dagRuns/{run_id}")["state"]


def wait_for_run(api: ApiClient, dag_id: str, run_id: str, *, timeout: float) -> str:
    """The run's final state; at the deadline, fail naming where each of its tasks stands."""
    try:
        return wait_for(
            lambda: (state := run_state(api, dag_id, run_id)) in FINISHED and state,
            timeout=timeout,
            what=f"{dag_id} run {run_id} to finish",
        )
    except AssertionError as timed_out:
        where = ", ".join(
            f"{ti['task_id']}[{ti['map_index']}] {ti['state']} (try {ti['try_number']})"
            for ti in task_instances(api, dag_id, run_id)
        )
        raise AssertionError(f"{timed_out}; its tasks: {where}") from None


def runs(api: ApiClient, dag_id: str) -> list[dict]:
    return api.get(f"/dags/{dag_id}/dagRuns", params={"limit": 100, "order_by": "-run_after"})["dag_runs"]


def task_instances(api: ApiClient, dag_id: str, run_id: str) -> list[dict]:
    return api.get(f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances", params={"limit": 100})["task_instances"]


def task_log(api: ApiClient, dag_id: str, run_id: str, task_id: str, try_number: int) -> str:
    body = api.get(
        f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/logs/{try_number}",
        params={"full_content": "true"},
    )
    content = body.get("content", "")
    if isinstance(content, list):
        return "\n".join(_log_line(line) for line in content)
    return str(content)


def _log_line(line: object) -> str:
    """A structured log record as the UI shows it: the event, and an exception's type and message."""
    if not isinstance(line, dict):
        return str(line)
    errors = [f"{e.get('exc_type')}: {e.get('exc_value')}" for e in line.get("error_detail") or []]
    return " | ".join([str(line.get("event", line)), *errors])


def wait_for_successful_scheduled_run(
    api: ApiClient, dag_id: str, *, after: datetime, timeout: float
) -> dict:
    def found():
        for run in runs(api, dag_id):
            started = run.get("start_date")
            if run["run_type"] == "scheduled" and run["state"] == "success" and started:
                if datetime.fromisoformat(started) >= after:
                    return run
        return None

    return wait_for(found, timeout=timeout, what=f"a successful scheduled run of {dag_id}", interval=2)


def messages_to(maildir: Path, address: str) -> list:
    return [message for message in mailbox.Maildir(str(maildir), create=True) if address in message["To"]]


def sim_notifications(sim) -> dict[str, str]:
    """Every notification the simulator holds: id -> current status."""
    with sqlite3.connect(sim.db_path) as conn:
        return dict(conn.execute("SELECT id, status FROM notification"))


def sends_by_subject(sim, incident_id: str) -> dict[str, int]:
    """How many emails the simulator accepted for each subject of a resend incident."""
    counts: dict[str, int] = {}
    prefix = f"resend:{incident_id}:"
    for body in sim.sent_requests():
        reference = str(body.get("reference") or "")
        if reference.startswith(prefix):
            subject_id = reference.removeprefix(prefix).split(":")[1]
            counts[subject_id] = counts.get(subject_id, 0) + 1
    return counts


def start_stack(settings: StackSettings) -> AirflowStack:
    stack = AirflowStack(settings)
    try:
        stack.start(ready_timeout=300)
    except BaseException:
        stack.stop()
        raise
    return stack
