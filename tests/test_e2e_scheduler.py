"""End to end with the real scheduler: the `make up` stack, driven only through Airflow's REST API v2.

One stack per executor (LocalExecutor, then CeleryExecutor with two workers when the Celery provider is
installed); every test observes the warehouse, S3, the SMTP sink and the Notify simulator.
"""

from __future__ import annotations

import json
import shutil
import signal
from datetime import timedelta
from urllib.parse import quote_plus

import httpx
import pendulum
import psycopg
import pytest

from devtools import demo
from devtools.up import REPO as REPO_ROOT
from devtools.up import celery_problem
from tests.airflow_stack import (
    FINISHED,
    PIPELINE_EVERY_SECONDS,
    messages_to,
    run_state,
    runs,
    sends_by_subject,
    sim_notifications,
    stack_settings,
    start_stack,
    task_instances,
    task_log,
    trigger,
    wait_for,
    wait_for_run,
    wait_for_successful_scheduled_run,
)

NOTIFY_DAG = "mailtrace_notify_pipeline"
SES_DAG = "mailtrace_ses_events"
RESEND_DAG = "mailtrace_resend"
REPORT_DAG = "mailtrace_weekly_report"
EXAMINERS = "examiners@registry.example.gov"
# A scheduled pipeline run, with the stack's start and a loaded machine, comes well within this.
PIPELINE_DEADLINE = 6 * PIPELINE_EVERY_SECONDS + 120
RUN_DEADLINE = 240
# The first deployment builds every week since the start date one run at a time (max_active_runs=1)
# before the latest one: 48 runs on a loaded two-core machine took about five minutes.
REPORT_CATCH_UP_DEADLINE = 900

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module", params=["local", "celery"])
def stack(request, pg_admin_dsn):
    if request.param == "celery" and (problem := celery_problem()):
        pytest.skip(f"CeleryExecutor: {problem}")
    # Kept after the run (test-artifacts/ is not committed): the Airflow logs of a failed test.
    state_dir = REPO_ROOT / "test-artifacts" / f"e2e-{request.param}"
    shutil.rmtree(state_dir, ignore_errors=True)
    settings = stack_settings(state_dir, pg_admin_dsn, demo.free_port(), executor=request.param)
    settings.celery_worker_concurrency = 2  # four parallel chunks then need both workers
    started = start_stack(settings)
    yield started
    started.stop()


@pytest.fixture
def api(stack):
    return stack.api()


@pytest.fixture
def warehouse(stack):
    with psycopg.connect(stack.warehouse_dsn, autocommit=True) as conn:
        yield conn


def allowed_subjects(stack, warehouse, count: int, offset: int = 0) -> list[str]:
    """Subjects a resend emails: on the stack's allow list, with an address that does not bounce (the
    pipelines flag those, and a resend skips flagged addresses)."""
    allow_list = json.loads(stack.env["AIRFLOW_VAR_MAILTRACE_RESEND_ALLOW_LIST"])
    rows = warehouse.execute(
        """SELECT subject_id FROM mailtrace.contact
           WHERE email = ANY(%s) AND email LIKE 'delivered+%%'
           ORDER BY subject_id LIMIT %s OFFSET %s""",
        (allow_list, count, offset),
    ).fetchall()
    assert len(rows) == count, "the stack's seed has too few deliverable, allowed subjects"
    return [subject_id for (subject_id,) in rows]


def resend_conf(incident_id: str, subjects: list[str], **extra) -> dict:
    return {
        "incident_id": incident_id,
        "inline_ids": "\n".join(subjects),
        "id_type": "registration",
        "dry_run": False,
        **extra,
    }


def test_pipelines_run_on_their_schedules_and_verdicts_land(stack, api, warehouse):
    for dag_id in (NOTIFY_DAG, SES_DAG):
        wait_for_successful_scheduled_run(api, dag_id, after=stack.started_at, timeout=PIPELINE_DEADLINE)
    verdicts = dict(
        warehouse.execute(
            """SELECT provider, count(*) FROM mailtrace.notification_status
               WHERE delivery_status IS NOT NULL GROUP BY provider"""
        ).fetchall()
    )
    assert verdicts.get("gc_notify", 0) > 0
    assert verdicts.get("ses", 0) >= 4  # the seeded SES events: two deliveries, a bounce, a complaint

    # Emails the simulator trickle logs after the stack started get their verdicts from later scheduled runs.
    wait_for(
        lambda: warehouse.execute(
            """SELECT count(*) FROM mailtrace.notification_status
               WHERE event_id LIKE 'evt-live-%%' AND delivery_status IS NOT NULL"""
        ).fetchone()[0],
        timeout=PIPELINE_DEADLINE,
        what="a verdict for a notification sent while the stack runs",
        interval=2,
    )


