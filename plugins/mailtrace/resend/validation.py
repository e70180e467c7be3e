"""Deciding every row of an ID list: send, skip or reject, with a reason."""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

import psycopg

from mailtrace.addresses import address_problem
from mailtrace.id_list import (
    DEFAULT_ID_PATTERNS,
    DEFAULT_MAX_BYTES,
    ID_TYPE_DESCRIPTIONS,
    IdRow,
    decode_id_list,
    id_key,
    id_spellings,
    parse_id_list,
    parse_inline_ids,
)
from mailtrace.paths import read_sql
from mailtrace.privacy import mask_email
from mailtrace.resend.constants import _MAX_ID_CHARS, REQUESTS_PREFIX
from mailtrace.resend.errors import ResendInputError
from mailtrace.resend.params import ResendParams
from mailtrace.resend.states import DecisionKind, Reason
from mailtrace.resend.storage import read_s3_object
from mailtrace.s3 import split_s3_uri
from mailtrace.settings import required_setting, setting


@dataclass
class Decision:
    """What happens to one input row, and why (one line of the outcome CSV)."""

    row: IdRow
    decision: str = DecisionKind.SEND
    reason: str = "ok"
    detail: str = ""
    email: str | None = None

    def settle(self, decision: str, reason: str, detail: str = "") -> None:
        self.decision, self.reason, self.detail = decision, reason, detail

    @property
    def pending(self) -> bool:
        return self.decision == DecisionKind.SEND

    def csv_row(self) -> list[object]:
        recipient = mask_email(self.email) if self.email else ""
        return [
            self.row.line,
            self.row.raw,
            self.row.subject_id,
            self.decision,
            self.reason,
            self.detail,
            recipient,
        ]


def ids_prefix() -> str:
    """Where uploaded ID lists may be read from: Variable `mailtrace_resend_ids_prefix` (an s3:// prefix),
    by default `s3://<mailtrace_report_bucket>/resend-requests/`.

    The AWS connection can read much more than ID lists (reports, the SES archive): a list read from
    anywhere else would be taken for IDs, e.g. a failed-notification report's registration_number column.
    """
    value = setting("resend_ids_prefix")
    if not value:
        value = f"s3://{required_setting('report_bucket', 'the resend')}/{REQUESTS_PREFIX}/"
    bucket, key_prefix = split_s3_uri(value)
    if not value.startswith("s3://") or not bucket:
        raise ResendInputError(
            f"Variable mailtrace_resend_ids_prefix must be an s3://bucket/prefix/ URI (got {value[:80]!r})"
        )
    # A prefix ends at a folder boundary: "resend-requests" must not let "resend-requests-old/" in.
    return f"s3://{bucket}/{key_prefix.rstrip('/')}/" if key_prefix.strip("/") else f"s3://{bucket}/"


def check_ids_uri(uri: str) -> None:
    """Refuse an `ids_s3_uri` outside the allowed prefix, naming the prefix to upload under."""
    allowed = ids_prefix()
    _, key = split_s3_uri(uri)
    if not uri.startswith(allowed) or any(part in (".", "..") for part in key.split("/")):
        raise ResendInputError(
            f"ids_s3_uri must be under {allowed} (got {uri[:200]!r}); upload the list to "
            f"{allowed}<incident_id>/<file>.csv"
        )


def read_id_rows(params: ResendParams) -> list[IdRow]:
    max_bytes = setting("resend_max_list_bytes")
    max_rows = setting("resend_max_list_rows")
    if params.inline_ids is not None:
        return parse_inline_ids(str(params.inline_ids), max_bytes=max_bytes, max_rows=max_rows)
    check_ids_uri(params.ids_s3_uri)
    data = read_s3_object(params.ids_s3_uri, max_bytes=max_bytes)
    return parse_id_list(decode_id_list(data, max_bytes=max_bytes), id_type=params.id_type, max_rows=max_rows)


def malformed_detail(subject_type: str, pattern: str) -> str:
    """Why an ID was refused, in words when the type is a built-in one with its default pattern."""
    if DEFAULT_ID_PATTERNS.get(subject_type) == pattern and subject_type in ID_TYPE_DESCRIPTIONS:
        words, examples = ID_TYPE_DESCRIPTIONS[subject_type]
        return f"not {words} (e.g. {examples[0]})"
    return f"does not match {pattern}"


