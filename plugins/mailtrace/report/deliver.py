"""Emailing a built report to the examiners (attached or linked) and recording it in the manifest."""

from __future__ import annotations

import functools
import hashlib
import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

import psycopg
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from mailtrace.addresses import address_problem
from mailtrace.mailer import Attachment, RecipientsRefused, send_email
from mailtrace.paths import TEMPLATES_DIR, read_sql
from mailtrace.privacy import mask_email, mask_text
from mailtrace.report.constants import FLAGGED_LISTED_PER_GROUP, LATE_AFTER
from mailtrace.report.email_view import action_groups, flagged_groups, period_link
from mailtrace.report.periods import ReportPeriod, _period_from_manifest, _zone
from mailtrace.report.summary import _manifest_flags_window, newly_flagged
from mailtrace.s3 import s3_hook
from mailtrace.settings import SettingError, setting
from mailtrace.warehouse import connect

log = logging.getLogger(__name__)


def examiner_recipients() -> list[str]:
    """Addresses from Variable `mailtrace_examiner_emails`; refuses an empty list or a malformed address."""
    recipients = setting("examiner_emails")
    if not recipients:
        raise ValueError(
            "Variable mailtrace_examiner_emails lists no addresses; nobody to send the report to"
        )
    bad = [address for address in recipients if address_problem(address)]
    if bad:
        raise ValueError(
            "Variable mailtrace_examiner_emails has malformed addresses: " + ", ".join(map(mask_email, bad))
        )
    return recipients


def should_send(manifest: dict, *, run_id: str | None, manual_run: bool) -> bool:
    """Whether the email step should mail this report now.

    Not again when this run already mailed this content (a task retry), nor when another scheduled run
    did; yes when the content changed since it was mailed, or when someone triggered this run by hand
    (a deliberate re-send). A report never mailed is sent when it is owed (not built silently on purpose).
    """
    if manifest["sent_at"] is None:
        return manifest["email_owed"] or manual_run
    if manifest["sent_checksum"] != manifest["checksum_sha256"]:
        return True
    if manifest["sent_run_id"] == run_id:
        return False
    return manual_run


def _signed(number: int) -> str:
    """A change as examiners read it: +3, -2, 0."""
    return f"{number:+d}" if number else "0"


