"""What mailtrace writes to logs, emails and S3 keeps people's data and the secrets in.

One test drives the extract, id look-ups, reconcile, the weekly report (built, then emailed through an
SMTP server that requires AUTH) and a resend (plan, send, summary) with every logger at DEBUG and the
process's stdout/stderr captured, then checks that no full email address, no Notify API key or secret
and no SMTP password appears in any of it, nor in a rendered email; that the report and outcome
objects are written with server-side encryption; and that the presigned link expires within the
configured hours.

Already covered elsewhere: masked addresses in the SES drain's logs (tests/test_ses_ingest.py), SSE on
the SES archive and the outcome CSV (tests/test_ses_ingest.py, tests/test_resend.py), a 24-hour link
(tests/test_report.py).
"""

from __future__ import annotations

import email
import email.policy
import json
import logging
import re
import uuid
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import pytest

from mailtrace.privacy import mask_email

NOW = datetime.now(UTC).replace(microsecond=0)
SMTP_LOGIN = "mailtrace-relay"
SMTP_PASSWORD = f"smtp-pw-{uuid.uuid4().hex}"
LINK_HOURS = 2
EMAIL = re.compile(r"[A-Za-z0-9._%+'-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}")
# The masked form mask_email produces: first character, three stars, the domain.
MASKED = re.compile(r"^.\*\*\*@")


class _AuthSink:
    def __init__(self):
        self.messages: list[email.message.EmailMessage] = []
        self.logins: list[bytes] = []

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 - aiosmtpd's hook name
        self.messages.append(email.message_from_bytes(envelope.content, policy=email.policy.default))
        return "250 OK"


@pytest.fixture
def smtp_with_auth(monkeypatch):
    """An SMTP server that refuses mail without the right login, wired as smtp_default with a password."""
    from aiosmtpd.controller import Controller
    from aiosmtpd.smtp import AuthResult, LoginPassword

    from tests.conftest import free_port

    sink = _AuthSink()

    def authenticator(server, session, envelope, mechanism, auth_data):
        ok = isinstance(auth_data, LoginPassword) and (auth_data.login, auth_data.password) == (
            SMTP_LOGIN.encode(),
            SMTP_PASSWORD.encode(),
        )
        if ok:
            sink.logins.append(auth_data.login)
        return AuthResult(success=ok)

    port = free_port()
    controller = Controller(
        sink,
        hostname="127.0.0.1",
        port=port,
        authenticator=authenticator,
        auth_require_tls=False,
        auth_required=True,
    )
    controller.start()
    monkeypatch.setenv(
        "AIRFLOW_CONN_SMTP_DEFAULT",
        json.dumps(
            {
                "conn_type": "smtp",
                "host": "127.0.0.1",
                "port": port,
                "login": SMTP_LOGIN,
                "password": SMTP_PASSWORD,
                "extra": {"disable_tls": True, "disable_ssl": True, "from_email": "mailtrace@example.gov"},
            }
        ),
    )
    yield sink
    controller.stop()


def _logs_of_our_process(caplog, capfd) -> str:
    """Every log record and stdout/stderr line, except the test SMTP relay's own ("mail.log") log.

    The relay stands in for the deployment's mail server, whose logs are not mailtrace's to keep.
    """
    captured = capfd.readouterr()
    records = [
        f"{record.name} {record.getMessage()}"
        for record in caplog.records
        if not record.name.startswith("mail.log")
    ]
    lines = [line for line in (captured.out + captured.err).splitlines() if "[mail.log]" not in line]
    return "\n".join([*records, *lines])


def _people(count: int, prefix: str) -> list[str]:
    return [f"{prefix}.person{n}@example.gov" for n in range(count)]


