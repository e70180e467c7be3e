"""The weekly failed-notification report: CSV in S3 (moto), summary email (aiosmtpd), manifest in Postgres."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import re
import tracemalloc
import urllib.request
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import psycopg
import pytest
from airflow.sdk.exceptions import AirflowFailException
from eventlog import insert_logged

import tests.test_mailer as mailer_tests
from mailtrace import report
from mailtrace.events import DELIVERY_STATUSES, FAILURE_REASONS
from mailtrace.mailer import RecipientsRefused
from mailtrace.report import (
    ReportPeriodError,
    adhoc_period,
    build_for_run,
    build_report,
    email_correction,
    email_report,
    neutralise_cell,
    rebuild_previous_for_run,
    resolve_period,
    weekly_period,
    write_report_csv,
)
from mailtrace.report.constants import FLAGGED_LISTED_PER_GROUP
from mailtrace.settings import SettingError

DAGS_DIR = Path(__file__).resolve().parents[1] / "dags"
VANCOUVER = ZoneInfo("America/Vancouver")
# The scheduled run of Monday 2026-01-12 06:00 local reports ISO week 2026-W02 (Mon 5 to Sun 11 January).
LOGICAL_DATE = datetime(2026, 1, 12, 6, 0, tzinfo=VANCOUVER)
WEEK = weekly_period(LOGICAL_DATE, "America/Vancouver")
HEADER = (
    "date_sent,notification_type,delivery_status,failure_reason,registration_number,subject_type,"
    "recipient_email,event_id,provider_reference,delivery_detail"
)


def local(*args) -> datetime:
    return datetime(*args, tzinfo=VANCOUVER)


def insert_event(conn, event_id, sent_at, status="permanent_failure", reason="invalid_address", **fields):
    row = {
        "event_id": event_id,
        "subject_type": "registration",
        "subject_id": f"R-{event_id}",
        "notification_type": "NOC",
        "recipient_email": f"{event_id}@example.com",
        "provider": "gc_notify",
        "provider_reference": f"ref-{event_id}",
        "sent_at": sent_at,
        "local_status": "SENT",
        "delivery_status": status,
        "failure_reason": reason,
        "delivery_detail": "bounced",
        **fields,
    }
    insert_logged(conn, row)
    conn.commit()


def insert_flag(
    conn,
    email,
    action,
    happened_at,
    subject_id="R-1",
    reason="invalid_address",
    *,
    recorded_at=None,
    still_flagged=True,
    commit=True,
):
    """A flag_history row (recorded_at: the given instant, else the database's now()).

    A 'set' that is `still_flagged` also gets the subject's contact and current flag, as a flags run leaves
    them; otherwise the contact has since moved to another address, so the flag no longer holds.
    """
    conn.execute(
        """INSERT INTO mailtrace.flag_history
               (subject_type, subject_id, email, action, failure_reason, cause, happened_at, recorded_at)
           VALUES ('registration', %s, %s, %s, %s, 'test', %s, coalesce(%s, now()))""",
        (subject_id, email, action, reason, happened_at, recorded_at),
    )
    current = email if action == "set" and still_flagged else f"new-{subject_id}@example.com"
    conn.execute(
        """INSERT INTO mailtrace.contact (subject_type, subject_id, email) VALUES ('registration', %s, %s)
           ON CONFLICT (subject_type, subject_id) DO UPDATE SET email = EXCLUDED.email""",
        (subject_id, current),
    )
    if action == "set" and still_flagged:
        conn.execute(
            """INSERT INTO mailtrace.address_flag
                   (subject_type, subject_id, email, failure_reason, cause, flagged_at, last_failed_event_id)
               VALUES ('registration', %s, %s, %s, 'bounce', %s, 'test')
               ON CONFLICT (subject_type, subject_id) DO UPDATE SET email = EXCLUDED.email""",
            (subject_id, email, reason, happened_at),
        )
    if commit:
        conn.commit()


def s3_bytes(aws, bucket, key) -> bytes:
    return aws.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read()


def csv_rows(data: bytes) -> list[list[str]]:
    return list(csv.reader(io.StringIO(data.decode("utf-8"), newline="")))


def manifest_rows(conn):
    return conn.execute(
        "SELECT s3_key, row_count, checksum_sha256, sent_at, delivery, recipients, sent_run_id "
        "FROM mailtrace.report_manifest ORDER BY id"
    ).fetchall()


@pytest.fixture
def examiners(monkeypatch):
    addresses = ["examiner.one@example.gov", "examiner.two@example.gov"]
    monkeypatch.setenv("AIRFLOW_VAR_MAILTRACE_EXAMINER_EMAILS", json.dumps(addresses))
    return addresses


# ---------------------------------------------------------------------------------------------- periods


def test_weekly_period_is_the_iso_week_just_ended_in_local_time():
    assert (WEEK.first_day, WEEK.last_day) == (date(2026, 1, 5), date(2026, 1, 11))
    assert WEEK.start == datetime(2026, 1, 5, 8, 0, tzinfo=UTC)  # local midnight, PST = UTC-8
    assert WEEK.end == datetime(2026, 1, 12, 8, 0, tzinfo=UTC)
    assert WEEK.s3_key == "failed-notifications/2026-W02.csv"
    # A manual run mid-week reports the last complete week, not the running one.
    assert weekly_period(local(2026, 1, 14, 15, 0), "America/Vancouver") == WEEK
    # Late Sunday in Vancouver is already Monday in UTC, and still in the week that Sunday ends.
    assert weekly_period(datetime(2026, 1, 12, 7, 59, tzinfo=UTC), "America/Vancouver").label == "2026-W01"


def test_weekly_period_across_dst_and_iso_year_end():
    dst_week = weekly_period(local(2026, 3, 9, 6, 0), "America/Vancouver")  # clocks moved forward 8 March
    assert dst_week.start == datetime(2026, 3, 2, 8, 0, tzinfo=UTC)
    assert dst_week.end == datetime(2026, 3, 9, 7, 0, tzinfo=UTC)
    # 2026 has 53 ISO weeks: the week of 28 December 2026 to 3 January 2027 is 2026-W53.
    assert weekly_period(local(2027, 1, 4, 6, 0), "America/Vancouver").s3_key == (
        "failed-notifications/2026-W53.csv"
    )
    assert WEEK.previous().label == "2026-W01"


def test_adhoc_period_includes_both_days_and_has_its_own_key():
    period = resolve_period({"start": "2026-01-01", "end": "2026-01-31"}, LOGICAL_DATE, "America/Vancouver")
    assert period.start == datetime(2026, 1, 1, 8, 0, tzinfo=UTC)
    assert period.end == datetime(2026, 2, 1, 8, 0, tzinfo=UTC)
    assert period.s3_key == "failed-notifications/adhoc/2026-01-01_2026-01-31.csv"
    assert adhoc_period("2025-01-01", "2026-01-01").last_day == date(2026, 1, 1)  # 366 days is allowed


@pytest.mark.parametrize(
    ("start", "end", "message"),
    [
        ("2026-02-01", "2026-01-31", "end 2026-01-31 is before start 2026-02-01"),
        ("2025-01-01", "2026-01-02", "367 days is longer than the maximum of 366"),
        ("2026-13-01", "2026-01-31", "start must be a date like 2026-01-31, got '2026-13-01'"),
        ("2026-01-01", "last tuesday", "end must be a date like"),
        ("=cmd|' /C calc'!A0" * 20, "2026-01-31", "start must be a date like"),
        ("2026-01-01", None, "needs both start and end"),
        (None, "2026-01-31", "needs both start and end"),
    ],
)
def test_bad_adhoc_range_is_refused_with_a_clear_error(start, end, message):
    with pytest.raises(ReportPeriodError, match=re.escape(message)):
        resolve_period({"start": start, "end": end}, LOGICAL_DATE, "America/Vancouver")


def test_adhoc_date_with_a_time_is_refused():
    with pytest.raises(ReportPeriodError, match="date without a time"):
        adhoc_period(datetime(2026, 1, 1, 12, 0), date(2026, 1, 2))


# ---------------------------------------------------------------------------------------------- the CSV


def test_report_has_contract_columns_failed_rows_only_oldest_first(warehouse_conn, s3_bucket, aws):
    conn = warehouse_conn
    insert_event(conn, "e3", local(2026, 1, 7, 9, 0), "complaint", None, notification_type="APPROVAL")
    insert_event(
        conn, "e2", local(2026, 1, 6, 10, 15), "send_failed", "provider_error", provider_reference=None
    )
    insert_event(conn, "e1", local(2026, 1, 6, 10, 15), "temporary_failure", "mailbox_full")
    for status in ("delivered", "pending", None):
        insert_event(conn, f"ok-{status}", local(2026, 1, 8, 12, 0), status, None)
    for status in report.FAILED_STATUSES[3:]:
        insert_event(conn, f"x-{status}", local(2026, 1, 9, 12, 0), status, None)
    insert_event(conn, "before", local(2026, 1, 4, 12, 0))

    built = build_report(WEEK, bucket=s3_bucket)

    data = s3_bytes(aws, s3_bucket, "failed-notifications/2026-W02.csv")
    lines = data.decode("utf-8").split("\r\n")
    assert lines[0] == HEADER
    assert lines[1] == (
        "2026-01-06T10:15:00-08:00,NOC,temporary_failure,mailbox_full,R-e1,registration,"
        "e1@example.com,e1,ref-e1,bounced"
    )
    assert lines[2] == (
        "2026-01-06T10:15:00-08:00,NOC,send_failed,provider_error,R-e2,registration,e2@example.com,e2,,bounced"
    )
    assert [row[7] for row in csv_rows(data)[1:]] == [
        "e1",
        "e2",
        "e3",
        "x-complaint",
        "x-not_at_provider",
        "x-send_failed",
    ]
    assert data.endswith(b"\r\n")
    assert built["row_count"] == 6
    assert built["checksum_sha256"] == hashlib.sha256(data).hexdigest()
    head = aws.client("s3").head_object(Bucket=s3_bucket, Key=built["s3_key"])
    assert head["ServerSideEncryption"] == "AES256"
    ((key, row_count, checksum, sent_at, *_),) = manifest_rows(conn)
    assert (key, row_count, checksum, sent_at) == (built["s3_key"], 6, built["checksum_sha256"], None)


def test_week_boundaries_follow_local_midnight(warehouse_conn, s3_bucket, aws):
    insert_event(warehouse_conn, "first-instant", local(2026, 1, 5, 0, 0))
    insert_event(warehouse_conn, "sunday-2330", local(2026, 1, 11, 23, 30))  # Monday 07:30 UTC
    insert_event(warehouse_conn, "monday-0030", local(2026, 1, 12, 0, 30))  # belongs to next week
    insert_event(warehouse_conn, "sunday-before", local(2026, 1, 4, 23, 59, 59))

    build_report(WEEK, bucket=s3_bucket)
    build_report(weekly_period(local(2026, 1, 19, 6, 0), "America/Vancouver"), bucket=s3_bucket)

    this_week = csv_rows(s3_bytes(aws, s3_bucket, "failed-notifications/2026-W02.csv"))
    next_week = csv_rows(s3_bytes(aws, s3_bucket, "failed-notifications/2026-W03.csv"))
    assert [row[7] for row in this_week[1:]] == ["first-instant", "sunday-2330"]
    assert this_week[2][0] == "2026-01-11T23:30:00-08:00"
    assert [row[7] for row in next_week[1:]] == ["monday-0030"]


def test_details_with_commas_quotes_and_newlines_round_trip(warehouse_conn, s3_bucket, aws):
    detail = 'Mailbox "full", try later\nsecond line\r\nthird, "quoted"'
    insert_event(warehouse_conn, "q1", local(2026, 1, 6, 9, 0), delivery_detail=detail, subject_id="R,42")

    build_report(WEEK, bucket=s3_bucket)

    data = s3_bytes(aws, s3_bucket, WEEK.s3_key)
    assert b'"Mailbox ""full"", try later\nsecond line\r\nthird, ""quoted"""\r\n' in data
    assert b',"R,42",' in data
    (row,) = csv_rows(data)[1:]
    assert row[9] == detail
    assert row[4] == "R,42"


@pytest.mark.parametrize(
    ("value", "cell"),
    [
        ('=HYPERLINK("http://x")', '\'=HYPERLINK("http://x")'),
        ("+1", "'+1"),
        ("-2+3", "'-2+3"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("\tx", "'\tx"),
        ("\rx", "'\rx"),
        ("\nx", "'\nx"),
        ("  =1", "'  =1"),
        ("plain", "plain"),
        ("a=b", "a=b"),
        (None, ""),
    ],
)
def test_neutralise_cell(value, cell):
    assert neutralise_cell(value) == cell


def test_report_cells_are_never_cut_short():
    """The outcome CSV cuts long cells for display; the report keeps every character of the warehouse."""
    long_detail = "-" + "x" * 5000
    assert neutralise_cell(long_detail) == "'" + long_detail


def test_formulas_in_data_are_neutralised_in_the_file(warehouse_conn, s3_bucket, aws):
    insert_event(
        warehouse_conn,
        "f1",
        local(2026, 1, 6, 9, 0),
        subject_id="=cmd|' /C calc'!A0",
        notification_type="+NOC",
        recipient_email="@evil.example",
        delivery_detail="-1+1",
    )
    build_report(WEEK, bucket=s3_bucket)
    (row,) = csv_rows(s3_bytes(aws, s3_bucket, WEEK.s3_key))[1:]
    assert row[4] == "'=cmd|' /C calc'!A0"
    assert row[1] == "'+NOC"
    assert row[6] == "'@evil.example"
    assert row[9] == "'-1+1"


def test_subject_id_header_timezone_and_bucket_come_from_variables(
    warehouse_conn, s3_bucket, aws, monkeypatch
):
    monkeypatch.setenv("AIRFLOW_VAR_MAILTRACE_SUBJECT_ID_HEADER", "tax_return_id")
    monkeypatch.setenv("AIRFLOW_VAR_MAILTRACE_REPORT_BUCKET", s3_bucket)
    monkeypatch.setenv("AIRFLOW_VAR_MAILTRACE_TIMEZONE", "America/Toronto")
    # 00:30 Monday in Toronto is 21:30 Sunday in Vancouver: next week in Toronto.
    insert_event(warehouse_conn, "toronto", datetime(2026, 1, 12, 5, 30, tzinfo=UTC))
    insert_event(warehouse_conn, "in-week", datetime(2026, 1, 9, 5, 30, tzinfo=UTC))

    built = build_for_run(params={}, logical_date=LOGICAL_DATE, run_id="scheduled__x")

    rows = csv_rows(s3_bytes(aws, s3_bucket, built["s3_key"]))
    assert rows[0][4] == "tax_return_id"
    assert [row[7] for row in rows[1:]] == ["in-week"]
    assert rows[1][0] == "2026-01-09T00:30:00-05:00"


def test_rerun_writes_identical_bytes_and_one_manifest_row(warehouse_conn, s3_bucket, aws):
    for n in range(5):
        insert_event(warehouse_conn, f"r{n}", local(2026, 1, 6, 9, 0), delivery_detail=f"detail {n}")

    first = build_report(WEEK, bucket=s3_bucket, run_id="run-1")
    first_bytes = s3_bytes(aws, s3_bucket, WEEK.s3_key)
    second = build_report(WEEK, bucket=s3_bucket, run_id="run-2")

    assert s3_bytes(aws, s3_bucket, WEEK.s3_key) == first_bytes
    assert second["checksum_sha256"] == first["checksum_sha256"]
    (only,) = manifest_rows(warehouse_conn)
    assert only[:3] == (WEEK.s3_key, 5, first["checksum_sha256"])
    assert only[6] is None  # not sent yet
    assert warehouse_conn.execute("SELECT built_run_id FROM mailtrace.report_manifest").fetchone() == (
        "run-2",
    )


def test_memory_does_not_grow_with_the_number_of_rows(warehouse_conn):
    """Peak Python memory while writing 40,000 rows stays near that of 4,000 (a fetch or two's worth)."""

    def peak_for(rows: int) -> int:
        warehouse_conn.execute("TRUNCATE mailtrace.notification_event CASCADE")
        warehouse_conn.execute("TRUNCATE mailtrace.delivery")
        warehouse_conn.execute(
            """INSERT INTO mailtrace.notification_event
                   (event_id, subject_type, subject_id, notification_type, recipient_email, provider,
                    sent_at, local_status)
               SELECT 'm' || n, 'registration', 'R-' || n, 'NOC', 'p' || n || '@example.com', 'ses',
                      %s::timestamptz + n * interval '1 second', 'SENT'
               FROM generate_series(1, %s) AS n""",
            (WEEK.start, rows),
        )
        warehouse_conn.execute(
            """INSERT INTO mailtrace.delivery
                   (event_id, delivery_status, failure_reason, delivery_detail, recipient_address, sent_at)
               SELECT event_id, 'permanent_failure', 'invalid_address', repeat('x', 200),
                      recipient_email, sent_at
               FROM mailtrace.notification_event"""
        )
        warehouse_conn.commit()
        with open(os.devnull, "wb") as sink:
            tracemalloc.start()
            try:
                with warehouse_conn.transaction():
                    stats = write_report_csv(warehouse_conn, WEEK, sink)
                return tracemalloc.get_traced_memory()[1]
            finally:
                tracemalloc.stop()
                assert stats.row_count == rows

    # Both sizes span several fetches, so both include the moment two fetches' rows are alive at once.
    small = peak_for(2 * report.FETCH_ROWS)
    large = peak_for(20 * report.FETCH_ROWS)
    assert large < 1.5 * small, (small, large)


# ---------------------------------------------------------------------------------------------- the email


def test_small_report_is_attached_and_summarised(warehouse_conn, s3_bucket, aws, smtp_server, examiners):
    insert_event(warehouse_conn, "prev", local(2026, 1, 1, 9, 0), notification_type="RENEWAL_REMINDER")
    insert_event(warehouse_conn, "a1", local(2026, 1, 6, 9, 0))
    insert_event(warehouse_conn, "a2", local(2026, 1, 7, 9, 0), "complaint", None)
    insert_event(warehouse_conn, "a3", local(2026, 1, 8, 9, 0), notification_type="<script>alert(1)</script>")

    built = build_report(WEEK, bucket=s3_bucket)
    result = email_report(bucket=s3_bucket, s3_key=built["s3_key"], run_id="scheduled__1")

    assert result["delivery"] == "attachment"
    (message,) = smtp_server.messages
    assert smtp_server.envelopes[0][1] == examiners
    assert message["Subject"] == "Failed notifications 2026-W02: 3 failed"
    (attachment,) = list(message.iter_attachments())
    assert attachment.get_filename() == "failed-notifications-2026-W02.csv"
    assert attachment.get_payload(decode=True) == s3_bytes(aws, s3_bucket, built["s3_key"])
    text = message.get_body(("plain",)).get_content()
    assert "3 emails did not reach the person; previous period (2026-W01): 1 (change +2)" in text
    assert "NOC: 2 / 0 / +2" in text
    assert "RENEWAL_REMINDER: 0 / 1 / -1" in text
    assert "Ask the person for a new email address: 2 / 1 / +1" in text
    assert "  - Could not be delivered: the address does not exist: 2 / 1 / +1" in text
    assert "Contact the person another way if it matters: 1 / 0 / +1" in text
    assert "  - Delivered, then marked as spam by the person: 1 / 0 / +1" in text
    html = message.get_body(("html",)).get_content()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<script>" not in html
    ((_, _, _, sent_at, delivery, recipients, run_id),) = manifest_rows(warehouse_conn)
    assert sent_at is not None
    assert (delivery, recipients, run_id) == ("attachment", examiners, "scheduled__1")


def test_examiner_refused_by_the_mail_server_fails_the_run_and_the_others_are_not_mailed_twice(
    warehouse_conn, s3_bucket, aws, smtp_server, examiners
):
    insert_event(warehouse_conn, "a1", local(2026, 1, 6, 9, 0))
    built = build_report(WEEK, bucket=s3_bucket)
    smtp_server.refused = {examiners[0]}

    with pytest.raises(RecipientsRefused, match="refused 1 of the recipients") as refused:
        email_report(bucket=s3_bucket, s3_key=built["s3_key"], run_id="scheduled__1")
    # Not retried: a retry would find the report recorded as sent and succeed, hiding the refusal.
    assert isinstance(refused.value, AirflowFailException)
    assert smtp_server.envelopes[0][1] == examiners[1:]
    ((*_, recipients, _),) = manifest_rows(warehouse_conn)
    assert recipients == examiners[1:]  # the manifest says who really has it

    rerun = email_report(bucket=s3_bucket, s3_key=built["s3_key"], run_id="scheduled__1")
    assert rerun["sent"] is False
    assert len(smtp_server.messages) == 1


def test_large_report_is_linked_with_an_expiring_presigned_url(
    warehouse_conn, s3_bucket, aws, smtp_server, examiners, monkeypatch
):
    monkeypatch.setenv("AIRFLOW_VAR_MAILTRACE_REPORT_ATTACH_MAX_BYTES", "100")
    monkeypatch.setenv("AIRFLOW_VAR_MAILTRACE_REPORT_LINK_EXPIRY_HOURS", "24")
    insert_event(warehouse_conn, "big", local(2026, 1, 6, 9, 0), delivery_detail="y" * 500)

    built = build_report(WEEK, bucket=s3_bucket)
    email_report(bucket=s3_bucket, s3_key=built["s3_key"], run_id="scheduled__1")

    (message,) = smtp_server.messages
    assert list(message.iter_attachments()) == []
    text = message.get_body(("plain",)).get_content()
    (link,) = re.findall(r"http://\S+", text)
    assert "X-Amz-Expires=86400" in link
    with urllib.request.urlopen(link) as response:  # noqa: S310 - loopback moto URL
        assert response.read() == s3_bytes(aws, s3_bucket, built["s3_key"])
    assert "link expires" in message.get_body(("html",)).get_content()
    assert manifest_rows(warehouse_conn)[0][4] == "link"


def test_link_expiry_beyond_seven_days_is_refused(
    warehouse_conn, s3_bucket, aws, smtp_server, examiners, monkeypatch
):
    monkeypatch.setenv("AIRFLOW_VAR_MAILTRACE_REPORT_ATTACH_MAX_BYTES", "1")
    monkeypatch.setenv("AIRFLOW_VAR_MAILTRACE_REPORT_LINK_EXPIRY_HOURS", "169")
    insert_event(warehouse_conn, "big", local(2026, 1, 6, 9, 0))
    built = build_report(WEEK, bucket=s3_bucket)
    with pytest.raises(ValueError, match="at most 168"):
        email_report(bucket=s3_bucket, s3_key=built["s3_key"], run_id="r")
    assert smtp_server.messages == []


def test_empty_week_still_sends_a_short_no_failures_email(
    warehouse_conn, s3_bucket, aws, smtp_server, examiners
):
    insert_event(warehouse_conn, "delivered", local(2026, 1, 6, 9, 0), "delivered", None)

    built = build_report(WEEK, bucket=s3_bucket)
    email_report(bucket=s3_bucket, s3_key=built["s3_key"], run_id="r")

    assert s3_bytes(aws, s3_bucket, WEEK.s3_key) == (HEADER + "\r\n").encode()
    (message,) = smtp_server.messages
    assert message["Subject"] == "Failed notifications 2026-W02: no failures"
    assert list(message.iter_attachments()) == []
    assert "No failures" in message.get_body(("plain",)).get_content()
    assert manifest_rows(warehouse_conn)[0][1] == 0


def test_newly_flagged_addresses_are_listed(warehouse_conn, s3_bucket, aws, smtp_server, examiners):
    """The first weekly report lists flags set from its week's start on that still hold, counts the rest."""
    insert_event(warehouse_conn, "n1", local(2026, 1, 6, 9, 0))
    insert_flag(
        warehouse_conn,
        "flagged.person@example.com",
        "set",
        local(2026, 1, 4, 22, 0),  # the failed email went out the week before ...
        "R-77",
        recorded_at=local(2026, 1, 6, 10, 0),  # ... its flag was set in this one
    )
    insert_flag(
        warehouse_conn,
        "earlier@example.com",
        "set",
        local(2026, 1, 2, 10, 0),
        "R-78",
        recorded_at=local(2026, 1, 2, 11, 0),
    )
    insert_flag(
        warehouse_conn,
        "gone@example.com",
        "set",
        local(2026, 1, 6, 8, 0),
        "R-80",
        recorded_at=local(2026, 1, 6, 9, 0),
        still_flagged=False,  # the person has since given a new address
    )
    insert_flag(
        warehouse_conn,
        "cleared@example.com",
        "cleared",
        local(2026, 1, 7, 10, 0),
        "R-79",
        recorded_at=local(2026, 1, 7, 10, 0),
    )

    built = build_report(WEEK, bucket=s3_bucket)
    email_report(bucket=s3_bucket, s3_key=built["s3_key"], run_id="r")

    text = smtp_server.messages[0].get_body(("plain",)).get_content()
    assert "ADDRESSES NEWLY FLAGGED (1)" in text
    assert "(flagged 2026-01-05 00:00 to " in text
    assert "Ask the person for a new email address: 1" in text
    assert (
        "  - Registration R-77, flagged.person@example.com: The address does not exist"
        " (failed email sent 2026-01-04 22:00, flagged 2026-01-06 10:00)"
    ) in text
    assert "1 more flagged in that time have cleared since" in text
    assert "earlier@example.com" not in text
    assert "gone@example.com" not in text
    assert "cleared@example.com" not in text
    html = smtp_server.messages[0].get_body(("html",)).get_content()
    assert "<td>flagged.person@example.com</td>" in html
    assert "<th>Registration</th>" in html


PAGE = "https://airflow.example.gov/plugin/delivery"
# The contract's codes that are not also plain English words: none may reach an email's body.
CODES = sorted({c for c in (*DELIVERY_STATUSES, *FAILURE_REASONS) if "_" in c} | {"registration_number"})


def test_email_speaks_plain_words_grouped_by_what_to_do_with_links_and_codes_only_in_the_csv(
    warehouse_conn, s3_bucket, aws, smtp_server, examiners, monkeypatch
):
    monkeypatch.setenv("AIRFLOW_VAR_MAILTRACE_DELIVERY_PAGE_URL", PAGE)
    conn = warehouse_conn
    outcomes = [
        ("permanent_failure", "invalid_address"),
        ("permanent_failure", "invalid_address"),
        ("permanent_failure", "suppressed"),
        ("temporary_failure", "mailbox_full"),
        ("temporary_failure", "unknown"),
        ("not_at_provider", None),
        ("send_failed", "provider_error"),
        ("technical_failure", "provider_error"),
        ("complaint", None),
        ("permanent_failure", "unknown"),
        ("permanent_failure", "content_rejected"),
    ]
    for i, (status, reason) in enumerate(outcomes):
        insert_event(conn, f"w{i}", local(2026, 1, 6, 9, i), status, reason)
    many = FLAGGED_LISTED_PER_GROUP + 3
    for i in range(many):
        insert_flag(
            conn,
            f"gone{i}@example.com",
            "set",
            local(2026, 1, 6, 8, 0),
            f"R-{i:02d}",
            recorded_at=local(2026, 1, 6, 10, i),
        )
    insert_flag(
        conn,
        "full@example.com",
        "set",
        local(2026, 1, 7, 8, 0),
        "<script>x</script>",
        "mailbox_full",
        recorded_at=local(2026, 1, 7, 10, 0),
    )

    built = build_report(WEEK, bucket=s3_bucket)
    email_report(bucket=s3_bucket, s3_key=built["s3_key"], run_id="r")

    (message,) = smtp_server.messages
    text = message.get_body(("plain",)).get_content()
    html = message.get_body(("html",)).get_content()
    headings = [
        "Ask the person for a new email address: 3 / 0 / +3",
        "Send it again: 2 / 0 / +2",
        "Ask the team that writes the email to check its content: 1 / 0 / +1",
        "Tell the technical team: 1 / 0 / +1",
        "Contact the person another way if it matters: 1 / 0 / +1",
        "Nothing to do now: check next week: 2 / 0 / +2",
        "Read the details before acting: 1 / 0 / +1",
    ]
    assert [text.index(h) for h in headings] == sorted(text.index(h) for h in headings)
    assert "  - Could not be delivered: the address does not exist: 2 / 0 / +2" in text
    assert "  - Our system recorded it as sent, but the email service never received it: 1 / 0 / +1" in text
    assert (
        "  - Not delivered, for a reason that may pass: the email service did not say why: 1 / 0 / +1" in text
    )
    assert f"see them on the Delivery page: {PAGE}?nap_since=2026-01-05&nap_until=2026-01-11" in text
    assert (
        f"See these days on the Delivery page: {PAGE}?days=custom&since=2026-01-05&until=2026-01-11" in text
    )

    # Newly flagged: one heading per action, a few rows each, the rest counted.
    assert f"ADDRESSES NEWLY FLAGGED ({many + 1})" in text
    assert f"Ask the person for a new email address: {many}" in text.splitlines()
    assert "Registration R-00, gone0@example.com: The address does not exist" in text
    assert f"gone{FLAGGED_LISTED_PER_GROUP - 1}@example.com" in text
    assert f"gone{FLAGGED_LISTED_PER_GROUP}@example.com" not in text
    assert "  ... and 3 more — see the CSV or the Delivery page." in text
    assert f"On the Delivery page, the address does not exist: {PAGE}?flagged_reason=invalid_address" in text
    assert "Ask the person to check their mailbox: 1" in text
    assert '<h4 style="margin-bottom: 4px;">Ask the person to check their mailbox: 1</h4>' in html
    assert "<th>Registration</th><th>Email</th><th>What happened</th>" in html
    assert "<td>&lt;script&gt;x&lt;/script&gt;</td>" in html and "<script>" not in html
    assert f'<a href="{PAGE}?nap_since=2026-01-05&amp;nap_until=2026-01-11">' in html

    # Only the links carry codes (the page's filter values); the words around them never do.
    words = re.sub(r'href="[^"]*"|https?://\S+', "", text + html)
    for code in CODES:
        assert code not in words, code
    (attachment,) = message.iter_attachments()
    rows = csv_rows(attachment.get_payload(decode=True))
    assert rows[0][2:5] == ["delivery_status", "failure_reason", "registration_number"]
    assert {(r[2], r[3] or None) for r in rows[1:]} == set(outcomes)


def test_without_the_page_address_there_are_no_links_and_a_bad_one_fails_before_sending(
    warehouse_conn, s3_bucket, aws, smtp_server, examiners, monkeypatch
):
    insert_event(warehouse_conn, "n1", local(2026, 1, 6, 9, 0), "not_at_provider", None)
    built = build_report(WEEK, bucket=s3_bucket)
    monkeypatch.setenv("AIRFLOW_VAR_MAILTRACE_DELIVERY_PAGE_URL", "javascript:alert(1)")
    with pytest.raises(SettingError, match="mailtrace_delivery_page_url must be the page's http"):
        email_report(bucket=s3_bucket, s3_key=built["s3_key"], run_id="r")
    assert smtp_server.messages == []

    monkeypatch.delenv("AIRFLOW_VAR_MAILTRACE_DELIVERY_PAGE_URL")
    email_report(bucket=s3_bucket, s3_key=built["s3_key"], run_id="r")
    (message,) = smtp_server.messages
    text = message.get_body(("plain",)).get_content()
    assert "Send it again: 1 / 0 / +1" in text
    assert "Delivery page" not in text
    assert "<a href" not in message.get_body(("html",)).get_content()


def test_bounce_reconciled_monday_after_the_report_is_listed_the_next_week(
    warehouse_conn, s3_bucket, aws, smtp_server, examiners
):
    """A notice sent Sunday 23:30 bounces; the bounce is reconciled (and the flag set) Monday 06:30, after
    the 06:00 report. That week's email is gone and next week's period excludes Sunday: flags are listed
    by when they were set, since the previous weekly report was built, so the next report has it."""
    insert_event(warehouse_conn, "sunday-notice", local(2026, 1, 11, 23, 30), "pending", None)
    build_report(WEEK, bucket=s3_bucket, run_id="scheduled__w02")
    email_report(bucket=s3_bucket, s3_key=WEEK.s3_key, run_id="scheduled__w02")

    # Monday 06:30: reconcile records the bounce and the flags run sets the flag (recorded_at = now()).
    warehouse_conn.execute(
        "UPDATE mailtrace.delivery SET delivery_status = 'permanent_failure', "
        "failure_reason = 'invalid_address' WHERE event_id = 'sunday-notice'"
    )
    insert_flag(
        warehouse_conn, "sunday-notice@example.com", "set", local(2026, 1, 11, 23, 30), "R-sunday-notice"
    )

    next_week = weekly_period(local(2026, 1, 19, 6, 0), "America/Vancouver")
    build_report(next_week, bucket=s3_bucket, run_id="scheduled__w03")
    email_report(bucket=s3_bucket, s3_key=next_week.s3_key, run_id="scheduled__w03")

    first, second = (m.get_body(("plain",)).get_content() for m in smtp_server.messages)
    assert "sunday-notice@example.com" not in first
    assert "ADDRESSES NEWLY FLAGGED (1)" in second
    assert "Registration R-sunday-notice, sunday-notice@example.com: The address does not exist" in second
    assert "(failed email sent 2026-01-11 23:30, flagged " in second
    # The windows tile: the second starts exactly where the first ended.
    (w02_until, w03_since) = warehouse_conn.execute(
        """SELECT (SELECT flags_until FROM mailtrace.report_manifest WHERE s3_key = %s),
                  (SELECT flags_since FROM mailtrace.report_manifest WHERE s3_key = %s)""",
        (WEEK.s3_key, next_week.s3_key),
    ).fetchone()
    assert w02_until == w03_since


def test_flag_committed_after_the_build_by_an_older_transaction_is_not_lost(
    warehouse_conn, warehouse_dsn, s3_bucket, aws, smtp_server, examiners
):
    """recorded_at is its writer's transaction start; a flags run that began before the report was built
    and commits after its email must land in the next report's window, not fall between the two."""
    with psycopg.connect(warehouse_dsn) as flags_run:
        insert_flag(flags_run, "slow@example.com", "set", local(2026, 1, 9, 9, 0), "R-slow", commit=False)
        build_report(WEEK, bucket=s3_bucket, run_id="scheduled__w02")
        email_report(bucket=s3_bucket, s3_key=WEEK.s3_key, run_id="scheduled__w02")
        flags_run.commit()

    next_week = weekly_period(local(2026, 1, 19, 6, 0), "America/Vancouver")
    build_report(next_week, bucket=s3_bucket, run_id="scheduled__w03")
    email_report(bucket=s3_bucket, s3_key=next_week.s3_key, run_id="scheduled__w03")

    first, second = (m.get_body(("plain",)).get_content() for m in smtp_server.messages)
    assert "slow@example.com" not in first
    assert "Registration R-slow, slow@example.com" in second


def test_rebuild_and_resend_list_the_same_newly_flagged(
    warehouse_conn, s3_bucket, aws, smtp_server, examiners
):
    """A report's window is fixed at its first build: rebuilding it later neither widens nor shifts it."""
    insert_flag(warehouse_conn, "first@example.com", "set", local(2026, 1, 6, 9, 0), "R-1")
    build_report(WEEK, bucket=s3_bucket, run_id="scheduled__w02")
    window = warehouse_conn.execute(
        "SELECT flags_since, flags_until FROM mailtrace.report_manifest WHERE s3_key = %s", (WEEK.s3_key,)
    ).fetchone()
    warehouse_conn.commit()
    insert_flag(warehouse_conn, "later@example.com", "set", local(2026, 1, 13, 9, 0), "R-2")

    build_report(WEEK, bucket=s3_bucket, run_id="manual__again")
    email_report(bucket=s3_bucket, s3_key=WEEK.s3_key, run_id="manual__again", manual_run=True)

    assert (
        warehouse_conn.execute(
            "SELECT flags_since, flags_until FROM mailtrace.report_manifest WHERE s3_key = %s", (WEEK.s3_key,)
        ).fetchone()
        == window
    )
    text = smtp_server.messages[0].get_body(("plain",)).get_content()
    assert "first@example.com" in text
    assert "later@example.com" not in text


def test_adhoc_report_lists_flags_set_within_its_period(
    warehouse_conn, s3_bucket, aws, smtp_server, examiners
):
    period = adhoc_period("2026-01-06", "2026-01-07")
    insert_flag(
        warehouse_conn,
        "inside@example.com",
        "set",
        local(2026, 1, 6, 8, 0),
        "R-1",
        recorded_at=local(2026, 1, 7, 23, 0),
    )
    insert_flag(
        warehouse_conn,
        "after@example.com",
        "set",
        local(2026, 1, 7, 8, 0),
        "R-2",
        recorded_at=local(2026, 1, 8, 0, 0),
    )

    build_report(period, bucket=s3_bucket)
    email_report(bucket=s3_bucket, s3_key=period.s3_key, run_id="manual__adhoc", manual_run=True)

    text = smtp_server.messages[0].get_body(("plain",)).get_content()
    assert "ADDRESSES NEWLY FLAGGED (1)" in text
    assert "(flagged 2026-01-06 00:00 to 2026-01-08 00:00, still flagged now)" in text
    assert "inside@example.com" in text
    assert "after@example.com" not in text


def test_retry_does_not_email_twice_but_new_content_or_a_manual_run_does(
    warehouse_conn, s3_bucket, aws, smtp_server, examiners
):
    insert_event(warehouse_conn, "t1", local(2026, 1, 6, 9, 0))
    built = build_report(WEEK, bucket=s3_bucket)

    assert email_report(bucket=s3_bucket, s3_key=built["s3_key"], run_id="scheduled__1")["sent"]
    assert not email_report(bucket=s3_bucket, s3_key=built["s3_key"], run_id="scheduled__1")["sent"]
    assert not email_report(bucket=s3_bucket, s3_key=built["s3_key"], run_id="backfill__1")["sent"]
    assert len(smtp_server.messages) == 1

    assert email_report(bucket=s3_bucket, s3_key=built["s3_key"], run_id="manual__1", manual_run=True)["sent"]
    assert len(smtp_server.messages) == 2

    insert_event(warehouse_conn, "t2", local(2026, 1, 7, 9, 0))  # a late failure changes the content
    build_report(WEEK, bucket=s3_bucket)
    assert email_report(bucket=s3_bucket, s3_key=built["s3_key"], run_id="scheduled__1")["sent"]
    assert smtp_server.messages[2]["Subject"] == "Failed notifications 2026-W02: 2 failed"


def test_recipients_from_a_comma_separated_variable(warehouse_conn, s3_bucket, aws, smtp_server, monkeypatch):
    monkeypatch.setenv("AIRFLOW_VAR_MAILTRACE_EXAMINER_EMAILS", " first@example.gov, second@example.gov ,")
    built = build_report(WEEK, bucket=s3_bucket)
    email_report(bucket=s3_bucket, s3_key=built["s3_key"], run_id="r")
    assert smtp_server.envelopes[0][1] == ["first@example.gov", "second@example.gov"]


@pytest.mark.parametrize(
    ("value", "message"),
    [("", "lists no addresses"), ('["ok@example.gov", "not an address"]', "malformed addresses: \\*\\*\\*")],
)
def test_missing_or_malformed_recipients_fail_before_sending(
    warehouse_conn, s3_bucket, aws, smtp_server, monkeypatch, value, message
):
    monkeypatch.setenv("AIRFLOW_VAR_MAILTRACE_EXAMINER_EMAILS", value)
    built = build_report(WEEK, bucket=s3_bucket)
    with pytest.raises(ValueError, match=message):
        email_report(bucket=s3_bucket, s3_key=built["s3_key"], run_id="r")
    assert smtp_server.messages == []
    assert manifest_rows(warehouse_conn)[0][3] is None


# ---------------------------------------------------------------------------------------------- corrections

NEXT_MONDAY = local(2026, 1, 19, 6, 0)  # the scheduled run that reports 2026-W03 and corrects 2026-W02


def test_late_failure_is_mailed_once_as_a_correction_the_next_week(
    warehouse_conn, s3_bucket, aws, smtp_server, examiners, monkeypatch
):
    monkeypatch.setenv("AIRFLOW_VAR_MAILTRACE_REPORT_BUCKET", s3_bucket)
    insert_event(warehouse_conn, "on-time", local(2026, 1, 6, 9, 0))
    insert_event(
        warehouse_conn, "late", local(2026, 1, 11, 23, 30), "pending", None, notification_type="RENEWAL"
    )

    # Monday 2026-01-12: the W02 report (one failure); the week before has no report, so nothing to correct.
    built = build_for_run(params={}, logical_date=LOGICAL_DATE, run_id="scheduled__w02", now=LOGICAL_DATE)
    email_report(bucket=s3_bucket, s3_key=built["s3_key"], run_id="scheduled__w02")
    assert rebuild_previous_for_run(params={}, logical_date=LOGICAL_DATE, run_id="scheduled__w02") == {
        "rebuilt": False,
        "reason": "no report for 2026-W01",
    }
    first_bytes = s3_bytes(aws, s3_bucket, WEEK.s3_key)

    # Wednesday: Notify's temporary failure for the Sunday notice is reconciled, after the report.
    warehouse_conn.execute(
        "UPDATE mailtrace.delivery SET delivery_status = 'temporary_failure', "
        "failure_reason = 'mailbox_full' WHERE event_id = 'late'"
    )
    warehouse_conn.commit()

    # Monday 2026-01-19: W03's own report, and W02 rebuilt with the late failure and corrected.
    w03 = build_for_run(params={}, logical_date=NEXT_MONDAY, run_id="scheduled__w03", now=NEXT_MONDAY)
    email_report(bucket=s3_bucket, s3_key=w03["s3_key"], run_id="scheduled__w03")
    rebuilt = rebuild_previous_for_run(params={}, logical_date=NEXT_MONDAY, run_id="scheduled__w03")
    assert (rebuilt["rebuilt"], rebuilt["s3_key"], rebuilt["row_count"]) == (True, WEEK.s3_key, 2)
    assert email_correction(bucket=s3_bucket, s3_key=rebuilt["s3_key"], run_id="scheduled__w03")["sent"]

    corrected_bytes = s3_bytes(aws, s3_bucket, WEEK.s3_key)
    assert corrected_bytes != first_bytes
    assert [row[7] for row in csv_rows(corrected_bytes)[1:]] == ["on-time", "late"]
    subjects = [m["Subject"] for m in smtp_server.messages]
    assert subjects == [
        "Failed notifications 2026-W02: 1 failed",
        "Failed notifications 2026-W03: no failures",
        "Corrected failed notifications 2026-W02: 1 more failure (now 2)",
    ]
    correction = smtp_server.messages[2]
    assert smtp_server.envelopes[2][1] == examiners
    (attachment,) = list(correction.iter_attachments())
    assert attachment.get_filename() == "failed-notifications-2026-W02.csv"
    assert attachment.get_payload(decode=True) == corrected_bytes
    text = correction.get_body(("plain",)).get_content()
    assert "1 more failed email: 2 now, 1 in the report you received." in text
    assert "RENEWAL: 0 / 1" in text
    assert "Nothing to do now: check next week: 0 / 1" in text
    assert (
        "  - Not delivered, for a reason that may pass: the mailbox was full or the mail server busy: 0 / 1"
        in text
    )
    assert "NOC:" not in text  # unchanged counts are not repeated
    row = warehouse_conn.execute(
        "SELECT sent_kind, sent_row_count, sent_checksum = checksum_sha256, sent_run_id "
        "FROM mailtrace.report_manifest WHERE s3_key = %s",
        (WEEK.s3_key,),
    ).fetchone()
    assert row == ("correction", 2, True, "scheduled__w03")

    # Re-running the Monday run (or retrying its tasks) rewrites the same bytes and mails nothing more.
    again = rebuild_previous_for_run(params={}, logical_date=NEXT_MONDAY, run_id="scheduled__w03")
    assert again["checksum_sha256"] == rebuilt["checksum_sha256"]
    assert email_correction(bucket=s3_bucket, s3_key=WEEK.s3_key, run_id="scheduled__w03") == {
        "sent": False,
        "s3_key": WEEK.s3_key,
        "reason": "unchanged",
    }
    assert not email_report(bucket=s3_bucket, s3_key=WEEK.s3_key, run_id="scheduled__w02")["sent"]
    assert s3_bytes(aws, s3_bucket, WEEK.s3_key) == corrected_bytes
    assert len(smtp_server.messages) == 3


def test_no_correction_for_an_unmailed_report_or_an_adhoc_run(
    warehouse_conn, s3_bucket, aws, smtp_server, examiners, monkeypatch
):
    monkeypatch.setenv("AIRFLOW_VAR_MAILTRACE_REPORT_BUCKET", s3_bucket)
    build_report(WEEK, bucket=s3_bucket, run_id="scheduled__w02")  # built, its email never went out
    insert_event(warehouse_conn, "late", local(2026, 1, 8, 9, 0))

    rebuilt = rebuild_previous_for_run(params={}, logical_date=NEXT_MONDAY, run_id="scheduled__w03")
    assert rebuilt["row_count"] == 1
    assert email_correction(bucket=s3_bucket, s3_key=WEEK.s3_key, run_id="scheduled__w03")["reason"] == (
        "report not emailed yet"
    )
    adhoc = {"start": "2026-01-12", "end": "2026-01-18"}
    assert rebuild_previous_for_run(params=adhoc, logical_date=NEXT_MONDAY, run_id="manual__1") == {
        "rebuilt": False,
        "reason": "ad-hoc period",
    }
    assert smtp_server.messages == []


def test_large_correction_is_linked_and_fewer_failures_are_said_so(
    warehouse_conn, s3_bucket, aws, smtp_server, examiners, monkeypatch
):
    monkeypatch.setenv("AIRFLOW_VAR_MAILTRACE_REPORT_ATTACH_MAX_BYTES", "100")
    insert_event(warehouse_conn, "a", local(2026, 1, 6, 9, 0), delivery_detail="y" * 200)
    insert_event(warehouse_conn, "b", local(2026, 1, 7, 9, 0), "not_at_provider", None)
    build_report(WEEK, bucket=s3_bucket, run_id="scheduled__w02")
    email_report(bucket=s3_bucket, s3_key=WEEK.s3_key, run_id="scheduled__w02")
    # The provider had it after all, and delivered it.
    warehouse_conn.execute("UPDATE mailtrace.delivery SET delivery_status = 'delivered' WHERE event_id = 'b'")
    warehouse_conn.commit()

    build_report(WEEK, bucket=s3_bucket, run_id="scheduled__w03")
    email_correction(bucket=s3_bucket, s3_key=WEEK.s3_key, run_id="scheduled__w03")

    correction = smtp_server.messages[1]
    assert correction["Subject"] == "Corrected failed notifications 2026-W02: 1 fewer failure (now 1)"
    assert list(correction.iter_attachments()) == []
    text = correction.get_body(("plain",)).get_content()
    (link,) = re.findall(r"http://\S+", text)
    with urllib.request.urlopen(link) as response:  # noqa: S310 - loopback moto URL
        assert response.read() == s3_bytes(aws, s3_bucket, WEEK.s3_key)
    assert "Send it again: 1 / 0" in text
    assert "  - Our system recorded it as sent, but the email service never received it: 1 / 0" in text


def test_correction_email_escapes_data_in_html():
    payload = "<script>alert(1)</script>"
    context = {
        "period_label": "2026-W02",
        "first_day": "2026-01-05",
        "last_day": "2026-01-11",
        "timezone": "America/Vancouver",
        "row_count": 3,
        "was": 3,
        "more": 0,
        "was_sent_at": "2026-01-12 06:01",
        "by_type": [{"notification_type": payload, "was": 1, "now": 0}],
        "by_reason": [{"delivery_status": "complaint", "failure_reason": payload, "was": 1, "now": 0}],
        "delivery": "attachment",
        "filename": payload,
        "link": "",
        "link_expires": "",
        "s3_uri": "s3://bucket/key",
    }
    subject, text, html = report.render_correction(context)
    assert subject == "Corrected failed notifications 2026-W02: revised (3 failed)"
    assert "<script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "Still 3 failed emails, with revised outcomes or details." in text
    assert f"{payload}: 1 / 0" in text  # the application's own notification type, as it is
    # A reason outside the contract is not repeated (nor guessed): the reader is sent to the CSV.
    assert "  - Delivered, then marked as spam by the person: for a reason this email cannot describe" in text
    assert "Read the details before acting: 1 / 0" in text


def test_correction_leaves_out_reasons_whose_changes_cancel_out_in_plain_words():
    """Two reasons the email words alike (both outside the contract) moved 5 -> 3 and 3 -> 5: merged,
    they are no change and not listed; a real change beside them is."""
    context = {
        "period_label": "2026-W02",
        "first_day": "2026-01-05",
        "last_day": "2026-01-11",
        "timezone": "America/Vancouver",
        "row_count": 9,
        "was": 8,
        "more": 1,
        "was_sent_at": "2026-01-12 06:01",
        "by_type": [],
        "by_reason": [
            {"delivery_status": "permanent_failure", "failure_reason": "odd_one", "was": 5, "now": 3},
            {"delivery_status": "permanent_failure", "failure_reason": "odd_two", "was": 3, "now": 5},
            {"delivery_status": "not_at_provider", "failure_reason": None, "was": 0, "now": 1},
        ],
        "delivery": "attachment",
        "filename": "report.csv",
        "link": "",
        "link_expires": "",
        "s3_uri": "s3://bucket/key",
    }
    _, text, _ = report.render_correction(context)
    assert "8 / 8" not in text and "Read the details before acting" not in text
    assert "Send it again: 0 / 1" in text


def test_migration_gives_existing_reports_a_window_and_what_was_sent(empty_database_dsn, tmp_path):
    """Reports built before migration 009 continue the chain from their build time; a mailed report's
    content counts as what the examiners received, so its correction can say what changed."""
    import shutil

    from mailtrace.warehouse import MIGRATIONS_DIR, apply_migrations

    migration = next(MIGRATIONS_DIR.glob("009_*.sql"))
    for path in MIGRATIONS_DIR.glob("*.sql"):
        if path.name < "009":
            shutil.copy(path, tmp_path / path.name)
    with psycopg.connect(empty_database_dsn) as conn:
        apply_migrations(conn, tmp_path)
        conn.execute(
            """INSERT INTO mailtrace.report_manifest
                   (bucket, s3_key, period_kind, period_start, period_end, period_timezone, period_label,
                    row_count, byte_count, checksum_sha256, summary, built_at, sent_at, sent_checksum)
               VALUES ('b', %s, 'weekly', %s, %s, 'America/Vancouver', '2026-W02', 3, 100, %s, '{"total": 3}',
                       %s, %s, %s)""",
            (
                WEEK.s3_key,
                WEEK.start,
                WEEK.end,
                "a" * 64,
                local(2026, 1, 12, 6, 0),
                local(2026, 1, 12, 6, 1),
                "a" * 64,
            ),
        )
        conn.commit()
        shutil.copy(migration, tmp_path / migration.name)
        assert apply_migrations(conn, tmp_path) == [migration.name]
        row = conn.execute(
            "SELECT flags_since, flags_until, sent_row_count, sent_summary, sent_kind "
            "FROM mailtrace.report_manifest"
        ).fetchone()
    assert row == (WEEK.start, local(2026, 1, 12, 6, 0), 3, {"total": 3}, "report")


# ---------------------------------------------------------------------------------------------- the DAG


def test_dag_runs_monday_0600_vancouver_with_catchup_and_date_params():
    from airflow.dag_processing.dagbag import DagBag
    from airflow.serialization.encoders import coerce_to_core_timetable
    from airflow.timetables.base import TimeRestriction

    bag = DagBag(dag_folder=str(DAGS_DIR / "mailtrace_weekly_report.py"))
    assert bag.import_errors == {}
    dag = bag.dags["mailtrace_weekly_report"]
    assert (dag.catchup, dag.max_active_runs) == (True, 1)
    assert dag.get_task("email_report").upstream_task_ids == {"build_report"}
    assert dag.get_task("email_owed_reports").upstream_task_ids == {"rebuild_previous_week"}
    assert dag.get_task("email_correction").upstream_task_ids == {
        "rebuild_previous_week",
        "email_owed_reports",
    }
    assert set(dag.task_ids) == {
        "build_report",
        "email_report",
        "rebuild_previous_week",
        "email_owed_reports",
        "email_correction",
    }
    assert set(dag.params) == {"start", "end"}
    timetable = coerce_to_core_timetable(dag.timetable)

    def first_run_from(earliest: datetime) -> datetime:
        info = timetable.next_dagrun_info(
            last_automated_data_interval=None, restriction=TimeRestriction(earliest, None, True)
        )
        return info.logical_date

    first = first_run_from(dag.start_date)
    assert first == local(2026, 1, 5, 6, 0)
    assert weekly_period(first, "America/Vancouver").label == "2026-W01"
    # Still 06:00 local once daylight saving time starts (13:00 UTC instead of 14:00).
    assert first_run_from(datetime(2026, 7, 1, tzinfo=UTC)) == datetime(2026, 7, 6, 13, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def airflow_metadata_db():
    """The session's Airflow metadata database (SQLite in the temporary AIRFLOW_HOME), migrated once."""
    import subprocess
    import sys

    airflow = Path(sys.executable).with_name("airflow")
    subprocess.run([str(airflow), "db", "migrate"], check=True, capture_output=True, env=os.environ.copy())


def emailed_before(conn, bucket, period) -> None:
    """As if this deployment had built and emailed the report of `period`."""
    build_report(period, bucket=bucket, run_id="scheduled__before")
    conn.execute(
        """UPDATE mailtrace.report_manifest
           SET sent_at = now(), sent_run_id = 'scheduled__before', sent_checksum = checksum_sha256,
               sent_row_count = row_count, sent_summary = summary, sent_kind = 'report', email_owed = false
           WHERE s3_key = %s""",
        (period.s3_key,),
    )
    conn.commit()


def test_dag_end_to_end_builds_and_emails_the_week(
    airflow_metadata_db, warehouse_conn, s3_bucket, aws, smtp_server, examiners, monkeypatch
):
    from airflow.dag_processing.dagbag import DagBag

    # dag.test() syncs the DAG from its bundle into the metadata database before running it.
    bundle = {"name": "dags-folder", "classpath": "airflow.dag_processing.bundles.local.LocalDagBundle"}
    bundle["kwargs"] = {"path": str(DAGS_DIR), "refresh_interval": 0}
    monkeypatch.setenv("AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST", json.dumps([bundle]))
    monkeypatch.setenv("AIRFLOW_VAR_MAILTRACE_REPORT_BUCKET", s3_bucket)
    insert_event(warehouse_conn, "e2e", local(2026, 1, 11, 23, 30))
    # A deployment that has run before (it emailed W01): the January runs below are weeks it missed, owed
    # to the examiners, rather than a first deployment's catch-up (built without email).
    emailed_before(warehouse_conn, s3_bucket, WEEK.previous())
    dag = DagBag(dag_folder=str(DAGS_DIR / "mailtrace_weekly_report.py")).dags["mailtrace_weekly_report"]

    run = dag.test(logical_date=LOGICAL_DATE)

    assert run.state == "success"
    assert [row[7] for row in csv_rows(s3_bytes(aws, s3_bucket, WEEK.s3_key))[1:]] == ["e2e"]
    (message,) = smtp_server.messages
    assert message["Subject"] == "Failed notifications 2026-W02: 1 failed"

    # A bounce for a W02 notice reconciled after that report: the next Monday's run corrects W02.
    insert_event(warehouse_conn, "e2e-late", local(2026, 1, 9, 12, 0))
    run = dag.test(logical_date=NEXT_MONDAY)

    assert run.state == "success"
    assert [row[7] for row in csv_rows(s3_bytes(aws, s3_bucket, WEEK.s3_key))[1:]] == ["e2e-late", "e2e"]
    assert sorted(m["Subject"] for m in smtp_server.messages[1:]) == [
        "Corrected failed notifications 2026-W02: 1 more failure (now 2)",
        "Failed notifications 2026-W03: no failures",
    ]


# ------------------------------------------------------------------- owed reports, first deployment


def run_week(bucket: str, logical_date: datetime, now: datetime) -> dict:
    """One scheduled run of the weekly DAG, task by task in its order, as if at `now`."""
    run_id = f"scheduled__{logical_date.date().isoformat()}"
    done = {}
    built = build_for_run(params={}, logical_date=logical_date, run_id=run_id, now=now)
    done["report"] = email_report(bucket=bucket, s3_key=built["s3_key"], run_id=run_id, now=now)
    rebuilt = rebuild_previous_for_run(params={}, logical_date=logical_date, run_id=run_id)
    done["owed"] = report.email_owed_reports(
        bucket=bucket, before=weekly_period(logical_date).start, run_id=run_id, now=now
    )
    if rebuilt["rebuilt"]:
        done["correction"] = email_correction(bucket=bucket, s3_key=rebuilt["s3_key"], run_id=run_id)
    return done


def test_report_not_emailed_while_smtp_is_down_stays_owed_and_the_next_run_emails_it_late(
    warehouse_conn, s3_bucket, aws, smtp_server, examiners, monkeypatch
):
    from tests.conftest import free_port

    monkeypatch.setenv("AIRFLOW_VAR_MAILTRACE_REPORT_BUCKET", s3_bucket)
    insert_event(warehouse_conn, "w02-failure", local(2026, 1, 6, 9, 0))
    working_smtp = os.environ["AIRFLOW_CONN_SMTP_DEFAULT"]
    down = json.loads(working_smtp)
    down.update(port=free_port())  # nothing listens there: the mail server is down
    down["extra"]["retry_limit"] = 0
    monkeypatch.setenv("AIRFLOW_CONN_SMTP_DEFAULT", json.dumps(down))

    # Monday 12 January: the W02 report is built, its email fails (every retry would fail alike).
    built = build_for_run(params={}, logical_date=LOGICAL_DATE, run_id="scheduled__w02", now=LOGICAL_DATE)
    with pytest.raises(Exception, match="(?i)smtp|connect"):
        email_report(bucket=s3_bucket, s3_key=built["s3_key"], run_id="scheduled__w02", now=LOGICAL_DATE)
    owed, sent_at, error = warehouse_conn.execute(
        "SELECT email_owed, sent_at, email_error FROM mailtrace.report_manifest WHERE s3_key = %s",
        (WEEK.s3_key,),
    ).fetchone()
    assert (owed, sent_at) == (True, None) and error

    # Monday 19 January, mail server back: W03's own report, then W02 owed, sent whole and marked late.
    monkeypatch.setenv("AIRFLOW_CONN_SMTP_DEFAULT", working_smtp)
    done = run_week(s3_bucket, NEXT_MONDAY, now=NEXT_MONDAY)
    assert done["owed"] == {"owed": 1, "sent": [WEEK.s3_key]}
    assert done["correction"]["reason"] == "unchanged"  # what they now have is current: no correction
    assert [m["Subject"] for m in smtp_server.messages] == [
        "Failed notifications 2026-W03: no failures",
        "Failed notifications 2026-W02: 1 failed",
    ]
    late = smtp_server.messages[1]
    text = late.get_body(("plain",)).get_content()
    assert (
        "This report is late: it was due on 2026-01-12, after its week ended, and is sent on 2026-01-19"
        in text
    )
    assert "it could not be emailed before (last attempt 2026-" in text
    assert "This report is late" in late.get_body(("html",)).get_content()
    assert "late" not in smtp_server.messages[0].get_body(("plain",)).get_content()
    owed, sent_kind = warehouse_conn.execute(
        "SELECT email_owed, sent_kind FROM mailtrace.report_manifest WHERE s3_key = %s", (WEEK.s3_key,)
    ).fetchone()
    assert (owed, sent_kind) == (False, "report")

    # A retry of that run (or the next week's) sends nothing more.
    run_week(s3_bucket, NEXT_MONDAY, now=NEXT_MONDAY)
    assert len(smtp_server.messages) == 2


def test_first_deployment_emails_only_the_latest_week_and_builds_the_earlier_ones_silently(
    warehouse_conn, s3_bucket, aws, smtp_server, examiners, monkeypatch
):
    monkeypatch.setenv("AIRFLOW_VAR_MAILTRACE_REPORT_BUCKET", s3_bucket)
    for day in (6, 13, 20, 27):
        insert_event(warehouse_conn, f"jan-{day}", local(2026, 1, day, 9, 0))
    deployed = local(2026, 2, 3, 10, 0)  # a Tuesday: the latest week due is W05 (26 Jan to 1 Feb)
    mondays = [local(2026, 1, 5, 6, 0) + timedelta(weeks=n) for n in range(5)]  # catch-up: W01 to W05

    for monday in mondays:
        run_week(s3_bucket, monday, now=deployed)

    assert [m["Subject"] for m in smtp_server.messages] == ["Failed notifications 2026-W05: 1 failed"]
    rows = warehouse_conn.execute(
        """SELECT period_label, email_owed, sent_at IS NOT NULL, not_emailed_note IS NOT NULL
           FROM mailtrace.report_manifest ORDER BY period_start"""
    ).fetchall()
    assert rows == [
        ("2026-W01", False, False, True),
        ("2026-W02", False, False, True),
        ("2026-W03", False, False, True),
        ("2026-W04", False, False, True),
        ("2026-W05", False, True, False),
    ]
    for label in ("2026-W02", "2026-W03", "2026-W04"):  # built, with their failures, for the record
        assert len(csv_rows(s3_bytes(aws, s3_bucket, f"failed-notifications/{label}.csv"))) == 2

    # The next Monday runs as usual: W06 is emailed; the silent weeks are never owed.
    run_week(s3_bucket, local(2026, 2, 9, 6, 0), now=local(2026, 2, 9, 6, 5))
    assert [m["Subject"] for m in smtp_server.messages][1:] == ["Failed notifications 2026-W06: no failures"]

    # Later the scheduler is down for two Mondays: once it is back, the missed weeks are emailed (late).
    back = local(2026, 2, 24, 8, 0)
    for monday in (local(2026, 2, 16, 6, 0), local(2026, 2, 23, 6, 0)):
        run_week(s3_bucket, monday, now=back)
    assert [m["Subject"] for m in smtp_server.messages][2:] == [
        "Failed notifications 2026-W07: no failures",
        "Failed notifications 2026-W08: no failures",
    ]
    assert "This report is late" in smtp_server.messages[2].get_body(("plain",)).get_content()


# The SMTP server of tests/test_mailer.py that quotes refused addresses word for word.
quoting_smtp = mailer_tests.quoting_smtp


def test_examiners_all_refused_leave_the_report_owed_with_the_server_text_masked(
    warehouse_conn, s3_bucket, aws, examiners, quoting_smtp, caplog
):
    insert_event(warehouse_conn, "a1", local(2026, 1, 6, 9, 0))
    built = build_report(WEEK, bucket=s3_bucket)
    quoting_smtp(set(examiners))

    with caplog.at_level("DEBUG"), pytest.raises(RecipientsRefused) as refused:
        email_report(bucket=s3_bucket, s3_key=built["s3_key"], run_id="scheduled__1")
    owed, sent_at, error = warehouse_conn.execute(
        "SELECT email_owed, sent_at, email_error FROM mailtrace.report_manifest WHERE s3_key = %s",
        (WEEK.s3_key,),
    ).fetchone()
    assert (owed, sent_at) == (True, None)  # nobody has it: it stays owed
    assert "550 5.1.1 <e***@example.gov>" in error
    logged = "\n".join(record.getMessage() for record in caplog.records if record.name != "mail.log")
    for address in examiners:
        assert address not in error + logged + str(refused.value)
