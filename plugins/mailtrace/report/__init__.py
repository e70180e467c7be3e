"""The failed-notification report (CONTRACT.md §4): a CSV in S3 per period, emailed to the examiners.

Two steps, each safe to run again:

* `build_report` reads one snapshot of the warehouse, streams the period's failed notifications through
  a temporary file into S3 (server-side encrypted) and upserts the period's manifest row. The same data
  always gives the same bytes, so a re-run overwrites the object with identical content.
* `email_report` sends the summary, with the CSV attached when small or linked (presigned, expiring)
  when not, and records it in the manifest so a retry does not mail the examiners twice.

Late verdicts: a week's CSV is built on Monday by sent_at, but a temporary failure or a bounce can be
reconciled days later. Each weekly run therefore also rebuilds the week before (`rebuild_previous_week`,
same key, same bytes for the same data) and, when the rebuilt content differs from what the examiners
were sent, mails them one short correction (`email_correction`), recorded like the report itself so a
re-run sends none.

"Newly flagged" in the email means flags set (flag_history.recorded_at) since the previous weekly report
was built, so a bounce reconciled on Monday morning for an email sent late on Sunday is listed in the
next report rather than in none. Each report keeps its window [flags_since, flags_until) in the manifest.

Memory stays flat however many rows a period has: rows come from a server-side cursor a chunk at a time
and go straight to disk, and the upload reads the file back in parts.
"""

from mailtrace.events import FAILED_STATUSES
from mailtrace.report.build import build_for_run, build_report
from mailtrace.report.constants import (
    AWS_CONN_ID,
    DEFAULT_TIMEZONE,
    FETCH_ROWS,
    MAX_LINK_EXPIRY_HOURS,
)
from mailtrace.report.corrections import (
    email_correction,
    rebuild_previous_for_run,
    rebuild_previous_week,
    render_correction,
)
from mailtrace.report.csv_file import neutralise_cell, write_report_csv
from mailtrace.report.deliver import email_report, render_email
from mailtrace.report.owed import email_owed_for_run, email_owed_reports
from mailtrace.report.periods import (
    ReportPeriod,
    ReportPeriodError,
    adhoc_period,
    resolve_period,
    weekly_period,
)

__all__ = [
    "AWS_CONN_ID",
    "DEFAULT_TIMEZONE",
    "FAILED_STATUSES",
    "FETCH_ROWS",
    "MAX_LINK_EXPIRY_HOURS",
    "ReportPeriod",
    "ReportPeriodError",
    "adhoc_period",
    "build_for_run",
    "build_report",
    "email_correction",
    "email_owed_for_run",
    "email_owed_reports",
    "email_report",
    "neutralise_cell",
    "rebuild_previous_for_run",
    "rebuild_previous_week",
    "render_correction",
    "render_email",
    "resolve_period",
    "weekly_period",
    "write_report_csv",
]
