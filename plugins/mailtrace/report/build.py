"""Building a period's report: one warehouse snapshot, the CSV to S3 and the manifest row upserted."""

from __future__ import annotations

import logging
import tempfile
from datetime import UTC, datetime
from pathlib import Path

import psycopg
from psycopg.types.json import Jsonb

from mailtrace.paths import read_sql
from mailtrace.report.constants import AWS_CONN_ID, DEFAULT_TIMEZONE, MANIFEST_LOCK, SUBJECT_ID_COLUMN
from mailtrace.report.csv_file import write_report_csv
from mailtrace.report.periods import ReportPeriod, resolve_period, weekly_period
from mailtrace.report.summary import flags_window, summarise_failures
from mailtrace.settings import get_setting
from mailtrace.warehouse import apply_migrations, connect

log = logging.getLogger(__name__)


# Build


def _s3_hook():
    from airflow.providers.amazon.aws.hooks.s3 import S3Hook

    return S3Hook(aws_conn_id=AWS_CONN_ID, extra_args={"ContentType": "text/csv; charset=utf-8"})


# The "newly flagged" window is fixed when a report is first built: a rebuild (a re-run, or the
# following week's correction pass) keeps it, so the email lists the same flags and windows never overlap.
_UPSERT_MANIFEST = """
INSERT INTO mailtrace.report_manifest
    (bucket, s3_key, period_kind, period_start, period_end, period_timezone, period_label,
     row_count, byte_count, checksum_sha256, summary, built_run_id, flags_since, flags_until, email_owed,
     not_emailed_note)
VALUES (%(bucket)s, %(s3_key)s, %(period_kind)s, %(period_start)s, %(period_end)s, %(period_timezone)s,
        %(period_label)s, %(row_count)s, %(byte_count)s, %(checksum_sha256)s, %(summary)s, %(built_run_id)s,
        %(flags_since)s, %(flags_until)s, coalesce(%(email_owed)s::boolean, false), %(not_emailed_note)s)
ON CONFLICT (bucket, s3_key) DO UPDATE SET
    -- Owed once a build meant to email it, until an email goes out; a rebuild (email_owed NULL) keeps it.
    email_owed = report_manifest.email_owed
                 OR (coalesce(%(email_owed)s::boolean, false) AND report_manifest.sent_at IS NULL),
    not_emailed_note = CASE WHEN %(email_owed)s::boolean IS NULL THEN report_manifest.not_emailed_note
                            ELSE %(not_emailed_note)s END,
    period_kind = EXCLUDED.period_kind,
    period_start = EXCLUDED.period_start,
    period_end = EXCLUDED.period_end,
    period_timezone = EXCLUDED.period_timezone,
    period_label = EXCLUDED.period_label,
    row_count = EXCLUDED.row_count,
    byte_count = EXCLUDED.byte_count,
    checksum_sha256 = EXCLUDED.checksum_sha256,
    summary = EXCLUDED.summary,
    built_at = now(),
    built_run_id = EXCLUDED.built_run_id
"""


