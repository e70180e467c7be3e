"""Resend DAG logic against the Notify simulator, real Postgres and moto S3.

Every test counts what the simulator accepted (`sent_requests()`): one POST per (incident, subject),
whatever is re-triggered, retried, killed or answered ambiguously.
"""

from __future__ import annotations

import base64
import csv
import io
import json
import os
import subprocess
import sys
import textwrap
import threading
import urllib.request
import uuid
from collections import Counter
from datetime import UTC, datetime
from email import message_from_string
from email.message import EmailMessage
from email.policy import default as default_policy
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from mailtrace import resend
from mailtrace.providers.gc_notify import NotifyClient
from mailtrace.resend import (
    Pacer,
    ResendError,
    ResendInputError,
    ResendParams,
    plan_resend,
    send_chunk,
    summarize_run,
)
from mailtrace.resend.counts import run_counts

REPO_ROOT = Path(__file__).resolve().parents[1]
INCIDENT = "INC-2026-014"


def ledger_counts(summary: dict) -> dict[str, int]:
    """The ledger statuses of a run's summary (it also counts rows per decision and reason)."""
    return {status: summary[status] for status in ("sent", "failed", "claimed")}


class Killed(BaseException):
    """Stands in for the task being killed: nothing in the code under test may catch it."""


@pytest.fixture
def env(warehouse_conn, notify_sim, s3_bucket, aws, monkeypatch):
    """Everything a resend needs: settings, a few contacts, and helpers to run and inspect it."""
    monkeypatch.setenv("AIRFLOW_VAR_MAILTRACE_REPORT_BUCKET", s3_bucket)
    monkeypatch.setenv("AIRFLOW_VAR_MAILTRACE_NOTIFY_TEMPLATE_ID", str(uuid.uuid4()))
    monkeypatch.setenv("AIRFLOW_VAR_MAILTRACE_ENVIRONMENT", "production")

    class Env:
        conn = warehouse_conn
        sim = notify_sim
        bucket = s3_bucket
        s3 = aws.client("s3")

        def contacts(self, mapping: dict[str, str], subject_type: str = "registration") -> None:
            with self.conn.transaction():
                for subject_id, email in mapping.items():
                    self.conn.execute(
                        "INSERT INTO mailtrace.contact (subject_type, subject_id, email) VALUES (%s, %s, %s)",
                        (subject_type, subject_id, email),
                    )

        def params(self, ids, **overrides) -> ResendParams:
            values = {"incident_id": INCIDENT, "id_type": "registration", "dry_run": False}
            if isinstance(ids, bytes):
                key = f"resend-requests/{INCIDENT}/{uuid.uuid4().hex}.csv"
                self.s3.put_object(Bucket=self.bucket, Key=key, Body=ids)
                values["ids_s3_uri"] = f"s3://{self.bucket}/{key}"
            else:
                values["inline_ids"] = " ".join(ids)
            values.update(overrides)
            return ResendParams(**values)

        def run(self, params: ResendParams, run_id: str | None = None) -> dict:
            run_id = run_id or f"manual__{uuid.uuid4().hex}"
            chunks = plan_resend(params, run_id=run_id)
            for chunk in chunks:
                send_chunk(params, run_id=run_id, chunk_index=chunk["chunk_index"], client=self.client())
            return summarize_run(params, run_id=run_id)

        @staticmethod
        def client() -> NotifyClient:
            return NotifyClient.from_connection("notify_api", backoff_base=0.01)

        def posted(self) -> Counter:
            return Counter(body["email_address"] for body in self.sim.sent_requests())

        def outcome(self, run_id: str) -> list[dict]:
            key = f"resend-outcomes/{INCIDENT}/{run_id}.csv"
            body = self.s3.get_object(Bucket=self.bucket, Key=key)["Body"].read().decode("utf-8")
            return list(csv.DictReader(io.StringIO(body)))

        def ledger(self) -> list[tuple]:
            return self.conn.execute(
                """SELECT subject_id, generation, status, attempts FROM mailtrace.resend_request
                   ORDER BY subject_id, generation"""
            ).fetchall()

        def settle_passed(self) -> None:
            """As if the settle delay had passed since every row's last provider call."""
            self.conn.execute(
                """UPDATE mailtrace.resend_request
                   SET last_attempt_at = last_attempt_at - interval '1 day'"""
            )
            self.conn.commit()

        def events(self) -> list[tuple]:
            return self.conn.execute(
                """SELECT subject_id, notification_type, recipient_email, provider, provider_reference,
                          client_reference, local_status, event_id
                   FROM mailtrace.notification_status ORDER BY subject_id, event_id"""
            ).fetchall()

    return Env()


def addresses(count: int, start: int = 1) -> dict[str, str]:
    return {f"STR-{n:06d}": f"delivered+{n}@example.gov" for n in range(start, start + count)}


# ----------------------------------------------------------------------------------- dry run, plan


def test_dry_run_sends_nothing_and_writes_the_outcome_csv(env):
    env.contacts(addresses(3))
    params = env.params(list(addresses(3)), dry_run=True)
    chunks = plan_resend(params, run_id="dry-1")
    assert chunks == []
    assert env.sim.sent_requests() == []
    assert env.ledger() == []
    rows = env.outcome("dry-1")
    assert [(r["subject_id"], r["decision"], r["reason"]) for r in rows] == [
        (subject_id, "would_send", "dry_run") for subject_id in addresses(3)
    ]
    assert rows[0]["recipient"] == "d***@example.gov"
    head = env.s3.head_object(Bucket=env.bucket, Key=f"resend-outcomes/{INCIDENT}/dry-1.csv")
    assert head["ServerSideEncryption"] == "AES256"
    audit = env.conn.execute("SELECT dry_run, planned, outcome_uri FROM mailtrace.resend_run").fetchone()
    assert audit == (True, 3, f"s3://{env.bucket}/resend-outcomes/{INCIDENT}/dry-1.csv")
    summary = summarize_run(params, run_id="dry-1")
    assert ledger_counts(summary) == {"sent": 0, "failed": 0, "claimed": 0}
    assert summary["decisions"]["would_send"] == 3 and summary["reasons"] == {"would_send": {"dry_run": 3}}


def _flag_address(conn, subject_id: str, email: str) -> None:
    """Flag a contact's address through whatever backs mailtrace.flagged_address in this build."""
    kind = conn.execute(
        "SELECT relkind FROM pg_class WHERE oid = to_regclass('mailtrace.flagged_address')"
    ).fetchone()
    if kind is not None and kind[0] == "v":
        # The view of migration 003 reads the current flags from mailtrace.address_flag.
        conn.execute(
            """INSERT INTO mailtrace.address_flag (subject_type, subject_id, email, failure_reason, cause,
                   flagged_at, last_failed_event_id)
               VALUES ('registration', %s, lower(%s), 'invalid_address', 'bounce', now(), 'evt-1')""",
            (subject_id, email),
        )
    else:
        conn.execute(
            """CREATE TABLE IF NOT EXISTS mailtrace.flagged_address (subject_type text, subject_id text,
                   email text, failure_reason text, flagged_at timestamptz, last_failed_event_id text)"""
        )
        conn.execute(
            """INSERT INTO mailtrace.flagged_address (subject_type, subject_id, email, failure_reason)
               VALUES ('registration', %s, %s, 'invalid_address')""",
            (subject_id, email),
        )
    conn.commit()