@functools.cache
def _jinja() -> Environment:
    env = Environment(
        loader=FileSystemLoader(TEMPLATES_DIR),
        autoescape=select_autoescape(enabled_extensions=("html", "html.j2"), default=False),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters["signed"] = _signed
    return env


def delivery_page_url() -> str | None:
    """Variable `mailtrace_delivery_page_url`: where the emails link to the Delivery page (None: no links)."""
    url = setting("delivery_page_url")
    if url is None:
        return None
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc or "\n" in url or "\r" in url:
        raise SettingError(
            "Variable mailtrace_delivery_page_url must be the page's http(s) address, like "
            f"https://airflow.example.gov/plugin/delivery, got {url[:60]!r}"
        )
    return url


def render_email(context: dict) -> tuple[str, str, str]:
    """Subject, plain text and HTML of the report email; HTML autoescaped (the data is untrusted).

    The counts by status and reason and the newly flagged addresses are shown in plain words, grouped by
    what to do (`mailtrace.report.email_view`); the codes stay in the CSV. The newly-flagged window and
    reason totals, the cleared count, each row's failed-email date, the late line and the Delivery page's
    address are optional.
    """
    context = {
        "flags_since": "",
        "flags_until": "",
        "flagged_cleared": 0,
        "flagged_reason_totals": None,
        "late_note": "",
        "delivery_page_url": None,
        **context,
    }
    base_url = context.pop("delivery_page_url")
    days = {"first_day": context["first_day"], "last_day": context["last_day"]}
    context["period_link"] = period_link(base_url, **days)
    context["action_groups"] = action_groups(context.pop("by_reason", []), base_url=base_url, **days)
    context["flagged_groups"] = flagged_groups(
        context.pop("flagged", []),
        context.pop("flagged_reason_totals"),
        per_group=FLAGGED_LISTED_PER_GROUP,
        base_url=base_url,
    )
    env = _jinja()
    text = env.get_template("weekly_report.txt.j2").render(context)
    html = env.get_template("weekly_report.html.j2").render(context)
    outcome = f"{context['total']} failed" if context["total"] else "no failures"
    return f"Failed notifications {context['period_label']}: {outcome}", text, html


def _load_manifest(conn: psycopg.Connection, bucket: str, s3_key: str) -> dict | None:
    with conn.cursor(row_factory=dict_row) as cursor:
        manifest = cursor.execute(read_sql("report/load_manifest.sql"), (bucket, s3_key)).fetchone()
    conn.commit()
    return manifest


def _send_and_record(
    conn: psycopg.Connection,
    manifest: dict,
    *,
    kind: str,
    recipients: list[str],
    render: Callable[[dict], tuple[str, str, str]],
    context: dict,
    run_id: str | None,
) -> None:
    """Email the examiners, then record in the manifest what they were sent (a retry then sends nothing).

    When the server refuses some examiners, the others have the email: record them, then fail loudly.
    """
    subject, text, html = render(context)
    refusal = None
    try:
        message_id = send_email(
            to=recipients, subject=subject, text=text, html=html, attachments=context.pop("attachments")
        )
    except RecipientsRefused as error:
        refusal, message_id, recipients = error, error.message_id, error.accepted
    except Exception as error:
        _record_not_sent(conn, manifest, error)
        raise
    if not recipients:  # every examiner refused: nobody has it, it stays owed
        _record_not_sent(conn, manifest, refusal)
        raise refusal
    with conn.transaction():
        conn.execute(
            read_sql("report/mark_sent.sql"),
            {
                "recipients": recipients,
                "delivery": context["delivery"],
                "message_id": message_id,
                "run_id": run_id,
                "checksum": manifest["checksum_sha256"],
                "row_count": manifest["row_count"],
                "summary": Jsonb(manifest["summary"]),
                "kind": kind,
                "bucket": manifest["bucket"],
                "s3_key": manifest["s3_key"],
            },
        )
    if refusal is not None:
        raise refusal


def _record_not_sent(conn: psycopg.Connection, manifest: dict, error: BaseException) -> None:
    conn.rollback()
    with conn.transaction():
        conn.execute(
            read_sql("report/mark_not_sent.sql"),
            {
                "error": mask_text(f"{type(error).__name__}: {error}")[:2000],
                "bucket": manifest["bucket"],
                "s3_key": manifest["s3_key"],
            },
        )


def late_note(manifest: dict, period: ReportPeriod, now: datetime) -> str:
    """The line saying a weekly report is late (emailed a day or more after its week ended), else ""."""
    if period.kind != "weekly" or now < period.end + LATE_AFTER:
        return ""
    zone = _zone(period.timezone)
    note = (
        f"This report is late: it was due on {period.end_day.isoformat()}, after its week ended, "
        f"and is sent on {now.astimezone(zone).date().isoformat()}"
    )
    if manifest["email_error"]:
        failed_at = manifest["email_failed_at"].astimezone(zone).strftime("%Y-%m-%d %H:%M")
        note += (
            f"; it could not be emailed before (last attempt {failed_at}: {manifest['email_error'][:300]})"
        )
    return note + "."


def email_report(
    *,
    bucket: str,
    s3_key: str,
    run_id: str | None = None,
    manual_run: bool = False,
    now: datetime | None = None,
) -> dict:
    """Email the summary of the report at `s3://bucket/s3_key` (built by `build_report`) to the examiners.

    Sending and recording are separate steps: should the task die between the SMTP server's acceptance and
    the manifest update, its retry sends again (at least once) rather than risk sending nothing. A report
    that could not be emailed stays owed (`email_owed_reports` sends it later, marked late).
    """
    with connect() as conn:
        manifest = _load_manifest(conn, bucket, s3_key)
        if manifest is None:
            raise LookupError(f"no manifest row for s3://{bucket}/{s3_key}; run build_report first")
        if not should_send(manifest, run_id=run_id, manual_run=manual_run):
            if manifest["sent_at"] is None:
                log.info("report %s is not emailed: %s", s3_key, manifest["not_emailed_note"])
                return {"sent": False, "s3_key": s3_key, "reason": manifest["not_emailed_note"]}
            log.info("report %s was already emailed at %s; not sending again", s3_key, manifest["sent_at"])
            return {"sent": False, "s3_key": s3_key}
        recipients = examiner_recipients()
        period = _period_from_manifest(manifest)
        flags_since, flags_until = _manifest_flags_window(manifest)
        flagged = newly_flagged(conn, flags_since, flags_until, period.timezone)
        conn.commit()

        zone = _zone(period.timezone)
        context = {
            **manifest["summary"],
            **_file_context(manifest, period),
            "period_kind": period.kind,
            "flagged": flagged.listed,
            "flagged_reason_totals": flagged.reason_totals,
            "flagged_total": flagged.total,
            "flagged_cleared": flagged.cleared,
            "flags_since": flags_since.astimezone(zone).strftime("%Y-%m-%d %H:%M"),
            "flags_until": flags_until.astimezone(zone).strftime("%Y-%m-%d %H:%M"),
            "delivery_page_url": delivery_page_url(),
            "late_note": late_note(manifest, period, now or datetime.now(UTC)),
        }
        _send_and_record(
            conn,
            manifest,
            kind="report",
            recipients=recipients,
            render=render_email,
            context=context,
            run_id=run_id,
        )
        delivery = context["delivery"]
    log.info("report %s emailed to %d examiners (%s)", period.label, len(recipients), delivery or "no file")
    return {"sent": True, "s3_key": s3_key, "delivery": delivery, "recipients": len(recipients)}


def _file_context(manifest: dict, period: ReportPeriod) -> dict:
    """Template values saying which file this is and how it reaches the examiners (plus the attachments)."""
    delivery, attachments, link, link_expires = _deliverable(manifest)
    zone = _zone(period.timezone)
    return {
        "period_label": period.label,
        "first_day": period.first_day.isoformat(),
        "last_day": period.last_day.isoformat(),
        "timezone": period.timezone,
        "row_count": manifest["row_count"],
        "s3_uri": f"s3://{manifest['bucket']}/{manifest['s3_key']}",
        "filename": _attachment_name(manifest["s3_key"]),
        "delivery": delivery,
        "attachments": attachments,
        "link": link,
        "link_expires": link_expires.astimezone(zone).strftime("%Y-%m-%d %H:%M %Z") if link_expires else "",
    }


def _attachment_name(s3_key: str) -> str:
    return s3_key.replace("/", "-")


def _deliverable(manifest: dict) -> tuple[str | None, tuple[Attachment, ...], str, datetime | None]:
    """How the CSV reaches the examiners: (delivery, attachments, link, link expiry).

    An empty report is neither attached nor linked. A small one is attached, after checking the object
    still holds the bytes the manifest describes; a large one is linked with a presigned GET that expires.
    """
    if manifest["row_count"] == 0:
        return None, (), "", None
    hook = s3_hook()
    bucket, key = manifest["bucket"], manifest["s3_key"]
    max_bytes = setting("report_attach_max_bytes")
    if manifest["byte_count"] <= max_bytes:
        content = hook.get_conn().get_object(Bucket=bucket, Key=key)["Body"].read()
        if hashlib.sha256(content).hexdigest() != manifest["checksum_sha256"]:
            raise RuntimeError(f"s3://{bucket}/{key} no longer matches its manifest; rebuild the report")
        return "attachment", (Attachment(_attachment_name(key), content, "text/csv"),), "", None
    hours = setting("report_link_expiry_hours")
    expires_at = datetime.now(UTC) + timedelta(hours=hours)
    link = hook.generate_presigned_url(
        "get_object", params={"Bucket": bucket, "Key": key}, expires_in=hours * 3600
    )
    if not link:
        raise RuntimeError(f"could not presign a link to s3://{bucket}/{key}")
    return "link", (), link, expires_at
