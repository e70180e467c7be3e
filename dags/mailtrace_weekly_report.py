"""
### mailtrace_weekly_report

Every Monday at 06:00 (America/Vancouver) builds the CSV of notifications that failed in the ISO week just
ended (CONTRACT.md §4), writes it to `s3://<mailtrace_report_bucket>/failed-notifications/<year>-W<ww>.csv`
with server-side encryption, and emails the examiners (`mailtrace_examiner_emails`) a summary with the CSV
attached, or linked when it is larger than `mailtrace_report_attach_max_bytes`.

Late verdicts: each weekly run also rebuilds the week before (same key; a bounce or Notify temporary
failure reconciled after that week's Monday report is in it now) and, only when its content changed since
the examiners got it, emails them one short correction with the corrected CSV. A re-run sends none.
"Newly flagged" in the email lists flags set since the previous weekly report was built.

A report whose email failed through every retry (mail server down) stays owed in
`mailtrace.report_manifest` (`email_owed`, with the masked error); the next run's `email_owed_reports`
emails it with a line saying it is late.

First deployment: the scheduler catches up every week since the start date, but only the latest week's
report is emailed; the weeks before it are built silently (S3 and the manifest, `not_emailed_note`).
After a deployment has emailed a report, weeks missed while the scheduler was down are built and emailed
(late) on catch-up. Re-running a week rewrites the same bytes for the same data; a retry does not email
twice. Trigger by hand with `start` and `end` dates (both included) for an ad-hoc period, stored
at `failed-notifications/adhoc/<start>_<end>.csv`; a manual run is always emailed.

The schedule's time zone is fixed here; the period's time zone is Variable `mailtrace_timezone`
(default America/Vancouver). Keep the two the same.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import CronTriggerTimetable, Param, dag, task

from mailtrace.dag_defaults import DEFAULT_ARGS

SCHEDULE_TIMEZONE = "America/Vancouver"


@dag(
    schedule=CronTriggerTimetable("0 6 * * 1", timezone=SCHEDULE_TIMEZONE),
    start_date=pendulum.datetime(2026, 1, 5, tz=SCHEDULE_TIMEZONE),
    catchup=True,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    tags=["mailtrace", "report"],
    doc_md=__doc__,
    params={
        "start": Param(
            None,
            type=["null", "string"],
            format="date",
            title="Start date",
            description="First day of an ad-hoc period (local date). Leave empty for the week just ended.",
        ),
        "end": Param(
            None,
            type=["null", "string"],
            format="date",
            title="End date",
            description="Last day of an ad-hoc period, included; at most 366 days after the start.",
        ),
    },
)
def mailtrace_weekly_report():
    @task
    def build_report(params=None, logical_date=None, dag_run=None, run_id=None) -> dict:
        """CSV to S3 and the manifest row; returns the object's key and counts."""
        from mailtrace.report import build_for_run

        # A run triggered through the API may have no logical date; it reports relative to its run time.
        return build_for_run(
            params=params,
            logical_date=logical_date or dag_run.run_after,
            run_id=run_id,
            manual_run=dag_run.run_type == "manual",
        )

    @task
    def email_report(built: dict, dag_run=None, run_id=None) -> dict:
        """Summary email to the examiners, once per report content unless triggered by hand."""
        from mailtrace.report import email_report as send_report

        return send_report(
            bucket=built["bucket"],
            s3_key=built["s3_key"],
            run_id=run_id,
            manual_run=dag_run.run_type == "manual",
        )

    @task
    def rebuild_previous_week(params=None, logical_date=None, dag_run=None, run_id=None) -> dict:
        """The week before this run's week, rebuilt with verdicts that arrived since (weekly runs only)."""
        from mailtrace.report import rebuild_previous_for_run

        return rebuild_previous_for_run(
            params=params, logical_date=logical_date or dag_run.run_after, run_id=run_id
        )

    @task
    def email_owed_reports(params=None, logical_date=None, dag_run=None, run_id=None) -> dict:
        """Earlier reports whose email never went out (mail server down through every retry), marked late."""
        from mailtrace.report import email_owed_for_run

        return email_owed_for_run(
            params=params, logical_date=logical_date or dag_run.run_after, run_id=run_id
        )

    @task
    def email_correction(rebuilt: dict, run_id=None) -> dict:
        """A short correction to the examiners when the rebuilt week differs from what they were sent."""
        from mailtrace.report import email_correction as send_correction

        if not rebuilt["rebuilt"]:
            return {"sent": False, "reason": rebuilt["reason"]}
        return send_correction(bucket=rebuilt["bucket"], s3_key=rebuilt["s3_key"], run_id=run_id)

    email_report(build_report())
    rebuilt = rebuild_previous_week()
    # An owed report goes out whole (rebuilt, so current) before any correction is considered for it.
    rebuilt >> email_owed_reports() >> email_correction(rebuilt)


mailtrace_weekly_report()