def test_every_validation_case_gets_a_decision_and_reason(env):
    env.contacts(
        {
            "STR-000001": "delivered@example.gov",
            "STR-000004": "",
            "STR-000005": "not an address",
            "STR-000006": "Bounced@example.gov",
            "STR-000007": "ok\r\nBcc: evil@example.com",
        }
    )
    env.contacts({"STR-000009": "other-type@example.gov"}, subject_type="tax_return")
    _flag_address(env.conn, "STR-000006", "bounced@example.gov")
    upload = (
        "\ufeffRegistration Number\r\n"
        "  STR-000001 \r\n"  # 2 ok
        "\r\n"
        "STR-000001\r\n"  # 4 duplicate
        "STR-12\r\n"  # 5 malformed
        "=cmd|' /C calc'!A0\r\n"  # 6 formula injection, malformed
        "STR-000002\r\n"  # 7 unknown
        "STR-000004\r\n"  # 8 no email
        "STR-000005\r\n"  # 9 invalid address
        "STR-000006\r\n"  # 10 flagged
        "STR-000007\r\n"  # 11 header injection attempt in the address
        "STR-000009\r\n"  # 12 a tax_return, not a registration
    ).encode()
    summary = env.run(env.params(upload), run_id="run-1")
    decided = {row["line"]: (row["decision"], row["reason"]) for row in env.outcome("run-1")}
    assert decided == {
        "2": ("send", "ok"),
        "4": ("skip", "duplicate"),
        "5": ("reject", "malformed_id"),
        "6": ("reject", "malformed_id"),
        "7": ("reject", "unknown_id"),
        "8": ("reject", "no_contact_email"),
        "9": ("reject", "invalid_address"),
        "10": ("reject", "flagged_address"),
        "11": ("reject", "invalid_address"),
        "12": ("reject", "unknown_id"),
    }
    # The summary counts the outcome CSV's rows by decision and reason, and the ledger's emails.
    assert summary["decisions"] == {"send": 1, "would_send": 0, "skip": 1, "reject": 8, "unknown": 0}
    assert summary["reasons"] == {
        "reject": {
            "invalid_address": 2,
            "malformed_id": 2,
            "unknown_id": 2,
            "flagged_address": 1,
            "no_contact_email": 1,
        },
        "send": {"ok": 1},
        "skip": {"duplicate": 1},
    }
    assert (summary["sent"], summary["failed"], summary["claimed"], summary["unknown"]) == (1, 0, 0, 0)
    formula_row = next(row for row in env.outcome("run-1") if row["line"] == "6")
    assert formula_row["input_value"] == "'=cmd|' /C calc'!A0"
    assert formula_row["subject_id"] == "'=cmd|' /C calc'!A0"
    assert env.posted() == {"delivered@example.gov": 1}


def test_tax_return_uuids_are_read_in_any_case_and_sent_once(env):
    """The tax service's tax return ids are UUIDs; a list may write them in upper case."""
    stored = "3f2b8c1e-9a4d-4e6b-8f21-6c0d2e9b7a15"
    env.contacts(
        {stored: "filer@example.gov", "0189c3a2-7d5e-7b1f-9c44-2f6e8a1b3d90": "other.filer@example.gov"},
        subject_type="tax_return",
    )
    upload = (
        "tax_return_id\n"
        f"{stored.upper()}\n"  # 2: the same UUID as stored, in upper case
        f"{stored}\n"  # 3: a duplicate of line 2
        "0189C3A2-7d5e-7B1F-9c44-2f6e8a1b3d90\n"  # 4: mixed case
        "3f2b8c1e9a4d4e6b8f216c0d2e9b7a15\n"  # 5: no hyphens: not a tax return id
        "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee\n"  # 6: well formed, nobody has it
    ).encode()
    summary = env.run(env.params(upload, id_type="tax_return"), run_id="run-tax")
    decided = {
        row["line"]: (row["decision"], row["reason"], row["subject_id"]) for row in env.outcome("run-tax")
    }
    assert decided == {
        "2": ("send", "ok", stored),
        "3": ("skip", "duplicate", stored),
        "4": ("send", "ok", "0189c3a2-7d5e-7b1f-9c44-2f6e8a1b3d90"),
        "5": ("reject", "malformed_id", "3f2b8c1e9a4d4e6b8f216c0d2e9b7a15"),
        "6": ("reject", "unknown_id", "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee"),
    }
    assert "not a tax return id as the tax service issues it" in env.outcome("run-tax")[3]["detail"]
    assert env.posted() == {"filer@example.gov": 1, "other.filer@example.gov": 1}
    assert summary["sent"] == 2
    # The ledger keeps the application's spelling, so a later list in another case is already sent.
    env.run(env.params([stored.upper()], id_type="tax_return"), run_id="run-tax-2")
    assert [row["reason"] for row in env.outcome("run-tax-2")] == ["already_sent"]
    assert env.posted() == {"filer@example.gov": 1, "other.filer@example.gov": 1}


def test_nothing_valid_fails_clearly_after_writing_the_outcome(env):
    with pytest.raises(ResendError, match=r"nothing to send.*2 malformed_id"):
        plan_resend(env.params(["bad", "=1+1"]), run_id="run-bad")
    assert [row["reason"] for row in env.outcome("run-bad")] == ["malformed_id", "malformed_id"]
    assert env.sim.sent_requests() == []


@pytest.mark.parametrize(
    "data",
    [b"PK\x03\x04\x00\x00\x00", "STR-000001\n".encode("utf-16"), "STR-000001 é\n".encode("cp1252")],
)
def test_binary_or_wrongly_encoded_upload_is_refused(env, data):
    with pytest.raises(ValueError, match="binary|UTF-16|1 not_utf8"):
        plan_resend(env.params(data), run_id="run-bin")
    assert env.sim.sent_requests() == []


def test_huge_upload_is_refused_before_download(env, monkeypatch):
    monkeypatch.setenv("AIRFLOW_VAR_MAILTRACE_RESEND_MAX_LIST_BYTES", "100")
    with pytest.raises(ValueError, match="limit is 100"):
        plan_resend(env.params(b"STR-000001\n" * 20), run_id="run-huge")


