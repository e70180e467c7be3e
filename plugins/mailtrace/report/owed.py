"""Reports built but never emailed (a failed send, an outage): emailed on the next run."""

from __future__ import annotations

import logging
from datetime import datetime

from mailtrace.paths import read_sql
from mailtrace.report.deliver import email_report
from mailtrace.report.periods import resolve_period
from mailtrace.settings import required_setting, setting
from mailtrace.warehouse import apply_migrations, connect

log = logging.getLogger(__name__)


def email_owed_reports(
    *, bucket: str, before: datetime, run_id: str | None = None, now: datetime | None = None
) -> dict:
    """Email every report still owed whose period ended by `before` (the run's own period start), oldest
    first, each with a line saying it is late.

    A report whose email failed through every retry (the mail server down) would otherwise never reach the
    examiners: the next week's run only corrects reports that were sent. Stops at the first failure (the
    mail server is most likely still down); what is left stays owed for the next run.
    """
    with connect() as conn:
        apply_migrations(conn)
        owed = [
            key
            for (key,) in conn.execute(
                read_sql("report/owed_reports.sql"),
                (bucket, before),
            )
        ]
        conn.commit()
    sent = []
    for key in owed:
        if email_report(bucket=bucket, s3_key=key, run_id=run_id, now=now)["sent"]:
            sent.append(key)
    if owed:
        log.info("emailed %d owed reports late: %s", len(sent), ", ".join(sent))
    return {"owed": len(owed), "sent": sent}


def email_owed_for_run(*, params: dict | None, logical_date: datetime, run_id: str | None = None) -> dict:
    """`email_owed_reports` for a DAG run: reports owed from before this run's period."""
    period = resolve_period(params, logical_date, setting("timezone"))
    return email_owed_reports(
        bucket=required_setting("report_bucket", "the report"), before=period.start, run_id=run_id
    )
