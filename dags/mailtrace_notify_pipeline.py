"""
### mailtrace_notify_pipeline

Every 15 minutes (never two runs at once): what GC Notify says happened to every logged email.

1. **migrate_warehouse** – apply any new `sql/migrations` (a no-op when up to date).
2. **extract_notify_list** – walk `GET /v2/notifications` newest first back to the watermark minus
   an overlap, loading every status into `mailtrace.provider_event` (COPY, idempotent). A malformed
   notification is set aside in `mailtrace.notify_quarantine` and never moves the watermark.
3. **lookup_open_notifications** – `GET /v2/notifications/{id}` for logged emails still pending or
   unknown that the list walk no longer covers.
4. **reconcile_event_log** – write verdicts into `mailtrace.delivery` (the event log is only read), record
   orphans, mark `not_at_provider` / `send_failed`.
5. **update_address_flags** – set and clear invalid-address flags.
6. **check_deliverability** – fail and email `mailtrace_alert_emails` when delivery through Notify
   degrades or its receipts stop.

A task that fails for good (retries exhausted) emails `mailtrace_alert_emails` too.

Connections: `mailtrace_warehouse`, `notify_api`, `smtp_default`. Variables: see the README.
"""

from __future__ import annotations

from datetime import timedelta

from airflow.sdk import chain, dag, task

from mailtrace.assets import PROVIDER_EVENTS
from mailtrace.dag_defaults import DEFAULT_ARGS, START_DATE, pipeline_schedule


@dag(
    schedule=pipeline_schedule("*/15 * * * *"),
    start_date=START_DATE,
    catchup=False,
    max_active_runs=1,
    dagrun_timeout=timedelta(minutes=60),
    default_args=DEFAULT_ARGS,
    tags=["mailtrace", "gc_notify", "delivery-status"],
    doc_md=__doc__,
)
def mailtrace_notify_pipeline():
    @task
    def migrate_warehouse() -> list[str]:
        from mailtrace.pipeline import run_migrations

        return run_migrations()

    @task(outlets=[PROVIDER_EVENTS])
    def extract_notify_list() -> dict:
        from mailtrace.pipeline import run_notify_list_extract

        return run_notify_list_extract()

    @task
    def lookup_open_notifications() -> dict:
        from mailtrace.pipeline import run_notify_lookups

        return run_notify_lookups()

    @task
    def reconcile_event_log() -> dict:
        from mailtrace.pipeline import run_reconcile

        return run_reconcile()

    @task
    def update_address_flags() -> dict:
        from mailtrace.pipeline import run_flag_update

        return run_flag_update()

    @task(retries=0)
    def check_deliverability() -> dict:
        from mailtrace.pipeline import run_deliverability_check

        return run_deliverability_check("gc_notify")

    chain(
        migrate_warehouse(),
        extract_notify_list(),
        lookup_open_notifications(),
        reconcile_event_log(),
        update_address_flags(),
        check_deliverability(),
    )


mailtrace_notify_pipeline()
