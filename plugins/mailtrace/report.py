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

from __future__ import annotations

import csv
import hashlib
import logging
import re
import tempfile
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any, BinaryIO
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import psycopg
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from mailtrace.events import FAILED_STATUSES
from mailtrace.mailer import Attachment, RecipientsRefused, send_email
from mailtrace.paths import TEMPLATES_DIR, read_sql
from mailtrace.privacy import mask_email, mask_text
from mailtrace.settings import get_email_list, get_setting
from mailtrace.warehouse import apply_migrations, connect

log = logging.getLogger(__name__)

AWS_CONN_ID = "aws_default"
DEFAULT_TIMEZONE = "America/Vancouver"
KEY_PREFIX = "failed-notifications/"


# CONTRACT.md §4, in file order. The subject id column's header is a setting (default below).
SUBJECT_ID_COLUMN = "registration_number"
CSV_COLUMNS = (
    "date_sent",
    "notification_type",
    "delivery_status",
    "failure_reason",
    SUBJECT_ID_COLUMN,
    "subject_type",
    "recipient_email",
    "event_id",
    "provider_reference",
    "delivery_detail",
)

# A spreadsheet treats a cell starting with one of these as a formula (OWASP "CSV injection").
FORMULA_TRIGGERS = ("=", "+", "-", "@", "\t", "\r")

MAX_ADHOC_DAYS = 366
EARLIEST_DAY = date(1970, 1, 1)
LATEST_DAY = date(9998, 12, 31)
DEFAULT_ATTACH_MAX_BYTES = 5 * 1024 * 1024
DEFAULT_LINK_EXPIRY_HOURS = 72
# A weekly report emailed this long after its week ended says it is late (a Monday 06:00 run is on time).
LATE_AFTER = timedelta(days=1)
# S3 (SigV4) refuses presigned URLs valid for longer than seven days.
MAX_LINK_EXPIRY_HOURS = 7 * 24
# Rows fetched from the server-side cursor per round trip: the most rows ever held in memory.
FETCH_ROWS = 2_000
# Newly flagged addresses listed in the email body; the rest are counted, not listed.
FLAGGED_LISTED_MAX = 200
# Serialises manifest upserts, so two builds never compute overlapping "newly flagged" windows.
MANIFEST_LOCK = 7_301_004

_ADDRESS = re.compile(r"[^@\s,;<>]+@[^@\s,;<>]+\.[^@\s,;<>]+")


class ReportPeriodError(ValueError):
    """An ad-hoc period the report cannot be built for (unparsable date, bad or too long range)."""


# --------------------------------------------------------------------------------------------------
# Periods


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as error:
        raise ValueError(f"unknown time zone {name[:60]!r} (Variable mailtrace_timezone)") from error


@dataclass(frozen=True)
class ReportPeriod:
    """Local days [first_day, end_day) in `timezone`; the report covers the instants between their midnights.

    Midnight is taken in the deployment's time zone, so a notification at 23:30 local Sunday belongs to
    the week that Sunday ends, whatever its UTC date.
    """

    kind: str  # 'weekly' (an ISO week) or 'adhoc' (dates chosen by hand)
    first_day: date
    end_day: date  # exclusive
    timezone: str

    @property
    def last_day(self) -> date:
        return self.end_day - timedelta(days=1)

    @property
    def start(self) -> datetime:
        return datetime.combine(self.first_day, time(0), tzinfo=_zone(self.timezone)).astimezone(UTC)

    @property
    def end(self) -> datetime:
        return datetime.combine(self.end_day, time(0), tzinfo=_zone(self.timezone)).astimezone(UTC)

    @property
    def label(self) -> str:
        if self.kind == "weekly":
            iso = self.first_day.isocalendar()
            return f"{iso.year}-W{iso.week:02d}"
        return f"{self.first_day.isoformat()} to {self.last_day.isoformat()}"

    @property
    def s3_key(self) -> str:
        """`failed-notifications/2026-W02.csv`; ad hoc `failed-notifications/adhoc/<first>_<last>.csv`."""
        if self.kind == "weekly":
            return f"{KEY_PREFIX}{self.label}.csv"
        return f"{KEY_PREFIX}adhoc/{self.first_day.isoformat()}_{self.last_day.isoformat()}.csv"

    def previous(self) -> ReportPeriod:
        """The period of the same length just before this one (the week before, for a weekly report)."""
        length = self.end_day - self.first_day
        return ReportPeriod(self.kind, self.first_day - length, self.first_day, self.timezone)