def test_no_address_or_secret_leaks_into_logs_or_emails(
    warehouse_conn, notify_sim, s3_bucket, aws, smtp_with_auth, monkeypatch, caplog, capfd
):
    from mailtrace import report, resend
    from mailtrace.notify_extract import extract_list, lookup_open_events
    from mailtrace.providers.gc_notify import NotifyClient
    from mailtrace.reconcile import reconcile

    notified = _people(4, "notified")
    bounced = ["bounce+private.one@example.gov", "suppressed+private.two@example.gov"]
    lost = "lost.private@example.gov"
    resend_targets = _people(3, "resend")
    examiners = ["examiner.alpha@example.gov", "examiner.beta@example.gov"]
    everyone = [*notified, *bounced, lost, *resend_targets, *examiners]

    monkeypatch.setenv("AIRFLOW_VAR_MAILTRACE_REPORT_BUCKET", s3_bucket)
    monkeypatch.setenv("AIRFLOW_VAR_MAILTRACE_EXAMINER_EMAILS", json.dumps(examiners))
    monkeypatch.setenv("AIRFLOW_VAR_MAILTRACE_REPORT_ATTACH_MAX_BYTES", "1")  # always a link
    monkeypatch.setenv("AIRFLOW_VAR_MAILTRACE_REPORT_LINK_EXPIRY_HOURS", str(LINK_HOURS))
    monkeypatch.setenv("AIRFLOW_VAR_MAILTRACE_NOTIFY_TEMPLATE_ID", str(uuid.uuid4()))
    monkeypatch.setenv("AIRFLOW_VAR_MAILTRACE_ENVIRONMENT", "production")

    # Provider data and the app's log: delivered, bounced and a "lost" email Notify never stored.
    rows = []
    for n, address in enumerate([*notified, *bounced]):
        status = "delivered" if address in notified else "permanent-failure"
        created = NOW - timedelta(minutes=30 + n)
        rows.append(
            {"id": str(uuid.uuid4()), "email_address": address, "status": status, "created_at": created}
        )
    notify_sim.add_notifications(rows)
    with warehouse_conn.transaction():
        logged = [(row["id"], row["email_address"], row["created_at"]) for row in rows]
        logged.append((str(uuid.uuid4()), lost, NOW - timedelta(hours=3)))
        for n, (reference, address, sent_at) in enumerate(logged):
            warehouse_conn.execute(
                """INSERT INTO mailtrace.notification_event (event_id, subject_type, subject_id,
                       notification_type, recipient_email, provider, provider_reference, sent_at,
                       local_status)
                   VALUES (%s, 'registration', %s, 'NOC', %s, 'gc_notify', %s, %s, 'SENT')""",
                (f"evt-{n}", f"STR-{n:06d}", address, reference, sent_at),
            )
        for n, address in enumerate(resend_targets, start=100):
            warehouse_conn.execute(
                """INSERT INTO mailtrace.contact (subject_type, subject_id, email)
                   VALUES ('registration', %s, %s)""",
                (f"STR-{n:06d}", address),
            )

    caplog.set_level(logging.DEBUG)
    client = NotifyClient(notify_sim.api_key, notify_sim.base_url, backoff_base=0.01, sleep=lambda _: None)
    notify_sim.add_fault("status", status=503)  # a retry gets logged too
    extract_list(warehouse_conn, client, now=NOW)
    lookup_open_events(warehouse_conn, client, now=NOW)
    reconcile(warehouse_conn, now=NOW)

    local_day = NOW.astimezone(report.periods._zone(report.DEFAULT_TIMEZONE)).date()  # noqa: SLF001
    period = report.adhoc_period(local_day - timedelta(days=1), local_day)
    built = report.build_report(period, bucket=s3_bucket, run_id="manual__privacy")
    sent = report.email_report(bucket=s3_bucket, s3_key=built["s3_key"], run_id="manual__privacy")

    params = resend.ResendParams(
        incident_id="INC-PRIV",
        id_type="registration",
        inline_ids=" ".join(f"STR-{n:06d}" for n in range(100, 103)),
        dry_run=False,
    )
    chunks = resend.plan_resend(params, run_id="manual__privacy")
    for chunk in chunks:
        resend.send_chunk(params, run_id="manual__privacy", chunk_index=chunk["chunk_index"], client=client)
    summary = resend.summarize_run(params, run_id="manual__privacy")

    # The run did what it should, so the logs below are those of real work.
    assert built["row_count"] == 3 and sent["delivery"] == "link"
    assert (summary["sent"], summary["failed"], summary["claimed"]) == (3, 0, 0)
    assert smtp_with_auth.logins == [SMTP_LOGIN.encode()]
    logs = _logs_of_our_process(caplog, capfd)
    assert "retry 1" in logs and "report" in logs and "resend" in logs

    # 1. No full address anywhere in the logs; masked ones are fine.
    assert [line for line in logs.splitlines() if any(a in line for a in everyone)] == []
    assert [found for found in EMAIL.findall(logs) if not MASKED.match(found)] == [], "unmasked address"
    # The mailer names its recipients masked: the masking is in use, not just the absence of addresses.
    assert mask_email(examiners[0]) in logs

    # 2. No secret in the logs, nor in anything rendered for a person.
    rendered = [
        part.get_content()
        for message in smtp_with_auth.messages
        for part in message.walk()
        if part.get_content_maintype() == "text"
    ]
    rendered += [json.dumps(body["personalisation"]) for body in notify_sim.sent_requests()]
    assert len(rendered) >= 2 + len(resend_targets)
    for text in [logs, *rendered]:
        assert notify_sim.api_key not in text
        assert notify_sim._secret not in text  # noqa: SLF001 - the JWT signing secret itself
        assert SMTP_PASSWORD not in text

    # 3. Objects written with server-side encryption.
    s3 = aws.client("s3")
    outcome_key = "resend-outcomes/INC-PRIV/manual__privacy.csv"
    for key in (built["s3_key"], outcome_key):
        assert s3.head_object(Bucket=s3_bucket, Key=key)["ServerSideEncryption"] == "AES256"

    # 4. The presigned link expires within the configured hours.
    (message,) = smtp_with_auth.messages
    (link,) = re.findall(r"http://\S+", message.get_body(("plain",)).get_content())
    expires = parse_qs(urlsplit(link).query)["X-Amz-Expires"]
    assert 0 < int(expires[0]) <= LINK_HOURS * 3600