def delivery_page(stack, api) -> httpx.Client:
    """The Delivery page's JSON on the stack's api-server, with the REST API's token (as a script would)."""
    return httpx.Client(
        base_url=f"{stack.ui_url}/mailtrace",
        headers={"Authorization": api.client.headers["Authorization"]},
        timeout=60,
    )


def test_delivery_page_shows_the_running_pipeline(stack, api, warehouse):
    wait_for_successful_scheduled_run(api, NOTIFY_DAG, after=stack.started_at, timeout=PIPELINE_DEADLINE)
    page = delivery_page(stack, api)

    health = page.get("/api/health").raise_for_status().json()
    dags = {dag["dag_id"]: dag for dag in health["dags"]}
    assert dags[NOTIFY_DAG]["last_success_at"] is not None
    assert dags[NOTIFY_DAG]["level"] in {"green", "amber"}
    assert dags[RESEND_DAG]["level"] == "idle"
    receipts = {r["provider"]: r for r in health["receipts"]}
    assert receipts["gc_notify"]["newest_receipt_at"] is not None

    # The trend splits the providers; GC Notify's line counts the seeded sends.
    trend = page.get("/api/trend", params={"days": 30, "provider": "gc_notify"}).raise_for_status().json()
    assert [p["provider"] for p in trend["providers"]] == ["gc_notify"]
    assert sum(day["sent"] for day in trend["days"]) > 0

    # A seeded subject found by its address typed in another case; the stack's UI user may see addresses.
    subject_id, address = warehouse.execute(
        "SELECT subject_id, email FROM mailtrace.contact ORDER BY subject_id LIMIT 1"
    ).fetchone()
    rows = page.get("/api/search", params={"q": address.upper()}).raise_for_status().json()["rows"]
    assert (subject_id, "email address") in {(row["subject_id"], row["matched_by"]) for row in rows}

    # The pending list exported as CSV holds exactly the rows the list counts (scheduled runs keep
    # changing the list: compare an export with the counts taken just before and after it).
    def export_between_equal_counts():
        before = page.get("/api/pending", params={"hours": 1}).raise_for_status().json()["total"]
        export = page.get("/api/pending", params={"hours": 1, "format": "csv"}).raise_for_status()
        after = page.get("/api/pending", params={"hours": 1}).raise_for_status().json()["total"]
        return (export, before) if before == after else None

    export, total = wait_for(export_between_equal_counts, timeout=RUN_DEADLINE, what="a steady pending list")
    assert export.headers["content-type"].startswith("text/csv")
    assert len(export.text.splitlines()) == total + 1


def test_resend_through_the_rest_api_sends_one_email_per_subject(stack, api, warehouse):
    subjects = allowed_subjects(stack, warehouse, 8)
    incident = f"INC-E2E-{stack.settings.executor.upper()}-1"
    conf = resend_conf(incident, subjects, chunk_size=1)

    first = trigger(api, RESEND_DAG, conf)
    assert wait_for_run(api, RESEND_DAG, first, timeout=RUN_DEADLINE) == "success"
    assert sends_by_subject(stack.sim, incident) == dict.fromkeys(subjects, 1)

    second = trigger(api, RESEND_DAG, conf)
    assert wait_for_run(api, RESEND_DAG, second, timeout=RUN_DEADLINE) == "success"
    assert sends_by_subject(stack.sim, incident) == dict.fromkeys(subjects, 1)  # nothing new

    chunks = [ti for ti in task_instances(api, RESEND_DAG, first) if ti["task_id"] == "send_chunk"]
    assert len(chunks) == len(subjects)
    if stack.settings.executor == "celery":
        hostnames = {ti["hostname"] for ti in chunks}
        assert len(hostnames) == 2, f"send_chunk ran on {hostnames}, not on both workers"


BAD_RESENDS = {
    "no ID source": ({}, ["ids_s3_uri", "inline_ids"]),
    "both ID sources": ({"inline_ids": "STR-000001", "ids_s3_uri": "s3://bucket/ids.csv"}, ["exactly one"]),
    "nothing valid in the list": ({"inline_ids": "not-an-id, ???"}, ["nothing to send"]),
}