def weekly_period(when: datetime, timezone: str = DEFAULT_TIMEZONE) -> ReportPeriod:
    """The last ISO week that ended before `when` (a run's logical date), in local time.

    A run on Monday 06:00 reports the Monday-to-Sunday week that ended six hours earlier; a manual run
    mid-week reports the last complete week, never a partial one.
    """
    if when.tzinfo is None:
        raise ValueError("the run's logical date must be timezone-aware")
    local_day = when.astimezone(_zone(timezone)).date()
    this_monday = local_day - timedelta(days=local_day.weekday())
    return ReportPeriod("weekly", this_monday - timedelta(days=7), this_monday, timezone)


def _parse_day(value: Any, name: str) -> date:
    if isinstance(value, datetime):
        raise ReportPeriodError(f"{name} must be a date without a time, got {value.isoformat()}")
    if isinstance(value, date):
        return value
    if isinstance(value, str):
        try:
            return date.fromisoformat(value.strip())
        except ValueError:
            pass
    raise ReportPeriodError(f"{name} must be a date like 2026-01-31, got {str(value)[:40]!r}")


def adhoc_period(start: Any, end: Any, timezone: str = DEFAULT_TIMEZONE) -> ReportPeriod:
    """The local days `start` to `end`, both included (dates or ISO date strings from the trigger form)."""
    first = _parse_day(start, "start")
    last = _parse_day(end, "end")
    if last < first:
        raise ReportPeriodError(f"end {last.isoformat()} is before start {first.isoformat()}")
    if first < EARLIEST_DAY or last > LATEST_DAY:
        # Beyond these the period's bounds (and the previous period's) overflow Python's dates.
        raise ReportPeriodError(f"dates must lie between {EARLIEST_DAY} and {LATEST_DAY}")
    days = (last - first).days + 1
    if days > MAX_ADHOC_DAYS:
        raise ReportPeriodError(f"period of {days} days is longer than the maximum of {MAX_ADHOC_DAYS}")
    return ReportPeriod("adhoc", first, last + timedelta(days=1), timezone)


def resolve_period(params: dict | None, logical_date: datetime, timezone: str) -> ReportPeriod:
    """Ad-hoc period when the run has `start` and `end` params, else the ISO week just ended."""
    start = (params or {}).get("start")
    end = (params or {}).get("end")
    if not start and not end:
        return weekly_period(logical_date, timezone)
    if not start or not end:
        raise ReportPeriodError("an ad-hoc period needs both start and end (leave both empty for last week)")
    return adhoc_period(start, end, timezone)


def _period_from_manifest(manifest: dict) -> ReportPeriod:
    zone = _zone(manifest["period_timezone"])
    return ReportPeriod(
        manifest["period_kind"],
        manifest["period_start"].astimezone(zone).date(),
        manifest["period_end"].astimezone(zone).date(),
        manifest["period_timezone"],
    )


# --------------------------------------------------------------------------------------------------
# CSV


def neutralise_cell(value: str | None) -> str:
    """Prefix `'` to a cell a spreadsheet would run as a formula; the text stays readable and exact.

    Leading spaces do not make a formula safe (some spreadsheets trim them), as for the outcome CSV.
    """
    if value is None:
        return ""
    if value.lstrip(" ").startswith(FORMULA_TRIGGERS):
        return "'" + value
    return value


def csv_header(subject_id_header: str = SUBJECT_ID_COLUMN) -> list[str]:
    """The header row, with the subject id column named for the deployment."""
    if not subject_id_header or "\n" in subject_id_header or "\r" in subject_id_header:
        raise ValueError("the subject id header (Variable mailtrace_subject_id_header) must be one line")
    return [neutralise_cell(subject_id_header if c == SUBJECT_ID_COLUMN else c) for c in CSV_COLUMNS]


class _DigestingSink:
    """Text sink for `csv.writer`: encodes to UTF-8 into a binary file, hashing and counting on the way."""

    def __init__(self, binary: BinaryIO):
        self._binary = binary
        self.sha256 = hashlib.sha256()
        self.byte_count = 0

    def write(self, text: str) -> int:
        data = text.encode("utf-8")
        self._binary.write(data)
        self.sha256.update(data)
        self.byte_count += len(data)
        return len(text)


@dataclass(frozen=True)
class CsvStats:
    row_count: int
    byte_count: int
    checksum_sha256: str


def _period_params(period: ReportPeriod) -> dict:
    return {"period_start": period.start, "period_end": period.end, "failed_statuses": list(FAILED_STATUSES)}


