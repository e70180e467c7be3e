"""
### mailtrace_ses_events

Every 10 minutes drains the Amazon SES event queue (SES -> SNS -> SQS, connection `aws_default`, queue URL
in Variable `mailtrace_ses_queue_url`) into `mailtrace.provider_event`, then reconciles the verdicts into
`mailtrace.delivery` (grace for not_at_provider: `mailtrace_not_at_provider_grace_minutes`).

Accepts SNS-enveloped and raw-delivered messages, configuration-set events (`eventType`) and identity
notifications (`notificationType`). Each batch of 10 is archived as NDJSON to
`s3://<mailtrace_report_bucket>/ses-raw/<YYYY>/<MM>/<DD>/<batch-id>.ndjson`, loaded, and only then deleted
from the queue. A message that cannot be parsed or stored goes, alone, to `mailtrace.ses_dead_letter` (reason
and raw bytes) and is deleted; the rest of its batch is stored. A batch the warehouse cannot store fails the
task and is made visible again at once, so the retry finds it. A killed run leaves its messages in the
queue and the next run stores them again as a no-op. The last task checks
SES deliverability (delivery rate, events stopping) and, like any task that fails for good, emails
`mailtrace_alert_emails`.

A deployment without an SES queue (`mailtrace_ses_queue_url` unset) gets skipped runs that say so in the
first task's log, not failures and alerts.
"""

from __future__ import annotations

from datetime import timedelta

from airflow.sdk import dag, task

from mailtrace.assets import PROVIDER_EVENTS
from mailtrace.dag_defaults import DEFAULT_ARGS, START_DATE, pipeline_schedule


@dag(
    schedule=pipeline_schedule(timedelta(minutes=10)),
    start_date=START_DATE,
    catchup=False,
    max_active_runs=1,
    dagrun_timeout=timedelta(minutes=30),
    default_args=DEFAULT_ARGS,
    tags=["mailtrace", "ses", "delivery-status"],
    doc_md=__doc__,
)
def mailtrace_ses_events():
    @task(outlets=[PROVIDER_EVENTS])
    def drain_ses_queue() -> dict:
        """Queue -> S3 archive + provider_event/dead letters -> delete; returns counts."""
        from mailtrace.ses_ingest import drain_configured_queue

        return drain_configured_queue()

    @task
    def reconcile_verdicts() -> dict:
        """Apply the new provider history to the verdicts (mailtrace.delivery; all providers, incremental)."""
        from mailtrace.pipeline import run_reconcile

        return run_reconcile()

    @task
    def update_address_flags() -> dict:
        """Set and clear invalid-address flags from the new verdicts."""
        from mailtrace.pipeline import run_flag_update

        return run_flag_update()

    @task(retries=0)
    def check_deliverability() -> dict:
        """Fail and email mailtrace_alert_emails when delivery through SES degrades or its events stop."""
        from mailtrace.pipeline import run_deliverability_check

        return run_deliverability_check("ses")

    drain_ses_queue() >> reconcile_verdicts() >> update_address_flags() >> check_deliverability()


mailtrace_ses_events()