def test_max_recipients_guard_sends_nothing_and_claims_nothing(env):
    env.contacts(addresses(5))
    with pytest.raises(ResendError, match="more than max_recipients=4"):
        plan_resend(env.params(list(addresses(5)), max_recipients=4), run_id="run-guard")
    assert env.ledger() == []
    assert {row["reason"] for row in env.outcome("run-guard")} == {"max_recipients_exceeded"}
    assert env.sim.sent_requests() == []


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"max_recipients": -1}, "max_recipients"),
        ({"max_recipients": 0}, "max_recipients"),
        ({"rate_per_minute": -60}, "rate_per_minute"),
        ({"chunk_size": 5000}, "chunk_size"),
        ({"incident_id": "x; DROP TABLE"}, "incident_id"),
        ({"language": "de"}, "language"),
        ({"template": "../../etc/passwd"}, "template"),
        ({"id_type": "passport"}, "id_type"),
        ({"inline_ids": None}, "exactly one"),
        ({"ids_s3_uri": "s3://b/k"}, "exactly one"),
    ],
)
def test_bad_params_are_refused(env, overrides, message):
    with pytest.raises(ResendInputError, match=message):
        ResendParams.from_mapping({**vars(env.params(["STR-000001"])), **overrides})


@pytest.mark.parametrize("incident_id", ["INC-1\n", "INC-1\r\n", "\nINC-1", "INC-1\u2028", "INC 1"])
def test_incident_id_with_a_line_break_is_refused_by_params_and_by_the_form(incident_id):
    from airflow.sdk import Param
    from airflow.sdk.definitions.param import ParamValidationError

    with pytest.raises(ResendInputError, match="incident_id"):
        ResendParams.from_mapping({"incident_id": incident_id, "id_type": "registration", "inline_ids": "x"})
    form = Param(type="string", pattern=resend.INCIDENT_ID_PATTERN)
    with pytest.raises(ParamValidationError):
        form.resolve(incident_id)
    assert form.resolve("INC-2026-014") == "INC-2026-014"


def test_an_id_list_outside_the_allowed_prefix_is_refused_naming_the_prefix(env, monkeypatch):
    env.contacts(addresses(1))
    env.s3.put_object(Bucket=env.bucket, Key="failed-notifications/2026-W02.csv", Body=b"id\nSTR-000001\n")
    for uri in (
        f"s3://{env.bucket}/failed-notifications/2026-W02.csv",
        f"s3://{env.bucket}/resend-requests-old/x.csv",
        f"s3://{env.bucket}/resend-requests/../failed-notifications/2026-W02.csv",
        f"s3://other-bucket/resend-requests/{INCIDENT}/x.csv",
    ):
        params = env.params(["x"], inline_ids=None, ids_s3_uri=uri)
        with pytest.raises(ResendInputError, match=rf"must be under s3://{env.bucket}/resend-requests/"):
            plan_resend(params, run_id="run-outside")
    assert env.ledger() == [] and env.sim.sent_requests() == []

    monkeypatch.setenv("AIRFLOW_VAR_MAILTRACE_RESEND_IDS_PREFIX", f"s3://{env.bucket}/failed-notifications")
    params = env.params(
        ["x"], inline_ids=None, ids_s3_uri=f"s3://{env.bucket}/failed-notifications/2026-W02.csv"
    )
    env.run(params, run_id="run-configured")
    assert env.posted() == {"delivered+1@example.gov": 1}


def test_unreadable_rows_are_set_aside_in_the_outcome_and_the_rest_sent(env, caplog):
    env.contacts(addresses(3))
    upload = b"\r\n\xef\xbb\xbfid\r\nSTR-000001\r\nSTR\x00-000009\r\nSTR-\xff0008\r\n" + b"9" * 5000
    upload += b'\r\n"two\r\nlines",\r\nSTR-000002\r\nSTR-000003,extra\r\n'
    with caplog.at_level("INFO", logger="mailtrace.resend"):
        env.run(env.params(upload), run_id="run-1")
    decided = [(row["line"], row["decision"], row["reason"]) for row in env.outcome("run-1")]
    assert decided == [
        ("3", "send", "ok"),
        ("4", "reject", "control_character"),
        ("5", "reject", "not_utf8"),
        ("6", "reject", "too_long"),
        ("7", "reject", "extra_columns"),
        ("9", "send", "ok"),
        ("10", "reject", "extra_columns"),
    ]
    assert env.posted() == {"delivered+1@example.gov": 1, "delivered+2@example.gov": 1}
    assert "5 unreadable rows set aside" in caplog.text


# --------------------------------------------------------------------------------- sending, ledger


def test_send_records_event_for_the_delivery_pipeline(env):
    env.contacts(addresses(3))
    summary = env.run(env.params(list(addresses(3)), chunk_size=2))
    assert ledger_counts(summary) == {"sent": 3, "failed": 0, "claimed": 0}
    sent = {body["reference"]: body for body in env.sim.sent_requests()}
    events = env.events()
    assert len(events) == 3
    for subject_id, ntype, email, provider, provider_ref, client_ref, local_status, event_id in events:
        assert (ntype, provider, local_status) == ("ERROR_RESOLVED", "gc_notify", "SENT")
        assert client_ref == event_id == f"resend:{INCIDENT}:registration:{subject_id}:0"
        assert sent[client_ref]["id"] == provider_ref
        assert sent[client_ref]["email_address"] == email
    body = sent[f"resend:{INCIDENT}:registration:STR-000001:0"]
    assert set(body["personalisation"]) == {"subject", "body", "html_body"}
    assert "STR-000001" in body["personalisation"]["subject"]


def test_retrigger_with_same_and_overlapping_list_never_sends_twice(env):
    env.contacts(addresses(6))
    env.run(env.params(list(addresses(4))), run_id="run-1")
    env.run(env.params(list(addresses(4))), run_id="run-2")
    env.run(env.params(list(addresses(4, start=3))), run_id="run-3")
    assert env.posted() == Counter({address: 1 for address in addresses(6).values()})
    reasons = Counter(row["reason"] for row in env.outcome("run-3"))
    assert reasons == {"already_sent": 2, "ok": 2}
    assert len(env.events()) == 6


def test_rerunning_a_finished_chunk_sends_nothing(env):
    env.contacts(addresses(2))
    params = env.params(list(addresses(2)))
    env.run(params, run_id="run-1")
    assert send_chunk(params, run_id="run-1", chunk_index=0, client=env.client()) == {}
    assert plan_resend(params, run_id="run-1") == []  # the plan task retried after the sends
    assert len(env.sim.sent_requests()) == 2


def test_force_resend_sends_a_deliberate_second_email(env):
    env.contacts(addresses(2))
    env.run(env.params(list(addresses(2))), run_id="run-1")
    env.run(env.params(["STR-000001"], force_resend=True), run_id="run-2")
    env.run(env.params(["STR-000001"], force_resend=True), run_id="run-2")  # retried: still one more
    assert env.posted() == {"delivered+1@example.gov": 2, "delivered+2@example.gov": 1}
    assert [row[:3] for row in env.ledger()] == [
        ("STR-000001", 0, "sent"),
        ("STR-000001", 1, "sent"),
        ("STR-000002", 0, "sent"),
    ]
    forced = env.conn.execute("SELECT forced FROM mailtrace.resend_request WHERE generation = 1").fetchone()
    assert forced == (True,)