def write_report_csv(
    conn: psycopg.Connection,
    period: ReportPeriod,
    binary: BinaryIO,
    *,
    subject_id_header: str = SUBJECT_ID_COLUMN,
) -> CsvStats:
    """Write the period's CSV to `binary`, streaming rows from a server-side cursor.

    Must run inside a transaction (a named cursor lives in one). Dates are local to the period's time zone
    with their UTC offset, to the second, so the bytes depend only on the data.
    """
    zone = _zone(period.timezone)
    sink = _DigestingSink(binary)
    # RFC 4180: CRLF line ends; QUOTE_MINIMAL quotes any field holding a comma, quote, CR or LF.
    writer = csv.writer(sink, lineterminator="\r\n", quoting=csv.QUOTE_MINIMAL)
    writer.writerow(csv_header(subject_id_header))
    row_count = 0
    with conn.cursor(name="mailtrace_failed_report") as cursor:
        cursor.itersize = FETCH_ROWS
        cursor.execute(read_sql("report_failed_notifications.sql"), _period_params(period))
        for sent_at, *text_values in cursor:
            date_sent = sent_at.astimezone(zone).isoformat(timespec="seconds")
            writer.writerow([date_sent, *(neutralise_cell(value) for value in text_values)])
            row_count += 1
    return CsvStats(row_count, sink.byte_count, sink.sha256.hexdigest())


# --------------------------------------------------------------------------------------------------
# Summary


def _change_rows(counts: dict[Any, list[int]], names: tuple[str, ...]) -> list[dict]:
    rows = []
    for key, (current, previous) in counts.items():
        values = key if isinstance(key, tuple) else (key,)
        row = dict(zip(names, values, strict=True))
        row.update(current=current, previous=previous, change=current - previous)
        rows.append(row)
    # Biggest problems first; names break ties so the email reads the same on every run.
    rows.sort(key=lambda r: (-r["current"], -r["previous"], *(str(r[n]) for n in names)))
    return rows


def summarise_failures(conn: psycopg.Connection, period: ReportPeriod) -> dict:
    """Failures of the period and of the one before, by notification type and by status and reason.

    The previous period is counted as the warehouse knows it now, so late receipts are included.
    """
    previous = period.previous()
    params = {
        "previous_start": previous.start,
        "period_start": period.start,
        "period_end": period.end,
        "failed_statuses": list(FAILED_STATUSES),
    }
    totals = {"current": 0, "previous": 0}
    by_type: dict[str, list[int]] = {}
    by_reason: dict[tuple[str, str], list[int]] = {}
    for which, notification_type, status, reason, failures in conn.execute(
        read_sql("report_failed_summary.sql"), params
    ):
        slot = 0 if which == "current" else 1
        totals[which] += failures
        by_type.setdefault(notification_type, [0, 0])[slot] += failures
        by_reason.setdefault((status, reason or ""), [0, 0])[slot] += failures
    return {
        "total": totals["current"],
        "previous_total": totals["previous"],
        "change": totals["current"] - totals["previous"],
        "previous_label": previous.label,
        "by_type": _change_rows(by_type, ("notification_type",)),
        "by_reason": _change_rows(by_reason, ("delivery_status", "failure_reason")),
    }


@dataclass(frozen=True)
class NewlyFlagged:
    """Flags set in a report's window: those still in effect (listed, up to a limit) and those cleared."""

    listed: list[dict]
    total: int  # still flagged now
    cleared: int  # set in the window, cleared since (contact changed, a later email delivered)


def newly_flagged(
    conn: psycopg.Connection, flags_since: datetime, flags_until: datetime, timezone: str
) -> NewlyFlagged:
    """Flags set (recorded) in [flags_since, flags_until) and still in effect, oldest first.

    Lists at most FLAGGED_LISTED_MAX; `flagged_at` is when the flag was set, `failed_sent_at` when the
    failed email that caused it was sent (it may be in an earlier week).
    """
    rows = conn.execute(
        read_sql("report_newly_flagged.sql"),
        {"flags_since": flags_since, "flags_until": flags_until, "max_rows": FLAGGED_LISTED_MAX},
    ).fetchall()
    zone = _zone(timezone)

    def local_minute(instant: datetime) -> str:
        return instant.astimezone(zone).strftime("%Y-%m-%d %H:%M")

    listed = []
    for row in rows:
        subject_type, subject_id, email, failure_reason, happened_at, recorded_at = row[2:]
        if subject_type is None:
            continue  # nothing to list: the row carries the counts alone
        listed.append(
            {
                "subject_type": subject_type,
                "subject_id": subject_id,
                "email": email,
                "failure_reason": failure_reason or "",
                "flagged_at": local_minute(recorded_at),
                "failed_sent_at": local_minute(happened_at),
            }
        )
    total, cleared = rows[0][:2]
    return NewlyFlagged(listed, total, cleared)


