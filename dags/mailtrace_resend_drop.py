"""
### mailtrace_resend_drop — an ID list uploaded to S3 starts a dry run of the resend by itself

Upload the list (CSV, one ID column, header optional) to
`s3://<report bucket>/resend-requests/<incident_id>/<file>.csv` (the prefix is Variable
`mailtrace_resend_ids_prefix`). The bucket's upload event reaches SQS queue
`mailtrace_resend_drop_queue_url`; the triggerer's asset watcher reads it and schedules this DAG, which
triggers `mailtrace_resend` with `dry_run` on for that file (`id_type`: Variable
`mailtrace_resend_drop_id_type`). The dry run is an ordinary `mailtrace_resend` run (run id
`s3drop__<incident_id>__<hash>`): its outcome CSV and ledger rows are those of a dry run a person
triggers. Nothing is ever sent from here: to send, a person triggers `mailtrace_resend` with `dry_run` off.

* **find_drops** reads the upload events of the triggering asset events and keeps the ID lists: anything
  else (S3's test event, another prefix or bucket, a deeper folder, a folder name that is not an incident
  id, not a .csv) is set aside with its reason in the task log and on the Delivery page's health panel
  (pipeline warnings, shown for a week); the rest go on.
* **start_dry_run** (one mapped task per list) triggers the dry run. The run id is derived from the object
  version (version id or ETag), so an event SQS delivers twice finds the run there and is skipped.

With `mailtrace_resend_drop_queue_url` unset nothing runs (the triggerer's log says so).
"""

from __future__ import annotations

from airflow.providers.standard.operators.trigger_dagrun import TriggerDagRunOperator
from airflow.sdk import dag, get_current_context, task

from mailtrace.dag_defaults import DEFAULT_ARGS, START_DATE
from mailtrace.drop_queue import RESEND_DROPS

RESEND_DAG_ID = "mailtrace_resend"


@dag(
    schedule=[RESEND_DROPS],
    start_date=START_DATE,
    catchup=False,
    default_args=DEFAULT_ARGS,
    tags=["mailtrace", "resend", "s3-drop"],
    doc_md=__doc__,
)
def mailtrace_resend_drop():
    @task
    def find_drops() -> list[dict]:
        """The dry runs to start: run id and conf of each uploaded ID list in the triggering events."""
        from mailtrace.resend.drop import plan_drops, record_set_aside_drops

        events = get_current_context()["triggering_asset_events"].get(RESEND_DROPS, [])
        return plan_drops(events, record_set_aside=record_set_aside_drops)

    TriggerDagRunOperator.partial(
        task_id="start_dry_run",
        trigger_dag_id=RESEND_DAG_ID,
        logical_date=None,
        skip_when_already_exists=True,
        wait_for_completion=False,
    ).expand_kwargs(find_drops())


mailtrace_resend_drop()