def test_allow_list_restricts_recipients_outside_production(env, monkeypatch):
    monkeypatch.setenv("AIRFLOW_VAR_MAILTRACE_ENVIRONMENT", "staging")
    monkeypatch.setenv("AIRFLOW_VAR_MAILTRACE_RESEND_ALLOW_LIST", json.dumps(["Delivered+2@example.gov"]))
    env.contacts(addresses(3))
    env.run(env.params(list(addresses(3))), run_id="run-1")
    assert env.posted() == {"delivered+2@example.gov": 1}
    assert Counter(row["reason"] for row in env.outcome("run-1")) == {"ok": 1, "not_on_allow_list": 2}


def test_allow_list_from_s3(env, monkeypatch):
    env.s3.put_object(Bucket=env.bucket, Key="allow.txt", Body=b"delivered+3@example.gov\n")
    monkeypatch.setenv("AIRFLOW_VAR_MAILTRACE_ENVIRONMENT", "staging")
    monkeypatch.setenv("AIRFLOW_VAR_MAILTRACE_RESEND_ALLOW_LIST", f"s3://{env.bucket}/allow.txt")
    env.contacts(addresses(3))
    env.run(env.params(list(addresses(3))), run_id="run-1")
    assert env.posted() == {"delivered+3@example.gov": 1}


def test_unset_allow_list_outside_production_sends_to_nobody(env, monkeypatch):
    monkeypatch.setenv("AIRFLOW_VAR_MAILTRACE_ENVIRONMENT", "staging")
    env.contacts(addresses(1))
    with pytest.raises(ResendError, match="not_on_allow_list"):
        env.run(env.params(list(addresses(1))))
    assert env.sim.sent_requests() == []


# ------------------------------------------------------------------------------- kills and faults


def test_kill_between_send_and_record_then_retry_sends_once(env, monkeypatch):
    env.contacts(addresses(3))
    params = env.params(list(addresses(3)))
    chunks = plan_resend(params, run_id="run-1")
    record = resend.sending._record_sent
    calls = []

    def killed_after_second_post(conn, row, notification):
        calls.append(row.subject_id)
        if len(calls) == 2:
            raise Killed
        record(conn, row, notification)

    monkeypatch.setattr(resend.sending, "_record_sent", killed_after_second_post)
    with pytest.raises(Killed):
        send_chunk(params, run_id="run-1", chunk_index=chunks[0]["chunk_index"], client=env.client())
    assert len(env.sim.sent_requests()) == 2
    assert [row[2:] for row in env.ledger()] == [("sent", 1), ("claimed", 1), ("claimed", 0)]

    monkeypatch.setattr(resend.sending, "_record_sent", record)
    counts = send_chunk(params, run_id="run-1", chunk_index=0, client=env.client())
    assert counts == {"recovered": 1, "sent": 1}
    assert env.posted() == Counter({address: 1 for address in addresses(3).values()})
    assert ledger_counts(summarize_run(params, run_id="run-1")) == {"sent": 3, "failed": 0, "claimed": 0}
    assert len(env.events()) == 3


def test_row_left_claimed_by_a_killed_run_is_taken_over_by_a_retrigger(env, monkeypatch):
    env.contacts(addresses(2))
    params = env.params(list(addresses(2)))
    plan_resend(params, run_id="run-1")
    record = resend.sending._record_sent

    def killed(conn, row, notification):
        raise Killed

    monkeypatch.setattr(resend.sending, "_record_sent", killed)
    with pytest.raises(Killed):
        send_chunk(params, run_id="run-1", chunk_index=0, client=env.client())
    monkeypatch.setattr(resend.sending, "_record_sent", record)
    env.run(params, run_id="run-2")
    assert env.posted() == Counter({address: 1 for address in addresses(2).values()})
    assert {row[2] for row in env.ledger()} == {"sent"}
    owners = env.conn.execute("SELECT DISTINCT dag_run_id FROM mailtrace.resend_request").fetchall()
    assert owners == [("run-2",)]


def test_process_killed_with_sigkill_after_the_post_converges_on_retry(env):
    """A real kill: the task process dies (SIGKILL) right after Notify accepted the email."""
    env.contacts(addresses(2))
    params = env.params(list(addresses(2)))
    plan_resend(params, run_id="run-1")
    script = textwrap.dedent(
        f"""
        import os, signal
        from mailtrace import resend
        from mailtrace.resend import ResendParams, send_chunk

        def die(conn, row, notification):
            os.kill(os.getpid(), signal.SIGKILL)

        resend.sending._record_sent = die
        send_chunk(ResendParams(**{vars(params)!r}), run_id="run-1", chunk_index=0)
        """
    )
    child_env = {**os.environ, "PYTHONPATH": f"{REPO_ROOT / 'plugins'}{os.pathsep}{REPO_ROOT}"}
    result = subprocess.run([sys.executable, "-c", script], env=child_env, timeout=120, capture_output=True)
    assert result.returncode == -9, result.stderr.decode()[-2000:]
    assert len(env.sim.sent_requests()) == 1

    counts = send_chunk(params, run_id="run-1", chunk_index=0, client=env.client())
    assert counts == {"recovered": 1, "sent": 1}
    assert env.posted() == Counter({address: 1 for address in addresses(2).values()})


def test_ambiguous_500_not_accepted_is_looked_up_then_sent_once(env):
    env.contacts(addresses(1))
    env.sim.add_fault("status", status=500, path_prefix="/v2/notifications/email")
    params = env.params(list(addresses(1)))
    plan_resend(params, run_id="run-1")
    # The ambiguous answer is looked up once; not found, the row is left claimed: no second POST now.
    with pytest.raises(ResendError, match="1 emails left unresolved"):
        send_chunk(params, run_id="run-1", chunk_index=0, client=env.client())
    assert env.ledger() == [("STR-000001", 0, "claimed", 1)]
    # Airflow's retry before the settle delay: still not found, still nothing sent.
    with pytest.raises(ResendError, match="1 emails left unresolved"):
        send_chunk(params, run_id="run-1", chunk_index=0, client=env.client())
    assert env.sim.sent_requests() == []
    assert env.ledger() == [("STR-000001", 0, "claimed", 1)]
    # After the settle delay a lookup that still misses means Notify never took it: send it.
    env.settle_passed()
    assert send_chunk(params, run_id="run-1", chunk_index=0, client=env.client()) == {"sent": 1}
    assert ledger_counts(summarize_run(params, run_id="run-1")) == {"sent": 1, "failed": 0, "claimed": 0}
    assert env.posted() == {"delivered+1@example.gov": 1}
    assert env.ledger() == [("STR-000001", 0, "sent", 2)]


