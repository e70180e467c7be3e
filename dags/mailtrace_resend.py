"""
### mailtrace_resend — tell an uploaded list of people, once each, that an incident is resolved

Triggered by hand after a production fix. Upload the IDs of the people affected (CSV, one column, header
optional) to `s3://<report bucket>/resend-requests/<incident_id>/` (the only place lists are read from,
Variable `mailtrace_resend_ids_prefix`), or paste them into `inline_ids`, then trigger with `dry_run` on
and read the outcome CSV at `s3://<report bucket>/resend-outcomes/<incident_id>/<run_id>.csv`: every
input row with its decision (`send`, `would_send`, `skip`, `reject`) and reason (a row that cannot be read,
e.g. not UTF-8 or a control character, is set aside as `reject` with its reason; the rest go on). Where the
bucket's upload events reach queue `mailtrace_resend_drop_queue_url`, the upload alone starts that dry run
(DAG `mailtrace_resend_drop`). Trigger again with `dry_run` off to send. A bad parameter or list fails
`validate_and_plan` at once, without retries, saying what to fix.

* **validate_and_plan** reads and validates the list, writes the outcome CSV, claims the rows to send in
  `mailtrace.resend_request` and returns the chunks.
* **send_chunk** (one mapped task per chunk) sends through GC Notify, or SES when Variable
  `mailtrace_resend_provider` is `ses`, at `rate_per_minute` overall and records each email in
  `mailtrace.own_notification_event` (mailtrace's own sends), so delivery is tracked like any notification.
  A refusal of the whole resend (Notify key revoked, template unknown; SES sender not verified, sandbox)
  fails it at once, without retries, saying why; fix the cause and clear it.
* **summarize** records the counts in `mailtrace.resend_run` and returns them as the Delivery page's resend
  section shows them (rows per decision and reason; emails sent, failed, unresolved, unknown); it fails
  while any email is unresolved or `unknown`, and when every email was refused. A failed chunk fails the
  run; clearing it (or re-triggering) is safe: Notify rows are looked up before sending (and after an
  ambiguous answer only re-sent once the settle delay has passed).
  An SES email whose send call may have gone through unrecorded is marked `unknown` and never re-sent
  on its own: check it, then trigger the ID with `force_resend` if it should be sent.

Each (incident, subject) gets one email, whatever is re-triggered or retried; `force_resend` sends a
deliberate second one. Outside production only addresses on `mailtrace_resend_allow_list` receive mail.
"""

from __future__ import annotations

from datetime import timedelta

from airflow.sdk import dag, get_current_context, task

from mailtrace.dag_defaults import DEFAULT_ARGS, START_DATE
from mailtrace.resend_form import trigger_form

# Parallel chunks share one rate (mailtrace.send_pacer), so more of them only hide one slow chunk.
MAX_PARALLEL_CHUNKS = 4
# A chunk left with an ambiguous Notify answer fails; its retry may only send once the settle delay
# (Variable mailtrace_resend_settle_seconds, default 2 minutes) has passed, so retry after longer than that.
SEND_RETRIES = 4
SEND_RETRY_DELAY = timedelta(minutes=3)


def _params():
    from mailtrace.resend import ResendParams

    return ResendParams.from_mapping(get_current_context()["params"])


def _run_id() -> str:
    return get_current_context()["run_id"]


@dag(
    dag_id="mailtrace_resend",
    schedule=None,
    start_date=START_DATE,
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    tags=["mailtrace", "resend", "manual"],
    doc_md=__doc__,
    params=trigger_form(),
)
def mailtrace_resend():
    @task
    def validate_and_plan() -> list[dict[str, int]]:
        from mailtrace.resend import plan_resend

        return plan_resend(_params(), run_id=_run_id())

    @task(max_active_tis_per_dagrun=MAX_PARALLEL_CHUNKS, retries=SEND_RETRIES, retry_delay=SEND_RETRY_DELAY)
    def send_chunk(chunk: dict[str, int]) -> dict[str, int]:
        from mailtrace.resend import send_chunk as send

        return send(_params(), run_id=_run_id(), chunk_index=chunk["chunk_index"])

    @task(trigger_rule="none_failed")
    def summarize() -> dict:
        from mailtrace.resend import summarize_run

        return summarize_run(_params(), run_id=_run_id())

    send_chunk.expand(chunk=validate_and_plan()) >> summarize()


mailtrace_resend()