def test_bad_resend_parameters_fail_at_once_without_retries_and_hold_nothing_up(stack, api, warehouse):
    executor = stack.settings.executor.upper()
    bad_runs = {}
    for number, (name, (sources, _)) in enumerate(BAD_RESENDS.items(), start=1):
        conf = {"incident_id": f"INC-E2E-{executor}-BAD-{number}", "dry_run": False, **sources}
        bad_runs[name] = trigger(api, RESEND_DAG, conf)
    subjects = allowed_subjects(stack, warehouse, 1, offset=9)
    corrected_incident = f"INC-E2E-{executor}-CORRECTED"
    corrected = trigger(api, RESEND_DAG, resend_conf(corrected_incident, subjects))
    try:
        for name, run_id in bad_runs.items():
            # Runs go one at a time (max_active_runs=1): each must fail in seconds for the next to start.
            assert wait_for_run(api, RESEND_DAG, run_id, timeout=90) == "failed", name
            (plan,) = [
                ti for ti in task_instances(api, RESEND_DAG, run_id) if ti["task_id"] == "validate_and_plan"
            ]
            assert plan["state"] == "failed", name
            assert plan["try_number"] == 1, f"{name}: retried ({plan['try_number']} tries)"
            log = task_log(api, RESEND_DAG, run_id, "validate_and_plan", 1)
            for words in BAD_RESENDS[name][1]:
                assert words in log, f"{name}: the task log does not say what to fix ({words!r})"
        assert wait_for_run(api, RESEND_DAG, corrected, timeout=90) == "success"
        assert sends_by_subject(stack.sim, corrected_incident) == dict.fromkeys(subjects, 1)
    finally:
        # Leave no run retrying for the next test (max_active_runs=1 would queue its runs behind it).
        for run_id in [*bad_runs.values(), corrected]:
            wait_for(lambda run_id=run_id: mark_failed(api, RESEND_DAG, run_id), timeout=60,
                     what=f"run {run_id} marked failed")  # fmt: skip


@pytest.mark.parametrize(
    ("field", "value", "words"),
    [
        ("chunk_size", 5000, "maximum"),
        ("chunk_size", 0, "minimum"),
        ("incident_id", "INC 2026", "incident_id"),
    ],
)
def test_out_of_range_form_values_are_refused_not_changed(stack, api, field, value, words):
    """What the trigger form would otherwise clamp (0 to 1, 5000 to 1000) is refused, saying which rule."""
    conf = {"incident_id": "INC-E2E-FORM", "inline_ids": "STR-000001", "dry_run": True, field: value}
    before = {run["dag_run_id"] for run in runs(api, RESEND_DAG)}
    refused = api.client.post(f"/dags/{RESEND_DAG}/dagRuns", json={"logical_date": None, "conf": conf})
    assert refused.status_code == 400, refused.text
    assert words in refused.text
    assert {run["dag_run_id"] for run in runs(api, RESEND_DAG)} == before  # no run was created


def mark_failed(api, dag_id: str, run_id: str) -> bool:
    """Fail a run that is still going (True once it has finished either way)."""
    if run_state(api, dag_id, run_id) in FINISHED:
        return True
    return api.client.patch(f"/dags/{dag_id}/dagRuns/{run_id}", json={"state": "failed"}).is_success


def latest_report_run_after() -> pendulum.DateTime:
    """When the newest scheduled weekly report was due: the last Monday 06:00 in the schedule's zone."""
    local = pendulum.now("America/Vancouver")
    monday = local.start_of("week").replace(hour=6)
    return monday if monday <= local else monday.subtract(weeks=1)


@pytest.mark.timeout(REPORT_CATCH_UP_DEADLINE + 300)
def test_first_deployment_of_the_weekly_report_emails_the_examiners_once(stack, api):
    due = latest_report_run_after()
    week = (due - timedelta(days=1)).isocalendar()
    label = f"{week.year}-W{week.week:02d}"

    def latest_week_reported():
        for run in runs(api, REPORT_DAG):
            if run["state"] == "success" and pendulum.parse(run["run_after"]) == due:
                return run
        return None

    wait_for(
        latest_week_reported,
        timeout=REPORT_CATCH_UP_DEADLINE,
        what=f"the weekly report of {label}",
        interval=2,
    )
    subjects = [str(message["Subject"]) for message in messages_to(stack.maildir, EXAMINERS)]
    assert len(subjects) == 1, f"examiners got {len(subjects)} emails on the first deployment: {subjects[:5]}"
    assert label in subjects[0]


def notify_run_in_extract(api) -> str | None:
    for run in runs(api, NOTIFY_DAG):
        if run["state"] == "running":
            for ti in task_instances(api, NOTIFY_DAG, run["dag_run_id"]):
                if ti["task_id"] == "extract_notify_list" and ti["state"] == "running":
                    return run["dag_run_id"]
    return None