def test_ambiguous_502_stored_asynchronously_by_notify_gives_exactly_one_email(env):
    """Notify answered 502 but saved the email a little later: the first lookups miss it, none re-sends."""
    env.contacts(addresses(1))
    env.sim.add_fault("status", status=502, path_prefix="/v2/notifications/email")
    params = env.params(list(addresses(1)))
    plan_resend(params, run_id="run-1")
    with pytest.raises(ResendError, match="1 emails left unresolved"):
        send_chunk(params, run_id="run-1", chunk_index=0, client=env.client())
    with pytest.raises(ResendError, match="1 emails left unresolved"):
        send_chunk(params, run_id="run-1", chunk_index=0, client=env.client())  # a quick Airflow retry
    assert env.sim.sent_requests() == []

    # Notify's asynchronous save of the 502'd request completes.
    reference = f"resend:{INCIDENT}:registration:STR-000001:0"
    stored_id = str(uuid.uuid4())
    env.sim.add_notifications(
        [
            {
                "id": stored_id,
                "reference": reference,
                "email_address": "delivered+1@example.gov",
                "status": "sending",
                "created_at": datetime.now(UTC),
            }
        ]
    )
    assert send_chunk(params, run_id="run-1", chunk_index=0, client=env.client()) == {"recovered": 1}
    env.settle_passed()  # and nothing happens later either
    assert send_chunk(params, run_id="run-1", chunk_index=0, client=env.client()) == {}
    assert ledger_counts(summarize_run(params, run_id="run-1")) == {"sent": 1, "failed": 0, "claimed": 0}

    assert env.sim.sent_requests() == []  # no second POST was ever accepted
    at_notify = env.client().find_by_reference(reference)
    assert [notification["id"] for notification in at_notify] == [stored_id]  # exactly one email
    assert [(row[0], row[4], row[6]) for row in env.events()] == [("STR-000001", stored_id, "SENT")]
    assert env.ledger() == [("STR-000001", 0, "sent", 1)]


def test_ambiguous_broken_answer_after_acceptance_is_recovered_without_resending(env):
    env.contacts(addresses(2))
    env.sim.add_fault("truncated_json", path_prefix="/v2/notifications/email")
    summary = env.run(env.params(list(addresses(2))), run_id="run-1")
    assert ledger_counts(summary) == {"sent": 2, "failed": 0, "claimed": 0}
    assert env.posted() == Counter({address: 1 for address in addresses(2).values()})
    providers = {row[4] for row in env.events()}
    assert providers == {body["id"] for body in env.sim.sent_requests()}


def test_persistent_ambiguity_leaves_row_claimed_and_fails_the_chunk(env, monkeypatch):
    ambiguous_answers = 3
    env.contacts(addresses(1))
    env.sim.add_fault("status", status=503, count=ambiguous_answers, path_prefix="/v2/notifications/email")
    params = env.params(list(addresses(1)))
    plan_resend(params, run_id="run-1")
    with pytest.raises(ResendError, match="1 emails left unresolved"):
        send_chunk(params, run_id="run-1", chunk_index=0, client=env.client())
    with pytest.raises(ResendError, match="still unresolved"):
        summarize_run(params, run_id="run-1")
    # One POST per task attempt, each after the (here configured away) settle delay.
    monkeypatch.setenv("AIRFLOW_VAR_MAILTRACE_RESEND_SETTLE_SECONDS", "0")
    for attempt in range(2, ambiguous_answers + 1):
        with pytest.raises(ResendError, match="1 emails left unresolved"):
            send_chunk(params, run_id="run-1", chunk_index=0, client=env.client())
        assert env.ledger() == [("STR-000001", 0, "claimed", attempt)]
    assert send_chunk(params, run_id="run-1", chunk_index=0, client=env.client()) == {"sent": 1}
    assert env.posted() == {"delivered+1@example.gov": 1}


def test_refusal_of_one_email_is_a_row_outcome_and_the_others_still_go(env):
    env.contacts(addresses(2))
    env.sim.add_fault("status", status=400, count=1, path_prefix="/v2/notifications/email")
    summary = env.run(env.params(list(addresses(2))), run_id="run-1")
    assert ledger_counts(summary) == {"sent": 1, "failed": 1, "claimed": 0}
    assert sum(env.posted().values()) == 1


def test_every_email_refused_one_by_one_fails_the_run_saying_why(env):
    env.contacts(addresses(2))
    env.sim.add_fault("status", status=400, count=2, path_prefix="/v2/notifications/email")
    with pytest.raises(
        resend.ResendRefused, match=r"every email of the run was refused \(2 failed, none sent\)"
    ):
        env.run(env.params(list(addresses(2))), run_id="run-1")
    (failed,) = env.conn.execute(
        "SELECT failed FROM mailtrace.resend_run WHERE dag_run_id = 'run-1'"
    ).fetchone()
    assert failed == 2


def _systemic(env, params, run_id, client=None):
    """Plan and send the first chunk, which must stop at the first refusal; returns the error."""
    plan_resend(params, run_id=run_id)
    with pytest.raises(resend.SystemicRefusal) as raised:
        send_chunk(params, run_id=run_id, chunk_index=0, client=client)
    return str(raised.value)


def test_revoked_notify_key_fails_the_chunk_at_once_then_sends_once_fixed(env):
    from airflow.sdk.exceptions import AirflowFailException

    env.contacts(addresses(3))
    params = env.params(list(addresses(3)))
    revoked = NotifyClient(
        f"mailtrace_sim-{env.sim.service_id}-{uuid.uuid4()}", env.sim.base_url, backoff_base=0.01
    )
    requests_before = env.sim.stats()["requests"]
    message = _systemic(env, params, "run-1", client=revoked)
    assert "Notify refused the API key (revoked or wrong" in message
    assert env.sim.stats()["requests"] - requests_before == 1  # one refusal, not one per email
    assert issubclass(resend.SystemicRefusal, AirflowFailException)  # no retry would help
    assert [status for _, _, status, _ in env.ledger()] == ["claimed"] * 3
    # Cleared before the key is fixed: the look-up of the attempted row is refused the same way, at once.
    with pytest.raises(resend.SystemicRefusal, match="API key"):
        send_chunk(params, run_id="run-1", chunk_index=0, client=revoked)
    # Key fixed, the failed task cleared: every email goes, once.
    send_chunk(params, run_id="run-1", chunk_index=0, client=env.client())
    assert ledger_counts(summarize_run(params, run_id="run-1")) == {"sent": 3, "failed": 0, "claimed": 0}
    assert env.posted() == Counter(addresses(3).values())


def test_unknown_notify_template_fails_the_chunk_saying_so(env, monkeypatch):
    env.contacts(addresses(2))
    monkeypatch.setenv("AIRFLOW_VAR_MAILTRACE_NOTIFY_TEMPLATE_ID", "not-a-uuid")  # Notify answers 400
    message = _systemic(env, env.params(list(addresses(2))), "run-1", client=env.client())
    assert "Notify does not know the template (Variable mailtrace_notify_template_id)" in message
    assert env.sim.sent_requests() == []
    errors = env.conn.execute("SELECT DISTINCT error FROM mailtrace.resend_request WHERE error IS NOT NULL")
    assert ["template_id is not a valid UUID" in error for (error,) in errors] == [True]


def test_429s_are_retried_without_duplicates(env):
    env.contacts(addresses(5))
    env.sim.add_fault("status", status=429, count=4, retry_after=0, path_prefix="/v2/notifications/email")
    summary = env.run(env.params(list(addresses(5))), run_id="run-1")
    assert ledger_counts(summary) == {"sent": 5, "failed": 0, "claimed": 0}
    assert env.posted() == Counter({address: 1 for address in addresses(5).values()})
    assert env.sim.stats()["rate_limited"] == 4