def flags_window(
    conn: psycopg.Connection, period: ReportPeriod, cutoff: datetime
) -> tuple[datetime, datetime]:
    """The [since, until) of flag_history.recorded_at a new report's email lists as newly flagged.

    Weekly: from where the previous weekly report's window ended (the first weekly report: from the
    period's start) to `cutoff` (see sql/report_flags_cutoff.sql), never into a later weekly report's
    window. Ad hoc: the flags set within the period, up to `cutoff`. Call under MANIFEST_LOCK.
    """
    if period.kind != "weekly":
        since = period.start
        return since, max(since, min(cutoff, period.end))
    previous_until, next_since = conn.execute(
        read_sql("report_flags_window.sql"), {"period_start": period.start}
    ).fetchone()
    since = previous_until or period.start
    until = min(cutoff, next_since) if next_since is not None else cutoff
    return since, max(since, until)


def _manifest_flags_window(manifest: dict) -> tuple[datetime, datetime]:
    """A manifest row's window; a row build_report did not write (no window) is [period_start, built_at)."""
    since = manifest["flags_since"] or manifest["period_start"]
    until = manifest["flags_until"] or max(since, manifest["built_at"])
    return since, until


# --------------------------------------------------------------------------------------------------
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


# --------------------------------------------------------------------------------------------------
# Email


def examiner_recipients() -> list[str]:
    """Addresses from Variable `mailtrace_examiner_emails`; refuses an empty list or a malformed address."""
    recipients = get_email_list("examiner_emails")
    if not recipients:
        raise ValueError(
            "Variable mailtrace_examiner_emails lists no addresses; nobody to send the report to"
        )
    bad = [address for address in recipients if not _ADDRESS.fullmatch(address)]
    if bad:
        raise ValueError(
            "Variable mailtrace_examiner_emails has malformed addresses: " + ", ".join(map(mask_email, bad))
        )
    return recipients


def _positive_int_setting(name: str, default: int, maximum: int | None = None) -> int:
    value = get_setting(name, default)
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise ValueError(
            f"Variable mailtrace_{name} must be a whole number, got {str(value)[:40]!r}"
        ) from None
    if number < 1 or (maximum is not None and number > maximum):
        limit = f" and at most {maximum}" if maximum is not None else ""
        raise ValueError(f"Variable mailtrace_{name} must be at least 1{limit}, got {number}")
    return number


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


def render_email(context: dict) -> tuple[str, str, str]:
    """Subject, plain text and HTML of the report email; HTML autoescaped (the data is untrusted).

    The newly-flagged window, the cleared count, each row's failed-email date and the late line are
    optional.
    """
    context = {"flags_since": "", "flags_until": "", "flagged_cleared": 0, "late_note": "", **context}
    context["flagged"] = [{"failed_sent_at": "", **row} for row in context.get("flagged", [])]
    env = _jinja()
    text = env.get_template("weekly_report.txt.j2").render(context)
    html = env.get_template("weekly_report.html.j2").render(context)
    outcome = f"{context['total']} failed" if context["total"] else "no failures"
    return f"Failed notifications {context['period_label']}: {outcome}", text, html


# sent_* describe the content the examiners last received (the report, or a correction of it): the
# manifest as it was read before sending, so a rebuild racing the email is still mailed as a correction.
_MARK_SENT = """
UPDATE mailtrace.report_manifest
SET recipients = %(recipients)s, delivery = %(delivery)s, message_id = %(message_id)s, sent_at = now(),
    sent_run_id = %(run_id)s, sent_checksum = %(checksum)s, sent_row_count = %(row_count)s,
    sent_summary = %(summary)s, sent_kind = %(kind)s, email_owed = false
WHERE bucket = %(bucket)s AND s3_key = %(s3_key)s
"""

# The report stays owed; the error (masked) is kept for the late line and for whoever looks.
_MARK_NOT_SENT = """
UPDATE mailtrace.report_manifest SET email_error = %(error)s, email_failed_at = now()
WHERE bucket = %(bucket)s AND s3_key = %(s3_key)s
"""


def _load_manifest(conn: psycopg.Connection, bucket: str, s3_key: str) -> dict | None:
    with conn.cursor(row_factory=dict_row) as cursor:
        manifest = cursor.execute(
            "SELECT * FROM mailtrace.report_manifest WHERE bucket = %s AND s3_key = %s", (bucket, s3_key)
        ).fetchone()
    conn.commit()
    return manifest