# Two recoveries, each waiting out the task heartbeat timeout (60 s) and a restart: about 220 s alone, and
# past pytest's default 300 s once in a full run, while its own waits allow far more.
@pytest.mark.timeout(2 * RUN_DEADLINE + PIPELINE_DEADLINE + 600)
def test_scheduler_and_worker_killed_mid_run_lose_and_double_nothing(stack, api, warehouse):
    # A resend in flight while the scheduler dies: every subject still gets exactly one email.
    subjects = allowed_subjects(stack, warehouse, 12, offset=10)
    incident = f"INC-E2E-{stack.settings.executor.upper()}-KILL"
    resend = trigger(api, RESEND_DAG, resend_conf(incident, subjects, chunk_size=3, rate_per_minute=30))
    wait_for(lambda: sum(sends_by_subject(stack.sim, incident).values()) >= 2, timeout=RUN_DEADLINE,
             what="the resend to start sending", interval=0.5)  # fmt: skip
    # The scheduler process alone dies (an OOM kill, say); its restart, like a container's or a systemd
    # unit's, ends what it left running, so on LocalExecutor the chunks in flight die mid-send too.
    scheduler = stack.processes["scheduler"]
    scheduler.kill(signal.SIGKILL, group=False)
    wait_for(lambda: not scheduler.running(), timeout=30, what="the scheduler to die")
    stack.restart("scheduler")
    # Recovery waits for the dead scheduler's tasks to be given up on (queued and heartbeat timeouts).
    assert wait_for_run(api, RESEND_DAG, resend, timeout=RUN_DEADLINE + 300) == "success"
    assert sends_by_subject(stack.sim, incident) == dict.fromkeys(subjects, 1)

    # A pipeline run whose worker dies mid-extract (the list request hangs until we kill it): the retry
    # loads every provider status once.
    known = sim_notifications(stack.sim)
    stack.sim.add_fault("delay", delay_seconds=60)
    run_id = wait_for(lambda: notify_run_in_extract(api), timeout=PIPELINE_DEADLINE,
                      what="a notify run in its extract", interval=0.5)  # fmt: skip
    wait_for(lambda: stack.sim.stats()["faults_served"] >= 1, timeout=60, what="the extract's list request")
    if stack.settings.executor == "celery":
        (extract,) = [
            ti for ti in task_instances(api, NOTIFY_DAG, run_id) if ti["task_id"] == "extract_notify_list"
        ]
        worker_name = extract["hostname"].rsplit("-", 1)[-1]  # devtools.up.worker_hostname: <host>-<worker>
        victim = stack.processes[f"celery-{worker_name}"]
    else:
        victim = scheduler  # LocalExecutor's workers are the scheduler's children: its whole group dies
    victim.kill(signal.SIGKILL)
    wait_for(lambda: not victim.running(), timeout=30, what=f"{victim.name} to die")
    stack.restart(victim.name)
    assert wait_for_run(api, NOTIFY_DAG, run_id, timeout=RUN_DEADLINE + 120) == "success"
    (extract,) = [
        ti for ti in task_instances(api, NOTIFY_DAG, run_id) if ti["task_id"] == "extract_notify_list"
    ]
    assert extract["try_number"] >= 2  # the kill hit the extract, and a retry finished it

    loaded = dict(
        warehouse.execute(
            """SELECT provider_reference, array_agg(DISTINCT raw_status) FROM mailtrace.provider_event
               WHERE provider = 'gc_notify' GROUP BY provider_reference"""
        ).fetchall()
    )
    missing = [ref for ref, status in known.items() if status not in loaded.get(ref, [])]
    assert not missing, f"{len(missing)} provider statuses lost, e.g. {missing[:3]}"
    (doubled,) = warehouse.execute(
        """SELECT count(*) FROM (SELECT 1 FROM mailtrace.provider_event WHERE provider = 'gc_notify'
               GROUP BY provider_reference, raw_status HAVING count(*) > 1) AS doubled"""
    ).fetchone()
    assert doubled == 0


DROP_DAG = "mailtrace_resend_drop"


def find_drops_result(api, run_id: str) -> str:
    """What a drop run's find_drops returned (the dry runs it asked for), as text; "" while there is none."""
    path = f"/dags/{DROP_DAG}/dagRuns/{run_id}/taskInstances/find_drops/xcomEntries/return_value"
    response = api.client.get(path)
    return str(response.json().get("value")) if response.is_success else ""