def test_pacer_spaces_slots_across_senders(warehouse_dsn, env):
    """Two senders (two connections) sharing one rate: together they get one slot per interval."""
    import psycopg

    waits: list[float] = []
    with psycopg.connect(warehouse_dsn, autocommit=True) as other:
        pacers = [Pacer(env.conn, 60, sleep=waits.append), Pacer(other, 60, sleep=waits.append)]
        for n in range(6):
            pacers[n % 2].wait()
    # Nobody really slept, so slot k is about k seconds ahead of now: waits 1, 2, 3, 4, 5.
    assert len(waits) == 5
    assert [round(wait) for wait in waits] == [1, 2, 3, 4, 5]


def test_client_pacing_keeps_under_the_provider_limit(env):
    """With the simulator limited to R/min and a batch below R, pacing at R sends without any 429."""
    env.sim.configure(rate_limit_per_minute=600)
    env.contacts(addresses(20))
    env.run(env.params(list(addresses(20)), rate_per_minute=600, chunk_size=7), run_id="run-1")
    assert env.sim.stats()["rate_limited"] == 0
    assert env.posted() == Counter({address: 1 for address in addresses(20).values()})


# --------------------------------------------------------------------------------------- rendering


def test_html_part_escapes_script_and_text_part_stays_plain():
    rendered = resend.render_email(
        "error_resolved", "en", subject_type="registration", subject_id="<script>alert(1)</script>&"
    )
    assert "<script>" not in rendered.html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;&amp;" in rendered.html
    assert "<script>alert(1)</script>&" in rendered.text


@pytest.mark.parametrize("template", ["error_resolved", "submission_error"])
@pytest.mark.parametrize("language", ["en", "fr"])
def test_every_template_renders_a_single_line_subject(template, language):
    rendered = resend.render_email(
        template, language, subject_type="tax_return", subject_id="TR-2025-0001234"
    )
    assert "TR-2025-0001234" in rendered.subject and "\n" not in rendered.subject
    assert "TR-2025-0001234" in rendered.text and "TR-2025-0001234" in rendered.html


def test_subject_with_a_newline_is_refused(monkeypatch):
    from jinja2 import DictLoader, Environment

    templates = {
        "error_resolved.en.subject.txt.j2": "Fixed {{ subject_id }}",
        "error_resolved.en.txt.j2": "t",
        "error_resolved.en.html.j2": "h",
    }
    monkeypatch.setattr(
        resend.rendering,
        "_jinja_environment",
        lambda: Environment(loader=DictLoader(templates), autoescape=True),
    )
    with pytest.raises(ValueError, match="single line"):
        resend.render_email(
            "error_resolved", "en", subject_type="registration", subject_id="x\r\nBcc: e@x.com"
        )


# --------------------------------------------------------------------------------------------- DAG


def test_dag_parses_with_params_and_mapping():
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(REPO_ROOT / "dags" / "mailtrace_resend.py"))
    assert bag.import_errors == {}
    dag = bag.dags["mailtrace_resend"]
    assert type(dag.timetable).__name__ == "NullTimetable"  # schedule=None: manual only
    assert set(dag.task_ids) == {"validate_and_plan", "send_chunk", "summarize"}
    assert dag.params["dry_run"] is True
    assert dag.params.get_param("incident_id").schema["allOf"] == [{"pattern": resend.INCIDENT_ID_PATTERN}]
    assert dag.default_args["owner"] and dag.default_args["retries"] >= 1
    assert dag.tags
    send = dag.get_task("send_chunk")
    # Its retry must come after the settle delay, or it can only defer an ambiguous row again.
    assert send.retries >= 1
    assert send.retry_delay.total_seconds() > resend.DEFAULT_SETTLE_SECONDS


def test_the_form_offers_what_the_checks_accept_and_takes_an_id_type_added_by_variable(monkeypatch):
    """The form's choices come from the module's values; id_type is free text checked at the run's start."""
    import re

    from airflow.dag_processing.dagbag import DagBag

    from mailtrace.id_list import DEFAULT_ID_PATTERNS

    dag = DagBag(dag_folder=str(REPO_ROOT / "dags" / "mailtrace_resend.py")).dags["mailtrace_resend"]
    id_type = dag.params.get_param("id_type").schema
    assert "enum" not in id_type and id_type["examples"] == list(DEFAULT_ID_PATTERNS)
    (rule,) = id_type["allOf"]
    assert re.search(rule["pattern"], "permit") and not re.search(rule["pattern"], "permit\n")
    assert dag.params.get_param("language").schema["enum"] == list(resend.LANGUAGES)
    assert dag.params.get_param("chunk_size").schema["allOf"] == [
        {"minimum": 1, "maximum": resend.MAX_CHUNK_SIZE}
    ]

    mapping = {"incident_id": "INC-1", "id_type": "permit", "inline_ids": "PRM-1"}
    with pytest.raises(ResendInputError, match="id_type must be one of"):
        ResendParams.from_mapping(mapping)
    monkeypatch.setenv("AIRFLOW_VAR_MAILTRACE_RESEND_ID_PATTERNS", json.dumps({"permit": r"\APRM-\d+\Z"}))
    assert ResendParams.from_mapping(mapping).id_type == "permit"


# -------------------------------------------------------------------------------------------- SES


@pytest.fixture
def ses(env, aws, monkeypatch):
    """`env` switched to SES: a verified sender unique to the test, and what moto's SES accepted from it."""
    sender = f"resend-{uuid.uuid4().hex[:10]}@example.gov"
    aws.client("ses").verify_email_identity(EmailAddress=sender)
    monkeypatch.setenv("AIRFLOW_VAR_MAILTRACE_RESEND_PROVIDER", "ses")
    monkeypatch.setenv("AIRFLOW_VAR_MAILTRACE_SES_SENDER", sender)

    class Ses:
        def __init__(self):
            self.sender = sender

        def messages(self) -> list[tuple[str, EmailMessage]]:
            """(SES MessageId, parsed message) of everything SES accepted from this test's sender."""
            with urllib.request.urlopen(f"{aws.endpoint}/moto-api/data.json") as answer:  # noqa: S310
                backend = json.load(answer)["ses"]
            return [
                (raw["id"], message_from_string(raw["raw_data"], policy=default_policy))
                for raw in backend["RawMessage"]
                if raw["source"] == sender
            ]

        def sent_to(self) -> Counter:
            return Counter(message["To"] for _, message in self.messages())

    return Ses()