def _send_and_record(
    conn: psycopg.Connection,
    manifest: dict,
    *,
    kind: str,
    recipients: list[str],
    rendered: tuple[str, str, str],
    context: dict,
    run_id: str | None,
) -> None:
    """Email the examiners, then record in the manifest what they were sent (a retry then sends nothing).

    When the server refuses some examiners, the others have the email: record them, then fail loudly.
    """
    subject, text, html = rendered
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
            _MARK_SENT,
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
            _MARK_NOT_SENT,
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
            "flagged_total": flagged.total,
            "flagged_omitted": flagged.total - len(flagged.listed),
            "flagged_cleared": flagged.cleared,
            "flags_since": flags_since.astimezone(zone).strftime("%Y-%m-%d %H:%M"),
            "flags_until": flags_until.astimezone(zone).strftime("%Y-%m-%d %H:%M"),
            "subject_id_header": get_setting("subject_id_header", SUBJECT_ID_COLUMN),
            "late_note": late_note(manifest, period, now or datetime.now(UTC)),
        }
        _send_and_record(
            conn,
            manifest,
            kind="report",
            recipients=recipients,
            rendered=render_email(context),
            context=context,
            run_id=run_id,
        )
        delivery = context["delivery"]
    log.info("report %s emailed to %d examiners (%s)", period.label, len(recipients), delivery or "no file")
    return {"sent": True, "s3_key": s3_key, "delivery": delivery, "recipients": len(recipients)}


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
                """SELECT s3_key FROM mailtrace.report_manifest
                   WHERE bucket = %s AND email_owed AND sent_at IS NULL AND period_end <= %s
                   ORDER BY period_start, s3_key""",
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
    period = resolve_period(params, logical_date, get_setting("timezone", DEFAULT_TIMEZONE))
    return email_owed_reports(bucket=get_setting("report_bucket"), before=period.start, run_id=run_id)


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


# --------------------------------------------------------------------------------------------------
# Corrections: late verdicts for the week before


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
            "SELECT 1 FROM mailtrace.report_manifest WHERE bucket = %s AND s3_key = %s",
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
    timezone = get_setting("timezone", DEFAULT_TIMEZONE)
    return rebuild_previous_week(
        resolve_period(params, logical_date, timezone),
        bucket=get_setting("report_bucket"),
        run_id=run_id,
        subject_id_header=get_setting("subject_id_header", SUBJECT_ID_COLUMN),
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
    """Subject, plain text and HTML of a correction email; HTML autoescaped."""
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
        }
        _send_and_record(
            conn,
            manifest,
            kind="correction",
            recipients=recipients,
            rendered=render_correction(context),
            context=context,
            run_id=run_id,
        )
    log.info("correction of %s emailed to %d examiners", period.label, len(recipients))
    return {"sent": True, "s3_key": s3_key, "delivery": context["delivery"], "recipients": len(recipients)}


def _attachment_name(s3_key: str) -> str:
    return s3_key.replace("/", "-")


def _deliverable(manifest: dict) -> tuple[str | None, tuple[Attachment, ...], str, datetime | None]:
    """How the CSV reaches the examiners: (delivery, attachments, link, link expiry).

    An empty report is neither attached nor linked. A small one is attached, after checking the object
    still holds the bytes the manifest describes; a large one is linked with a presigned GET that expires.
    """
    if manifest["row_count"] == 0:
        return None, (), "", None
    hook = _s3_hook()
    bucket, key = manifest["bucket"], manifest["s3_key"]
    max_bytes = _positive_int_setting("report_attach_max_bytes", DEFAULT_ATTACH_MAX_BYTES)
    if manifest["byte_count"] <= max_bytes:
        content = hook.get_conn().get_object(Bucket=bucket, Key=key)["Body"].read()
        if hashlib.sha256(content).hexdigest() != manifest["checksum_sha256"]:
            raise RuntimeError(f"s3://{bucket}/{key} no longer matches its manifest; rebuild the report")
        return "attachment", (Attachment(_attachment_name(key), content, "text/csv"),), "", None
    hours = _positive_int_setting(
        "report_link_expiry_hours", DEFAULT_LINK_EXPIRY_HOURS, MAX_LINK_EXPIRY_HOURS
    )
    expires_at = datetime.now(UTC) + timedelta(hours=hours)
    link = hook.generate_presigned_url(
        "get_object", params={"Bucket": bucket, "Key": key}, expires_in=hours * 3600
    )
    if not link:
        raise RuntimeError(f"could not presign a link to s3://{bucket}/{key}")
    return "link", (), link, expires_at