@pytest.mark.timeout(2 * PIPELINE_DEADLINE + RUN_DEADLINE + 600)
def test_an_id_list_dropped_in_s3_starts_one_dry_run_even_when_its_event_comes_twice(stack, api, warehouse):
    import boto3

    subjects = allowed_subjects(stack, warehouse, 3, offset=20)
    incident = f"INC-E2E-{stack.settings.executor.upper()}-DROP"
    key = f"resend-requests/{incident}/tax service ids.csv"  # the event URL-encodes the space
    s3 = boto3.client("s3", endpoint_url=stack.s3_endpoint, region_name=demo.REGION)
    body = ("id\n" + "\n".join(subjects) + "\n").encode()
    etag = s3.put_object(Bucket=demo.BUCKET, Key=key, Body=body)["ETag"]
    s3.put_object(Bucket=demo.BUCKET, Key=f"resend-requests/{incident}/read me.txt", Body=b"not a list")

    def dry_runs() -> list[dict]:
        return [run for run in runs(api, RESEND_DAG) if run["dag_run_id"].startswith(f"s3drop__{incident}__")]

    (run,) = wait_for(dry_runs, timeout=PIPELINE_DEADLINE, what="the dry run the upload starts", interval=2)
    assert wait_for_run(api, RESEND_DAG, run["dag_run_id"], timeout=RUN_DEADLINE) == "success"
    assert run["conf"]["dry_run"] is True
    assert run["conf"]["ids_s3_uri"] == f"s3://{demo.BUCKET}/{key}"
    # The ledger holds it like any dry run: the run's counts and outcome CSV, no claimed row, no email.
    (ledger,) = warehouse.execute(
        """SELECT dag_run_id, dry_run, rows_read, planned, rejected, outcome_uri
           FROM mailtrace.resend_run WHERE incident_id = %s""",
        (incident,),
    ).fetchall()
    assert ledger[:5] == (run["dag_run_id"], True, 3, 3, 0)
    outcome_key = ledger[5].removeprefix(f"s3://{demo.BUCKET}/")
    outcome = s3.get_object(Bucket=demo.BUCKET, Key=outcome_key)["Body"].read().decode()
    assert outcome.count("would_send") == 3
    (claimed,) = warehouse.execute(
        "SELECT count(*) FROM mailtrace.resend_request WHERE incident_id = %s", (incident,)
    ).fetchone()
    assert claimed == 0
    assert sends_by_subject(stack.sim, incident) == {}
    # The Delivery page's resend section shows it, started by the drop, with the dry run's decisions.
    shown = delivery_page(stack, api).get("/api/resend", params={"incident_id": incident}).raise_for_status()
    ((only_run,),) = [found["runs"] for found in shown.json()["incidents"]]
    assert (only_run["dag_run_id"], only_run["started_by"]) == (run["dag_run_id"], "s3_drop")
    assert only_run["counts"]["decisions"]["would_send"] == 3

    # SQS delivers at least once: the same upload event again is read, and starts no second dry run.
    seen = {drop["dag_run_id"] for drop in runs(api, DROP_DAG)}
    record = {
        "eventVersion": "2.1",
        "eventSource": "aws:s3",
        "awsRegion": demo.REGION,
        "eventName": "ObjectCreated:Put",
        "s3": {"bucket": {"name": demo.BUCKET}, "object": {"key": quote_plus(key), "eTag": etag.strip('"')}},
    }
    sqs = boto3.client("sqs", endpoint_url=stack.s3_endpoint, region_name=demo.REGION)
    sqs.send_message(QueueUrl=stack.drop_queue_url, MessageBody=json.dumps({"Records": [record]}))

    def redelivery_run() -> dict | None:
        for drop in runs(api, DROP_DAG):
            if drop["dag_run_id"] not in seen and drop["state"] in FINISHED:
                if run["dag_run_id"] in find_drops_result(api, drop["dag_run_id"]):
                    return drop
        return None

    again = wait_for(redelivery_run, timeout=PIPELINE_DEADLINE, what="the redelivery's run", interval=2)
    assert again["state"] == "success"
    tries = task_instances(api, DROP_DAG, again["dag_run_id"])
    assert [ti["state"] for ti in tries if ti["task_id"] == "start_dry_run"] == ["skipped"]
    assert [r["dag_run_id"] for r in dry_runs()] == [run["dag_run_id"]]

    # The triggerer deleted every message once its asset event was stored (ack mode): none is left over.
    def queue_emptied() -> bool:
        attributes = sqs.get_queue_attributes(
            QueueUrl=stack.drop_queue_url,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        return all(value == "0" for value in attributes.values())

    wait_for(queue_emptied, timeout=PIPELINE_DEADLINE, what="the drop queue's messages deleted", interval=2)
