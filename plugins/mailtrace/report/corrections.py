"""Late verdicts: the week before rebuilt, and one correction emailed when its content changed."""

from __future__ import annotations

import logging
from datetime import datetime

from mailtrace.paths import read_sql
from mailtrace.report.build import build_report
from mailtrace.report.constants import SUBJECT_ID_COLUMN
from mailtrace.report.deliver import (
    _file_context,
    _jinja,
    _load_manifest,
    _send_and_record,
    delivery_page_url,
    examiner_recipients,
)
from mailtrace.report.email_view import action_groups, period_link
from mailtrace.report.periods import ReportPeriod, _period_from_manifest, _zone, resolve_period
from mailtrace.settings import required_setting, setting
from mailtrace.warehouse import apply_migrations, connect

log = logging.getLogger(__name__)


def rebuild_previous_week(
    period: ReportPeriod,
    *,
    bucket: str,
    run_id: str | None = None,
    subject_id_header: str = SUBJECT_ID_COLUMN,
) -> dict:
    """Rebuild the weekly report before `period` (same key, same bytes for the same data), if there is one.

    Late receipts (Notify temporary failures, bounces after a delivery) arrive up to days after a week's
    report was built; a week later they are in. Only a week that already has a report is rebuilt: the week
    before the first report, or before an ad-hoc period, is left alone. Returns a small dict for XCom.
    """
    if period.kind != "weekly":
        return {"rebuilt": False, "reason": "ad-hoc period"}
    previous = period.previous()
    with connect() as conn:
        apply_migrations(conn)
        exists = conn.execute(
            read_sql("report/manifest_exists.sql"),
            (bucket, previous.s3_key),
        ).fetchone()
        conn.commit()
    if exists is None:
        log.info("no report for %s to rebuild", previous.label)
        return {"rebuilt": False, "reason": f"no report for {previous.label}"}
    built = build_report(
        previous, bucket=bucket, run_id=run_id, subject_id_header=subject_id_header, email_owed=None
    )
    return {"rebuilt": True, **built}


def rebuild_previous_for_run(
    *, params: dict | None, logical_date: datetime, run_id: str | None = None
) -> dict:
    """`rebuild_previous_week` for a DAG run: the week before the run's period, settings from Variables."""
    timezone = setting("timezone")
    return rebuild_previous_week(
        resolve_period(params, logical_date, timezone),
        bucket=required_setting("report_bucket", "the report"),
        run_id=run_id,
        subject_id_header=setting("subject_id_header"),
    )


def _count_changes(sent: dict | None, now: dict, list_name: str, names: tuple[str, ...]) -> list[dict]:
    """Rows of `now[list_name]` whose current-period count differs from the emailed summary's."""

    def counts(summary: dict | None) -> dict[tuple, int]:
        rows = (summary or {}).get(list_name, [])
        return {tuple(row[n] for n in names): row["current"] for row in rows}

    before, after = counts(sent), counts(now)
    changes = []
    for key in sorted(set(before) | set(after), key=lambda k: tuple(map(str, k))):
        was, is_now = before.get(key, 0), after.get(key, 0)
        if was != is_now:
            changes.append({**dict(zip(names, key, strict=True)), "was": was, "now": is_now})
    changes.sort(key=lambda r: (-abs(r["now"] - r["was"]), *(str(r[n]) for n in names)))
    return changes


def correction_subject(label: str, was: int | None, now: int) -> str:
    """`Corrected failed notifications 2026-W02: 2 more failures (now 5)`."""
    if was is None or was == now:
        return f"Corrected failed notifications {label}: revised ({now} failed)"
    difference = now - was
    plural = "" if abs(difference) == 1 else "s"
    change = f"{abs(difference)} {'more' if difference > 0 else 'fewer'} failure{plural}"
    return f"Corrected failed notifications {label}: {change} (now {now})"


def render_correction(context: dict) -> tuple[str, str, str]:
    """Subject, plain text and HTML of a correction email; HTML autoescaped.

    The changed counts by status and reason are shown in plain words grouped by what to do, as in the
    report email; the Delivery page's address (`delivery_page_url`) is optional.
    """
    context = {"delivery_page_url": None, **context}
    base_url = context.pop("delivery_page_url")
    days = {"first_day": context["first_day"], "last_day": context["last_day"]}
    context["period_link"] = period_link(base_url, **days)
    groups = action_groups(context.pop("by_reason"), counts=("was", "now"), base_url=base_url, **days)
    # Reasons said in the same words are merged into one line: one whose changes cancel out is no change.
    context["action_groups"] = [
        {**group, "rows": changed}
        for group in groups
        if (changed := [row for row in group["rows"] if row["was"] != row["now"]])
    ]
    env = _jinja()
    text = env.get_template("weekly_report_correction.txt.j2").render(context)
    html = env.get_template("weekly_report_correction.html.j2").render(context)
    return correction_subject(context["period_label"], context["was"], context["row_count"]), text, html


def email_correction(*, bucket: str, s3_key: str, run_id: str | None = None) -> dict:
    """Mail the examiners a short correction when a rebuilt report differs from the content they were sent.

    Nothing when the content is what they have (so a re-run sends none), nor when the report was never
    mailed (its own run mails it whole). The corrected CSV is attached or linked as for the report.
    """
    with connect() as conn:
        manifest = _load_manifest(conn, bucket, s3_key)
        if manifest is None:
            raise LookupError(f"no manifest row for s3://{bucket}/{s3_key}; run build_report first")
        if manifest["sent_at"] is None:
            # Owed: email_owed_reports sends it whole (this content), marked late. Not owed: built silently.
            log.info(
                "report %s was never emailed (owed: %s); no correction to send",
                s3_key,
                manifest["email_owed"],
            )
            return {"sent": False, "s3_key": s3_key, "reason": "report not emailed yet"}
        if manifest["sent_checksum"] == manifest["checksum_sha256"]:
            log.info("report %s is unchanged since it was emailed; no correction", s3_key)
            return {"sent": False, "s3_key": s3_key, "reason": "unchanged"}
        recipients = examiner_recipients()
        page_url = delivery_page_url()
        period = _period_from_manifest(manifest)
        zone = _zone(period.timezone)
        was = manifest["sent_row_count"]
        summary = manifest["summary"]
        context = {
            **_file_context(manifest, period),
            "was": was,
            "more": None if was is None else manifest["row_count"] - was,
            "was_sent_at": manifest["sent_at"].astimezone(zone).strftime("%Y-%m-%d %H:%M"),
            "by_type": _count_changes(manifest["sent_summary"], summary, "by_type", ("notification_type",)),
            "by_reason": _count_changes(
                manifest["sent_summary"], summary, "by_reason", ("delivery_status", "failure_reason")
            ),
            "delivery_page_url": page_url,
        }
        _send_and_record(
            conn,
            manifest,
            kind="correction",
            recipients=recipients,
            render=render_correction,
            context=context,
            run_id=run_id,
        )
    log.info("correction of %s emailed to %d examiners", period.label, len(recipients))
    return {"sent": True, "s3_key": s3_key, "delivery": context["delivery"], "recipients": len(recipients)}