def test_ses_sends_text_and_html_once_and_records_the_message_id(env, ses):
    env.contacts(addresses(2))
    summary = env.run(env.params(list(addresses(2)), language="fr"), run_id="run-1")
    assert ledger_counts(summary) == {"sent": 2, "failed": 0, "claimed": 0}
    assert ses.sent_to() == Counter(addresses(2).values())
    assert env.sim.sent_requests() == []  # nothing went through Notify

    messages = dict(ses.messages())
    events = env.events()
    assert {row[4] for row in events} == set(messages)  # provider_reference = SES MessageId
    for subject_id, ntype, address, provider, message_id, client_ref, local_status, event_id in events:
        assert (ntype, provider, local_status) == ("ERROR_RESOLVED", "ses", "SENT")
        assert client_ref == event_id == f"resend:{INCIDENT}:registration:{subject_id}:0"
        message = messages[message_id]
        assert message["To"] == address and message["From"] == ses.sender
        assert message["X-Mailtrace-Reference"] == client_ref
        assert subject_id in message["Subject"]
        assert message.get_content_type() == "multipart/alternative"
        parts = {part.get_content_type(): part.get_content() for part in message.iter_parts()}
        assert set(parts) == {"text/plain", "text/html"}
        assert subject_id in parts["text/plain"] and subject_id in parts["text/html"]
        assert "déclaration" in parts["text/plain"] or "inscription" in parts["text/plain"]
    providers = env.conn.execute("SELECT DISTINCT provider FROM mailtrace.resend_request").fetchall()
    assert providers == [("ses",)]

    # Re-triggering the same list, and re-running the finished chunk, send nothing.
    env.run(env.params(list(addresses(2))), run_id="run-2")
    assert send_chunk(env.params(list(addresses(2))), run_id="run-1", chunk_index=0) == {}
    assert ses.sent_to() == Counter(addresses(2).values())
    assert {row["reason"] for row in env.outcome("run-2")} == {"already_sent"}


def test_ses_kill_between_send_and_record_is_unknown_and_never_resent(env, ses, monkeypatch):
    env.contacts(addresses(2))
    params = env.params(list(addresses(2)))
    plan_resend(params, run_id="run-1")
    record = resend.sending._record_sent

    def killed(conn, row, notification):
        raise Killed

    monkeypatch.setattr(resend.sending, "_record_sent", killed)
    with pytest.raises(Killed):
        send_chunk(params, run_id="run-1", chunk_index=0)
    assert ses.sent_to() == {"delivered+1@example.gov": 1}  # SES took it; the ledger never heard

    monkeypatch.setattr(resend.sending, "_record_sent", record)
    assert send_chunk(params, run_id="run-1", chunk_index=0) == {"unknown": 1, "sent": 1}  # Airflow's retry
    assert send_chunk(params, run_id="run-1", chunk_index=0) == {}  # and another: nothing left to do
    assert ses.sent_to() == Counter(addresses(2).values())  # STR-000001 was not sent a second time
    assert [row[2:] for row in env.ledger()] == [("unknown", 1), ("sent", 1)]

    with pytest.raises(ResendError, match=r"1 emails may or may not have been sent.*STR-000001"):
        summarize_run(params, run_id="run-1")
    audit = env.conn.execute("SELECT sent, unknown, unresolved FROM mailtrace.resend_run").fetchone()
    assert audit == (1, 1, 0)
    decided = {row["subject_id"]: (row["decision"], row["reason"]) for row in env.outcome("run-1")}
    assert decided == {"STR-000001": ("unknown", "send_unknown"), "STR-000002": ("send", "ok")}
    # The run's counts follow the rewritten CSV: one send is now unknown.
    counts = run_counts(env.conn, ["run-1"])["run-1"]
    assert counts["reasons"] == {"send": {"ok": 1}, "unknown": {"send_unknown": 1}}
    assert (counts["sent"], counts["unknown"], counts["claimed"]) == (1, 1, 0)

    # A re-trigger leaves it to a human; force_resend is the human's deliberate second email.
    env.run(params, run_id="run-2")
    decided = {row["subject_id"]: row["reason"] for row in env.outcome("run-2")}
    assert decided == {"STR-000001": "send_unknown", "STR-000002": "already_sent"}
    assert ses.sent_to() == Counter(addresses(2).values())
    env.run(env.params(["STR-000001"], force_resend=True), run_id="run-3")
    assert ses.sent_to() == {"delivered+1@example.gov": 2, "delivered+2@example.gov": 1}
    assert [row[:3] for row in env.ledger()] == [
        ("STR-000001", 0, "unknown"),
        ("STR-000001", 1, "sent"),
        ("STR-000002", 0, "sent"),
    ]


def test_ses_row_left_open_by_a_killed_run_is_not_taken_over_by_a_retrigger(env, ses, monkeypatch):
    env.contacts(addresses(1))
    params = env.params(list(addresses(1)))
    plan_resend(params, run_id="run-1")

    def killed(conn, row, notification):
        raise Killed

    record = resend.sending._record_sent
    monkeypatch.setattr(resend.sending, "_record_sent", killed)
    with pytest.raises(Killed):
        send_chunk(params, run_id="run-1", chunk_index=0)
    monkeypatch.setattr(resend.sending, "_record_sent", record)

    assert plan_resend(params, run_id="run-2") == []
    assert [(row["subject_id"], row["reason"]) for row in env.outcome("run-2")] == [
        ("STR-000001", "send_unknown")
    ]
    assert env.ledger() == [("STR-000001", 0, "unknown", 1)]
    assert ses.sent_to() == {"delivered+1@example.gov": 1}


def test_unverified_ses_sender_fails_the_chunk_saying_so_and_a_retrigger_sends(env, ses, aws, monkeypatch):
    env.contacts(addresses(2))
    unverified = f"nobody-{uuid.uuid4().hex[:8]}@example.gov"
    monkeypatch.setenv("AIRFLOW_VAR_MAILTRACE_SES_SENDER", unverified)
    message = _systemic(env, env.params(list(addresses(2))), "run-1")
    assert "the SES sender is not verified (Variable mailtrace_ses_sender)" in message
    assert unverified not in message
    error = env.conn.execute("SELECT error FROM mailtrace.resend_request WHERE attempts = 1").fetchone()[0]
    assert "MessageRejected" in error and unverified not in error

    monkeypatch.setenv("AIRFLOW_VAR_MAILTRACE_SES_SENDER", ses.sender)
    env.run(env.params(list(addresses(2))), run_id="run-2")  # SES said no for sure: sending again is safe
    assert ses.sent_to() == Counter(addresses(2).values())
    assert [status for _, _, status, _ in env.ledger()] == ["sent", "sent"]


