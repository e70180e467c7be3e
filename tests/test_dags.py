"""The DAG folder parses cleanly and every DAG carries what operators rely on in the UI."""

from pathlib import Path

import pytest

DAGS_DIR = Path(__file__).resolve().parents[1] / "dags"


@pytest.fixture(scope="module")
def dagbag():
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(DAGS_DIR))


def test_dag_folder_imports_without_errors(dagbag):
    assert dagbag.import_errors == {}
    assert len(dagbag.dags) == len(list(DAGS_DIR.glob("*.py")))


def test_every_dag_has_tags_owner_retries_and_doc(dagbag):
    for dag_id, dag in dagbag.dags.items():
        assert dag.tags, f"{dag_id} has no tags"
        assert dag.doc_md and dag_id in dag.doc_md, f"{dag_id} has no doc naming it"
        assert Path(dag.fileloc).stem == dag_id, f"{dag_id} lives in {dag.fileloc}"
        for task in dag.tasks:
            assert task.owner == "mailtrace", f"{dag_id}.{task.task_id} owner {task.owner}"
            assert task.retries is not None, f"{dag_id}.{task.task_id} has no retries"
        assert dag.default_args.get("retries", 0) >= 1, f"{dag_id} default retries"


def test_every_task_emails_the_data_engineers_when_it_fails_for_good(dagbag):
    from mailtrace.failure_alert import email_task_failure

    for dag_id, dag in dagbag.dags.items():
        for task in dag.tasks:
            callbacks = task.on_failure_callback
            callbacks = callbacks if isinstance(callbacks, list | tuple) else [callbacks]
            assert email_task_failure in callbacks, f"{dag_id}.{task.task_id}"


def test_scheduled_pipelines_never_overlap(dagbag):
    for dag_id in ("mailtrace_notify_pipeline", "mailtrace_ses_events"):
        assert dagbag.dags[dag_id].max_active_runs == 1


def test_notify_pipeline_order(dagbag):
    dag = dagbag.dags["mailtrace_notify_pipeline"]
    order = [
        "migrate_warehouse",
        "extract_notify_list",
        "lookup_open_notifications",
        "reconcile_event_log",
        "update_address_flags",
        "check_deliverability",
    ]
    for upstream, downstream in zip(order, order[1:], strict=False):
        assert dag.get_task(downstream).upstream_task_ids == {upstream}
    assert dag.get_task("extract_notify_list").outlets


def test_ses_pipeline_ends_with_its_own_deliverability_check(dagbag):
    dag = dagbag.dags["mailtrace_ses_events"]
    assert dag.get_task("check_deliverability").upstream_task_ids == {"update_address_flags"}
