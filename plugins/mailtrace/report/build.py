"""Building a period's report: one warehouse snapshot, the CSV to S3 and the manifest row upserted."""

from __future__ import annotations

import logging
import tempfile
from datetime import UTC, datetime
from pathlib import Path

import psycopg
from psycopg.types.json import Jsonb

from mailtrace.locks import MANIFEST_LOCK
from mailtrace.paths import read_sql
from mailtrace.report.constants import SUBJECT_ID_COLUMN
from mailtrace.report.csv_file import write_report_csv
from mailtrace.report.periods import ReportPeriod, resolve_period, weekly_period
from mailtrace.report.summary import flags_window, summarise_failures
from mailtrace.s3 import s3_hook
from mailtrace.settings import required_setting, setting
from mailtrace.warehouse import apply_migrations, connect

log = logging.getLogger(__name__)


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
                (flags_cutoff,) = conn.execute(read_sql("report/flags_cutoff.sql")).fetchone()
                with csv_path.open("wb") as out:
                    stats = write_report_csv(conn, period, out, subject_id_header=subject_id_header)
                summary = summarise_failures(conn, period)
            if summary["total"] != stats.row_count:
                raise RuntimeError(f"summary counts {summary['total']} rows, the CSV {stats.row_count}")
            s3_hook(content_type="text/csv; charset=utf-8").load_file(
                csv_path, key=period.s3_key, bucket_name=bucket, replace=True, encrypt=True
            )
        with conn.transaction():
            conn.execute(read_sql("report/manifest_lock.sql"), (MANIFEST_LOCK,))
            flags_since, flags_until = flags_window(conn, period, flags_cutoff)
            conn.execute(
                read_sql("report/upsert_manifest.sql"),
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
        read_sql("report/emailed_before.sql"),
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
    timezone = setting("timezone")
    period = resolve_period(params, logical_date, timezone)
    bucket = required_setting("report_bucket", "the report")
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
        subject_id_header=setting("subject_id_header"),
        email_owed=note is None,
        not_emailed_note=note,
    )