class _SandboxSes(BaseHTTPRequestHandler):
    """An SES endpoint in the sandbox: it refuses every recipient that is not verified, naming it."""

    def do_POST(self):  # noqa: N802 - http.server's hook name
        from urllib.parse import parse_qs

        form = parse_qs(self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode())
        raw = base64.b64decode(form["RawMessage.Data"][0]).decode()
        recipient = message_from_string(raw)["To"]
        body = (
            '<ErrorResponse xmlns="http://ses.amazonaws.com/doc/2010-12-01/"><Error><Type>Sender</Type>'
            "<Code>MessageRejected</Code><Message>Email address is not verified. The following identities "
            f"failed the check in region CA-CENTRAL-1: {recipient}</Message></Error>"
            "<RequestId>x</RequestId></ErrorResponse>"
        ).encode()
        self.send_response(400)
        self.send_header("Content-Type", "text/xml")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def test_ses_sandbox_fails_the_chunk_saying_so_and_logs_no_address(env, ses, monkeypatch, caplog):
    env.contacts(addresses(2))
    params = env.params(list(addresses(2)))
    plan_resend(params, run_id="run-1")
    server = ThreadingHTTPServer(("127.0.0.1", 0), _SandboxSes)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    sandbox = json.loads(os.environ["AIRFLOW_CONN_AWS_DEFAULT"])
    sandbox["extra"]["endpoint_url"] = f"http://127.0.0.1:{server.server_address[1]}"
    monkeypatch.setenv("AIRFLOW_CONN_AWS_DEFAULT", json.dumps(sandbox))
    try:
        with caplog.at_level("DEBUG"), pytest.raises(resend.SystemicRefusal) as raised:
            send_chunk(params, run_id="run-1", chunk_index=0)
    finally:
        server.shutdown()
        server.server_close()
    assert "SES is in the sandbox" in str(raised.value)
    stored = [error for (error,) in env.conn.execute("SELECT error FROM mailtrace.resend_request")]
    assert any("d***@example.gov" in (error or "") for error in stored)
    everything = caplog.text + str(raised.value) + " ".join(error or "" for error in stored)
    for address in addresses(2).values():
        assert address not in everything


class _FailingSes(BaseHTTPRequestHandler):
    """An SES endpoint that answers every call with a 503 (the call may or may not have been accepted)."""

    calls = 0

    def do_POST(self):  # noqa: N802 - http.server's hook name
        type(self).calls += 1
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        body = (
            b'<ErrorResponse xmlns="http://ses.amazonaws.com/doc/2010-12-01/"><Error><Type>Receiver</Type>'
            b"<Code>ServiceUnavailable</Code><Message>try later</Message></Error>"
            b"<RequestId>x</RequestId></ErrorResponse>"
        )
        self.send_response(503)
        self.send_header("Content-Type", "text/xml")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def test_ses_5xx_is_unknown_after_one_call_without_botocore_retries(env, ses, monkeypatch):
    _FailingSes.calls = 0
    env.contacts(addresses(1))
    params = env.params(list(addresses(1)))
    plan_resend(params, run_id="run-1")
    server = ThreadingHTTPServer(("127.0.0.1", 0), _FailingSes)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    moto_connection = os.environ["AIRFLOW_CONN_AWS_DEFAULT"]
    try:
        failing = json.loads(moto_connection)
        failing["extra"]["endpoint_url"] = f"http://127.0.0.1:{server.server_address[1]}"
        monkeypatch.setenv("AIRFLOW_CONN_AWS_DEFAULT", json.dumps(failing))
        assert send_chunk(params, run_id="run-1", chunk_index=0) == {"unknown": 1}
    finally:
        monkeypatch.setenv("AIRFLOW_CONN_AWS_DEFAULT", moto_connection)
        server.shutdown()
        server.server_close()
    assert _FailingSes.calls == 1  # botocore did not repeat the call on its own
    assert env.ledger() == [("STR-000001", 0, "unknown", 1)]
    error = env.conn.execute("SELECT error FROM mailtrace.resend_request").fetchone()[0]
    assert "503" in error and "ServiceUnavailable" in error
    with pytest.raises(ResendError, match="may or may not have been sent"):
        summarize_run(params, run_id="run-1")


def test_unknown_provider_setting_is_refused_before_claiming(env, monkeypatch):
    monkeypatch.setenv("AIRFLOW_VAR_MAILTRACE_RESEND_PROVIDER", "smtp")
    env.contacts(addresses(1))
    with pytest.raises(ResendError, match="mailtrace_resend_provider"):
        plan_resend(env.params(list(addresses(1))), run_id="run-1")
    assert env.ledger() == []


def test_ses_without_a_sender_is_refused_before_claiming(env, monkeypatch):
    monkeypatch.setenv("AIRFLOW_VAR_MAILTRACE_RESEND_PROVIDER", "ses")
    env.contacts(addresses(1))
    with pytest.raises(ResendError, match="mailtrace_ses_sender"):
        plan_resend(env.params(list(addresses(1))), run_id="run-1")
    assert env.ledger() == []


# ------------------------------------------------------------------------- bad input fails at once


@pytest.fixture(scope="module")
def airflow_metadata_db():
    """The session's Airflow metadata database (SQLite in the temporary AIRFLOW_HOME), migrated once."""
    airflow = Path(sys.executable).with_name("airflow")
    subprocess.run([str(airflow), "db", "migrate"], check=True, capture_output=True, env=os.environ.copy())


@pytest.mark.parametrize(
    ("conf", "says"),
    [
        ({}, "give exactly one of the ID list in S3 (ids_s3_uri) and the IDs typed in (inline_ids)"),
        ({"ids_s3_uri": "s3://elsewhere/reports/2026-W02.csv"}, "ids_s3_uri must be under s3://"),
    ],
)
def test_bad_input_fails_the_dag_run_at_once_without_retries(airflow_metadata_db, env, tmp_path, conf, says):
    """Through Airflow (`airflow dags test`): the task fails on its first try and its log says what to fix.

    With a retry the run would wait a minute or more here (the subprocess's timeout bounds the test).
    """
    airflow = Path(sys.executable).with_name("airflow")
    run_conf = json.dumps({"incident_id": INCIDENT, "dry_run": False, **conf})
    completed = subprocess.run(
        [str(airflow), "dags", "test", "mailtrace_resend", "-c", run_conf],
        env={
            **os.environ,
            "AIRFLOW__CORE__DAGS_FOLDER": str(REPO_ROOT / "dags"),
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO_ROOT / "plugins"),
        },
        capture_output=True,
        text=True,
        timeout=150,
    )
    log = completed.stdout + completed.stderr
    assert completed.returncode != 0, log[-3000:]
    assert says in log, log[-3000:]
    assert "up_for_retry" not in log.lower() and "UP_FOR_RETRY" not in log
    assert env.sim.sent_requests() == []


def test_input_errors_fail_without_retries_and_transient_ones_retry(env, monkeypatch):
    from airflow.sdk.exceptions import AirflowFailException

    env.contacts(addresses(2))
    with pytest.raises(AirflowFailException, match="nothing to send"):
        plan_resend(env.params(["nonsense", "=1+1"]), run_id="run-nothing")
    with pytest.raises(AirflowFailException, match="max_recipients=1"):
        plan_resend(env.params(list(addresses(2)), max_recipients=1), run_id="run-many")
    with pytest.raises(AirflowFailException, match="does not exist"):
        plan_resend(
            env.params(["x"], inline_ids=None, ids_s3_uri=f"s3://{env.bucket}/resend-requests/x.csv"),
            run_id="run-missing",
        )
    # A database that does not answer is transient: a plain error, which Airflow retries.
    env.conn.close()
    monkeypatch.setenv("AIRFLOW_CONN_MAILTRACE_WAREHOUSE", "postgresql://nobody@127.0.0.1:9/nowhere")
    with pytest.raises(Exception) as raised:
        plan_resend(env.params(list(addresses(1))), run_id="run-db-down")
    assert not isinstance(raised.value, AirflowFailException)