def validate_rows(
    conn: psycopg.Connection, rows: list[IdRow], *, subject_type: str, pattern: str
) -> list[Decision]:
    """Decide every row against the ID pattern, earlier rows, mailtrace.contact and flagged addresses."""
    id_regex = re.compile(pattern)
    decisions = [Decision(row) for row in rows]
    first_line: dict[str, int] = {}
    for decision in decisions:
        subject_id = decision.row.subject_id
        if decision.row.problem:
            decision.settle(DecisionKind.REJECT, *decision.row.problem)
        elif len(subject_id) > _MAX_ID_CHARS or not id_regex.fullmatch(subject_id):
            decision.settle(DecisionKind.REJECT, Reason.MALFORMED_ID, malformed_detail(subject_type, pattern))
        elif id_key(subject_id) in first_line:
            decision.settle(
                DecisionKind.SKIP, Reason.DUPLICATE, f"same ID as line {first_line[id_key(subject_id)]}"
            )
        else:
            first_line[id_key(subject_id)] = decision.row.line
    candidates = [d for d in decisions if d.pending]
    contacts = _contacts(conn, subject_type, [d.row.subject_id for d in candidates])
    stored_by_key = {id_key(stored): stored for stored in contacts}
    for decision in candidates:
        subject_id = decision.row.subject_id
        stored_id = subject_id if subject_id in contacts else stored_by_key.get(id_key(subject_id))
        if stored_id is None:
            decision.settle(
                DecisionKind.REJECT, Reason.UNKNOWN_ID, f"no {subject_type} with this ID in mailtrace.contact"
            )
        elif stored_id != subject_id:  # a UUID written in another letter case
            decision.row = replace(decision.row, subject_id=stored_id)
    candidates = [d for d in candidates if d.pending]
    flagged = _flagged_addresses(conn, subject_type, [d.row.subject_id for d in candidates])
    for decision in candidates:
        subject_id = decision.row.subject_id
        email = (contacts[subject_id] or "").strip()
        if not email:
            decision.settle(DecisionKind.REJECT, Reason.NO_CONTACT_EMAIL, "the contact has no email address")
            continue
        decision.email = email
        problem = address_problem(email)
        if problem:
            decision.settle(DecisionKind.REJECT, Reason.INVALID_ADDRESS, problem)
        elif subject_id in flagged and flagged[subject_id][0].lower() == email.lower():
            decision.settle(
                DecisionKind.REJECT, Reason.FLAGGED_ADDRESS, f"address flagged: {flagged[subject_id][1]}"
            )
    return decisions


def _contacts(conn: psycopg.Connection, subject_type: str, ids: list[str]) -> dict[str, str | None]:
    """The address of record per subject ID as the application stores it (a UUID looked up in any case)."""
    spellings = list(dict.fromkeys(spelling for subject_id in ids for spelling in id_spellings(subject_id)))
    return dict(conn.execute(read_sql("resend/contacts.sql"), (subject_type, spellings)).fetchall())


def _flagged_addresses(conn: psycopg.Connection, subject_type: str, ids: list[str]) -> dict[str, tuple]:
    """Flagged (email, failure_reason) per subject, when the deployment has mailtrace.flagged_address."""
    exists = conn.execute(read_sql("resend/flagged_table_exists.sql")).fetchone()[0]
    if not exists:
        return {}
    rows = conn.execute(
        read_sql("resend/flagged_addresses.sql"),
        (subject_type, ids),
    ).fetchall()
    return {subject_id: (email or "", reason) for subject_id, email, reason in rows}


def load_allow_list() -> frozenset[str] | None:
    """Who may receive mail outside production (lower-cased addresses); None in production.

    Variable `mailtrace_resend_allow_list`: a JSON list of addresses, a comma-separated string, or the
    s3:// URI of a text file of addresses. Unset outside production means nobody may receive mail.
    """
    if setting("environment").lower() == "production":
        return None
    value = setting("resend_allow_list")
    if isinstance(value, str) and value.startswith("s3://"):
        text = decode_id_list(read_s3_object(value, max_bytes=DEFAULT_MAX_BYTES))
        entries = re.split(r"[\s,;]+", text)
    elif isinstance(value, str):
        entries = value.split(",")
    elif isinstance(value, list):
        entries = value
    else:
        raise ResendInputError(
            "Variable mailtrace_resend_allow_list must be a JSON list, a string or an s3:// URI"
        )
    return frozenset(str(entry).strip().lower() for entry in entries if str(entry).strip())


def apply_allow_list(decisions: list[Decision], allow_list: frozenset[str] | None) -> None:
    if allow_list is None:
        return
    for decision in decisions:
        if decision.pending and decision.email.lower() not in allow_list:
            decision.settle(
                DecisionKind.SKIP, Reason.NOT_ON_ALLOW_LIST, "non-production: address not on the allow-list"
            )