def build_report(
    period: ReportPeriod,
    *,
    bucket: str,
    run_id: str | None = None,
    subject_id_header: str = SUBJECT_ID_COLUMN,
    email_owed: bool | None = True,
    not_emailed_note: str | None = None,
) -> dict:
    """Write the period's CSV to `s3://bucket/<period.s3_key>` and upsert its manifest row.

    The CSV and the summary counts come from one REPEATABLE READ snapshot, so they agree. The manifest is
    written only after the upload succeeded. `email_owed`: whether the examiners are owed this report by
    email (False: built on purpose without one, `not_emailed_note` says why; None: a rebuild, which keeps
    what the row says). Returns a small dict for XCom.
    """
    with connect() as conn:
        apply_migrations(conn)
        with tempfile.TemporaryDirectory(prefix="mailtrace-report-") as scratch:
            csv_path = Path(scratch) / "report.csv"
            with conn.transaction():
                conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                (flags_cutoff,) = conn.execute(read_sql("report_flags_cutoff.sql")).fetchone()
                with csv_path.open("wb") as out:
                    stats = write_report_csv(conn, period, out, subject_id_header=subject_id_header)
                summary = summarise_failures(conn, period)
            if summary["total"] != stats.row_count:
                raise RuntimeError(f"summary counts {summary['total']} rows, the CSV {stats.row_count}")
            _s3_hook().load_file(csv_path, key=period.s3_key, bucket_name=bucket, replace=True, encrypt=True)
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (MANIFEST_LOCK,))
            flags_since, flags_until = flags_window(conn, period, flags_cutoff)
            conn.execute(
                _UPSERT_MANIFEST,
                {
                    "bucket": bucket,
                    "s3_key": period.s3_key,
                    "period_kind": period.kind,
                    "period_start": period.start,
                    "period_end": period.end,
                    "period_timezone": period.timezone,
                    "period_label": period.label,
                    "row_count": stats.row_count,
                    "byte_count": stats.byte_count,
                    "checksum_sha256": stats.checksum_sha256,
                    "summary": Jsonb(summary),
                    "built_run_id": run_id,
                    "flags_since": flags_since,
                    "flags_until": flags_until,
                    "email_owed": email_owed,
                    "not_emailed_note": None if email_owed else not_emailed_note,
                },
            )
    log.info(
        "report %s: %d failed notifications, %d bytes, sha256 %s -> s3://%s/%s",
        period.label,
        stats.row_count,
        stats.byte_count,
        stats.checksum_sha256,
        bucket,
        period.s3_key,
    )
    return {
        "bucket": bucket,
        "s3_key": period.s3_key,
        "period_label": period.label,
        "row_count": stats.row_count,
        "byte_count": stats.byte_count,
        "checksum_sha256": stats.checksum_sha256,
        "email_owed": email_owed,
    }


FIRST_DEPLOYMENT_NOTE = (
    "built without an email: a week before the latest, on a deployment that had emailed no weekly "
    "report before it (first deployment catching up)"
)


def first_deployment_note(
    conn: psycopg.Connection, period: ReportPeriod, *, bucket: str, now: datetime
) -> str | None:
    """Why a scheduled weekly report should be built without emailing it, or None to email it.

    Deployed for the first time, the scheduler catches up every week since the DAG's start date: the
    examiners get only the latest week's report, and the weeks before are built silently (in S3 and the
    manifest, for the record and for the next week's comparison). A week before the latest is emailed when
    the deployment had already emailed an earlier weekly report: then it is a week missed while the
    scheduler was down, and the examiners are owed it.
    """
    if period.kind != "weekly" or weekly_period(now, period.timezone) == period:
        return None
    emailed_before = conn.execute(
        """SELECT 1 FROM mailtrace.report_manifest
           WHERE bucket = %s AND period_kind = 'weekly' AND sent_at IS NOT NULL AND period_start < %s
           LIMIT 1""",
        (bucket, period.start),
    ).fetchone()
    conn.commit()
    return None if emailed_before else FIRST_DEPLOYMENT_NOTE


def build_for_run(
    *,
    params: dict | None,
    logical_date: datetime,
    run_id: str | None = None,
    manual_run: bool = False,
    now: datetime | None = None,
) -> dict:
    """`build_report` for a DAG run: the period from its params or logical date, the rest from Variables.

    A scheduled run for a week before the latest, on a first deployment, builds without emailing
    (`first_deployment_note`); every other run's report is owed to the examiners until emailed.
    """
    timezone = get_setting("timezone", DEFAULT_TIMEZONE)
    period = resolve_period(params, logical_date, timezone)
    bucket = get_setting("report_bucket")
    note = None
    if not manual_run:
        with connect() as conn:
            apply_migrations(conn)
            note = first_deployment_note(conn, period, bucket=bucket, now=now or datetime.now(UTC))
    if note:
        log.info("report %s: %s", period.label, note)
    return build_report(
        period,
        bucket=bucket,
        run_id=run_id,
        subject_id_header=get_setting("subject_id_header", SUBJECT_ID_COLUMN),
        email_owed=note is None,
        not_emailed_note=note,
    )
