"""Resend: tell an uploaded list of people, once each, that an incident is resolved (DAG mailtrace_resend).

Three steps, each safe to re-run:

1. `plan_resend` reads and validates the list, decides every row (send, skip or reject, with a
   reason), writes that decision as the outcome CSV to S3 and claims the rows to send in the ledger
   `mailtrace.resend_request` (one committed row per (incident, subject, generation)).
2. `send_chunk` sends the claimed rows of one chunk through the row's provider: GC Notify (the
   default) or Amazon SES (Variable `mailtrace_resend_provider` = `ses`). The claim is committed
   before the provider is called and carries a deterministic `reference`; before each call the
   attempt counter, the call's start time (`last_attempt_at`) and `attempt_open` are committed.
3. `summarize_run` counts what happened and fails the run while any row is left unresolved
   (`claimed`) or needs a human (`unknown`).

Exactly once, per provider:

* GC Notify has a lookup by `reference`. A row with an earlier attempt is looked up first, so a task
  killed between the send and the record finds the email Notify already has and records it. After an
  ambiguous answer (5xx, timeout, garbled body) the row is looked up once and, if not found, left
  claimed: the same attempt never POSTs again, because Notify may store an accepted email
  asynchronously and an immediate lookup can miss it. The task fails and Airflow retries it; the row
  is sent again only if the lookup still misses and at least the settle delay (Variable
  `mailtrace_resend_settle_seconds`, default 120) has passed since the ambiguous call.
* SES has no lookup by reference, so exactly-once comes from the ledger alone. A call whose outcome
  cannot be known (5xx, timeout, connection dropped after sending, or a task killed between the call
  and the record: `attempt_open` still set at the next attempt) is never repeated automatically: the
  row becomes `unknown`. `summarize_run` reports it (audit row `resend_run.unknown`, the run's outcome
  CSV, the run fails), and a later trigger skips it (reason `send_unknown`) unless `force_resend` is
  set, which sends a new generation once a human has decided the person should get the email. SES
  calls are made without botocore's own retries, which would repeat an ambiguous call blindly;
  throttling (a certain refusal) is retried here. Sender: Variable `mailtrace_ses_sender`; optional
  configuration set: `mailtrace_ses_configuration_set`; credentials: connection `aws_default`.

Sends from every chunk and every run reserve their slot in `mailtrace.send_pacer` (one slot line
per provider), so parallel chunks together stay at the requested rate; the Notify client's own 429
handling and the SES throttling retry cover the rest.
"""

from __future__ import annotations

import csv
import email.policy
import functools
import io
import json
import logging
import re
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import formatdate, parseaddr
from typing import Any

import psycopg
from airflow.sdk.exceptions import AirflowFailException
from psycopg.rows import dict_row

from mailtrace.id_list import (
    DEFAULT_ID_PATTERNS,
    DEFAULT_MAX_BYTES,
    DEFAULT_MAX_ROWS,
    IdListError,
    IdRow,
    decode_id_list,
    neutralise_cell,
    parse_id_list,
    parse_inline_ids,
    to_csv,
)
from mailtrace.paths import TEMPLATES_DIR
from mailtrace.privacy import library_bodies_kept_out_of_logs, mask_email, mask_text
from mailtrace.providers.gc_notify import (
    PROVIDER,
    AmbiguousSendError,
    NotifyApiError,
    NotifyClient,
    parse_timestamp,
)
from mailtrace.providers.ses import PROVIDER as SES_PROVIDER
from mailtrace.settings import get_setting
from mailtrace.warehouse import connect, drop_session_if_client_vanishes

log = logging.getLogger(__name__)

AWS_CONN_ID = "aws_default"
NOTIFICATION_TYPES = {"error_resolved": "ERROR_RESOLVED", "submission_error": "SUBMISSION_ERROR"}
LANGUAGES = ("en", "fr")
# How each id_type is named in the email. The French nouns are all feminine, which the templates rely on.
ID_LABELS = {
    "en": {"registration": "registration", "application": "application", "tax_return": "tax return"},
    "fr": {"registration": "inscription", "application": "demande", "tax_return": "déclaration de revenus"},
}
# Anchored at both ends without `$` (which also matches before a final newline, so "INC-1\n" passed) and
# without \A/\Z (the trigger form's JavaScript regexes lack them): the lookahead means "nothing follows".
INCIDENT_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}(?![\s\S])"
# GC Notify allows 1,000 requests a minute per API key; stay under it by default.
DEFAULT_RATE_PER_MINUTE = 900
MAX_CHUNK_SIZE = 1000
OUTCOME_PREFIX = "resend-outcomes"
# Where ops upload ID lists by default (see `ids_prefix`).
REQUESTS_PREFIX = "resend-requests"
OUTCOME_HEADER = ["line", "input_value", "subject_id", "decision", "reason", "detail", "recipient"]
PACER_NAME = PROVIDER
PROVIDERS = (PROVIDER, SES_PROVIDER)
# Advisory lock class for "this reference is being sent right now" (second key: hash of the reference).
SEND_LOCK_CLASS = 7_301_200
# After an ambiguous Notify answer, wait at least this long before a lookup miss may lead to a new send
# (Notify can store an accepted notification asynchronously). Variable mailtrace_resend_settle_seconds.
DEFAULT_SETTLE_SECONDS = 120
# SES throttling ("Maximum sending rate exceeded") is a certain refusal: retried in the task this often.
SES_THROTTLE_TRIES = 4
SES_THROTTLE_BACKOFF_SECONDS = 1.0
_SES_THROTTLE_CODES = frozenset({"Throttling", "ThrottlingException", "TooManyRequestsException"})
UNKNOWN_DETAIL = (
    "an earlier SES call may have delivered this email and SES cannot be asked: check (SES sending "
    "statistics, the recipient), then trigger the ID with force_resend if it should be sent"
)
_MAX_ID_CHARS = 100
_UNSAFE_KEY_CHARS = re.compile(r"[^A-Za-z0-9._-]")
_SUBJECT_FORBIDDEN = re.compile(r"[\r\n\x0b\x0c\x85\u2028\u2029]")


class ResendError(RuntimeError):
    """The run cannot go on; the message says why and what to do."""


class SystemicRefusal(AirflowFailException, ResendError):
    """The provider refused the resend as a whole (key revoked, template unknown, sender not verified,
    sandbox): every other email would be refused the same way, and so would a retry.

    The chunk stops at the first such answer and fails without retries; its rows stay claimed, so once
    the cause is fixed, clearing the failed tasks (or triggering again) sends them.
    """


class ResendRefused(AirflowFailException, ResendError):
    """Every email of the run was refused one by one: nothing was sent, and a retry would change nothing."""


class ResendInputError(AirflowFailException, ResendError, ValueError):
    """A parameter, the uploaded list or a setting is wrong: the task fails at once, without retries.

    A retry would read the same input and fail the same way, only later, while (one run at a time) the
    corrected run waits behind it. The message says what to fix.
    """


# ------------------------------------------------------------------------------------------ params


@dataclass(frozen=True)
class ResendParams:
    """What ops asked for in the trigger form, checked again here (the form is not the only caller)."""

    incident_id: str
    id_type: str
    template: str = "error_resolved"
    language: str = "en"
    ids_s3_uri: str | None = None
    inline_ids: str | None = None
    dry_run: bool = True
    force_resend: bool = False
    max_recipients: int = 500
    rate_per_minute: int = DEFAULT_RATE_PER_MINUTE
    chunk_size: int = 100

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> ResendParams:
        known = {name: values[name] for name in cls.__dataclass_fields__ if name in values}
        for name in ("ids_s3_uri", "inline_ids"):
            if isinstance(known.get(name), str) and not known[name].strip():
                known[name] = None
        missing = [name for name in ("incident_id", "id_type") if name not in known]
        if missing:
            raise ResendInputError(f"invalid resend parameters: {', '.join(missing)} missing")
        params = cls(**known)
        params.check(id_patterns())
        return params

    def check(self, patterns: Mapping[str, str]) -> None:
        problems = []
        if not isinstance(self.incident_id, str) or not re.match(INCIDENT_ID_PATTERN, self.incident_id):
            problems.append(f"incident_id must match {INCIDENT_ID_PATTERN}")
        if self.id_type not in patterns:
            problems.append(f"id_type must be one of {sorted(patterns)}")
        if self.template not in NOTIFICATION_TYPES:
            problems.append(f"template must be one of {sorted(NOTIFICATION_TYPES)}")
        if self.language not in LANGUAGES:
            problems.append(f"language must be one of {list(LANGUAGES)}")
        if (self.ids_s3_uri is None) == (self.inline_ids is None):
            problems.append("give exactly one of ids_s3_uri and inline_ids")
        if self.ids_s3_uri is not None and not str(self.ids_s3_uri).startswith("s3://"):
            problems.append("ids_s3_uri must start with s3://")
        for name, upper in (
            ("max_recipients", None),
            ("rate_per_minute", None),
            ("chunk_size", MAX_CHUNK_SIZE),
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                problems.append(f"{name} must be a whole number of at least 1 (got {value!r})")
            elif upper is not None and value > upper:
                problems.append(f"{name} must be at most {upper} (got {value})")
        for name in ("dry_run", "force_resend"):
            if not isinstance(getattr(self, name), bool):
                problems.append(f"{name} must be true or false")
        if problems:
            raise ResendInputError("invalid resend parameters: " + "; ".join(problems))

    @property
    def notification_type(self) -> str:
        return NOTIFICATION_TYPES[self.template]


def id_patterns() -> dict[str, str]:
    """ID regex per id_type: the defaults, overridden by Variable `mailtrace_resend_id_patterns`."""
    overrides = get_setting("resend_id_patterns", {})
    if not isinstance(overrides, dict):
        raise ResendInputError("Variable mailtrace_resend_id_patterns must be a JSON object {id_type: regex}")
    return {**DEFAULT_ID_PATTERNS, **overrides}


def reference_for(incident_id: str, subject_type: str, subject_id: str, generation: int) -> str:
    """The Notify `reference` (and event_id) of one resend: the same on every retry, unique overall."""
    return f"resend:{incident_id}:{subject_type}:{subject_id}:{generation}"


# --------------------------------------------------------------------------------------- rendering


@dataclass(frozen=True)
class RenderedEmail:
    subject: str
    text: str
    html: str


@functools.cache
def _jinja_environment():
    from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

    return Environment(
        loader=FileSystemLoader(TEMPLATES_DIR / "resend"),
        # HTML parts are escaped; subject and text parts are plain text and must stay unescaped.
        autoescape=select_autoescape(enabled_extensions=("html.j2",), default_for_string=True, default=False),
        undefined=StrictUndefined,
    )


def render_email(template: str, language: str, *, subject_type: str, subject_id: str) -> RenderedEmail:
    """Subject, text and HTML of one email from `templates/resend/<template>.<language>.*.j2`."""
    if template not in NOTIFICATION_TYPES or language not in LANGUAGES:
        raise ValueError(f"no resend template {template!r} in language {language!r}")
    environment = _jinja_environment()
    context = {
        "subject_id": subject_id,
        "id_label": ID_LABELS[language].get(subject_type, subject_type.replace("_", " ")),
    }
    subject = environment.get_template(f"{template}.{language}.subject.txt.j2").render(context).strip()
    if _SUBJECT_FORBIDDEN.search(subject):
        raise ValueError("the rendered subject must be a single line")
    return RenderedEmail(
        subject=subject,
        text=environment.get_template(f"{template}.{language}.txt.j2").render(context),
        html=environment.get_template(f"{template}.{language}.html.j2").render(context),
    )


# -------------------------------------------------------------------------------------------- S3


def _s3_hook():
    from airflow.providers.amazon.aws.hooks.s3 import S3Hook

    return S3Hook(aws_conn_id=AWS_CONN_ID)


def read_s3_object(uri: str, *, max_bytes: int) -> bytes:
    """The object's bytes, refusing before download when it is larger than `max_bytes`."""
    hook = _s3_hook()
    bucket, key = hook.parse_s3_url(uri)
    head = hook.head_object(key=key, bucket_name=bucket)
    if head is None:
        raise IdListError(f"{uri} does not exist")
    if head["ContentLength"] > max_bytes:
        raise IdListError(
            f"{uri} is {head['ContentLength']:,} bytes; the limit is {max_bytes:,} (split it up)"
        )
    return hook.get_key(key, bucket).get()["Body"].read(max_bytes + 1)


def write_outcome_csv(incident_id: str, run_id: str, content: bytes) -> str:
    """Store the outcome CSV (server-side encrypted) and return its s3:// URI."""
    bucket = get_setting("report_bucket")
    key = f"{OUTCOME_PREFIX}/{incident_id}/{_UNSAFE_KEY_CHARS.sub('_', run_id)}.csv"
    _s3_hook().load_bytes(content, key=key, bucket_name=bucket, replace=True, encrypt=True)
    return f"s3://{bucket}/{key}"


# ------------------------------------------------------------------------------------- validation


@dataclass
class Decision:
    """What happens to one input row, and why (one line of the outcome CSV)."""

    row: IdRow
    decision: str = "send"  # send | would_send | skip | reject
    reason: str = "ok"
    detail: str = ""
    email: str | None = None

    def settle(self, decision: str, reason: str, detail: str = "") -> None:
        self.decision, self.reason, self.detail = decision, reason, detail

    @property
    def pending(self) -> bool:
        return self.decision == "send"

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
    value = str(get_setting("resend_ids_prefix", "") or "").strip()
    if not value:
        value = f"s3://{get_setting('report_bucket')}/{REQUESTS_PREFIX}/"
    bucket, _, key_prefix = value.removeprefix("s3://").partition("/")
    if not value.startswith("s3://") or not bucket:
        raise ResendInputError(
            f"Variable mailtrace_resend_ids_prefix must be an s3://bucket/prefix/ URI (got {value[:80]!r})"
        )
    # A prefix ends at a folder boundary: "resend-requests" must not let "resend-requests-old/" in.
    return f"s3://{bucket}/{key_prefix.rstrip('/')}/" if key_prefix.strip("/") else f"s3://{bucket}/"


def check_ids_uri(uri: str) -> None:
    """Refuse an `ids_s3_uri` outside the allowed prefix, naming the prefix to upload under."""
    allowed = ids_prefix()
    key = uri.removeprefix("s3://").partition("/")[2]
    if not uri.startswith(allowed) or any(part in (".", "..") for part in key.split("/")):
        raise ResendInputError(
            f"ids_s3_uri must be under {allowed} (got {uri[:200]!r}); upload the list to "
            f"{allowed}<incident_id>/<file>.csv"
        )


def read_id_rows(params: ResendParams) -> list[IdRow]:
    max_bytes = int(get_setting("resend_max_list_bytes", DEFAULT_MAX_BYTES))
    max_rows = int(get_setting("resend_max_list_rows", DEFAULT_MAX_ROWS))
    if params.inline_ids is not None:
        return parse_inline_ids(str(params.inline_ids), max_bytes=max_bytes, max_rows=max_rows)
    check_ids_uri(params.ids_s3_uri)
    data = read_s3_object(params.ids_s3_uri, max_bytes=max_bytes)
    return parse_id_list(decode_id_list(data, max_bytes=max_bytes), id_type=params.id_type, max_rows=max_rows)


def address_problem(address: str) -> str | None:
    """Why `address` cannot be sent to, or None when its syntax is valid."""
    from email_validator import EmailNotValidError, validate_email

    try:
        validate_email(address, check_deliverability=False)
    except EmailNotValidError as error:
        return str(error)
    return None


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
            decision.settle("reject", *decision.row.problem)
        elif len(subject_id) > _MAX_ID_CHARS or not id_regex.fullmatch(subject_id):
            decision.settle("reject", "malformed_id", f"does not match {pattern}")
        elif subject_id in first_line:
            decision.settle("skip", "duplicate", f"same ID as line {first_line[subject_id]}")
        else:
            first_line[subject_id] = decision.row.line
    candidates = [d for d in decisions if d.pending]
    ids = [d.row.subject_id for d in candidates]
    contacts = dict(
        conn.execute(
            """SELECT subject_id, email FROM mailtrace.contact
               WHERE subject_type = %s AND subject_id = ANY(%s)""",
            (subject_type, ids),
        ).fetchall()
    )
    flagged = _flagged_addresses(conn, subject_type, ids)
    for decision in candidates:
        subject_id = decision.row.subject_id
        if subject_id not in contacts:
            decision.settle("reject", "unknown_id", f"no {subject_type} with this ID in mailtrace.contact")
            continue
        email = (contacts[subject_id] or "").strip()
        if not email:
            decision.settle("reject", "no_contact_email", "the contact has no email address")
            continue
        decision.email = email
        problem = address_problem(email)
        if problem:
            decision.settle("reject", "invalid_address", problem)
        elif subject_id in flagged and flagged[subject_id][0].lower() == email.lower():
            decision.settle("reject", "flagged_address", f"address flagged: {flagged[subject_id][1]}")
    return decisions


def _flagged_addresses(conn: psycopg.Connection, subject_type: str, ids: list[str]) -> dict[str, tuple]:
    """Flagged (email, failure_reason) per subject, when the deployment has mailtrace.flagged_address."""
    exists = conn.execute("SELECT to_regclass('mailtrace.flagged_address') IS NOT NULL").fetchone()[0]
    if not exists:
        return {}
    rows = conn.execute(
        """SELECT subject_id, email, failure_reason FROM mailtrace.flagged_address
           WHERE subject_type = %s AND subject_id = ANY(%s)""",
        (subject_type, ids),
    ).fetchall()
    return {subject_id: (email or "", reason) for subject_id, email, reason in rows}


def load_allow_list() -> frozenset[str] | None:
    """Who may receive mail outside production (lower-cased addresses); None in production.

    Variable `mailtrace_resend_allow_list`: a JSON list of addresses, a comma-separated string, or the
    s3:// URI of a text file of addresses. Unset outside production means nobody may receive mail.
    """
    if str(get_setting("environment", "development")).strip().lower() == "production":
        return None
    value = get_setting("resend_allow_list", [])
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
            decision.settle("skip", "not_on_allow_list", "non-production: address not on the allow-list")


# ------------------------------------------------------------------------------------------- plan


@dataclass
class _Claim:
    """How a row to send enters the ledger: a new generation, or an existing unsent row taken over."""

    decision: Decision
    generation: int
    insert: bool
    forced: bool = False
    chunk_index: int = 0


def _existing_ledger_rows(conn, params: ResendParams, ids: list[str]) -> dict[str, dict]:
    """The newest ledger row per subject of this incident, locked until the plan commits."""
    with conn.cursor(row_factory=dict_row) as cursor:
        rows = cursor.execute(
            """SELECT subject_id, generation, status, dag_run_id, sent_at, provider, attempt_open, reference
               FROM mailtrace.resend_request
               WHERE incident_id = %s AND subject_type = %s AND subject_id = ANY(%s)
               ORDER BY subject_id, generation
               FOR UPDATE""",
            (params.incident_id, params.id_type, ids),
        ).fetchall()
    return {row["subject_id"]: row for row in rows}  # ordered by generation: the newest wins


def _outcome_unknown(latest: dict) -> bool:
    """The row's last call may have gone out and the provider cannot be asked: a human must decide."""
    if latest["status"] == "unknown":
        return True
    return latest["status"] == "claimed" and latest["provider"] == SES_PROVIDER and latest["attempt_open"]


def _plan_claims(decisions: list[Decision], existing: dict[str, dict], params: ResendParams, run_id: str):
    claims = []
    for decision in decisions:
        if not decision.pending:
            continue
        latest = existing.get(decision.row.subject_id)
        if latest is None:
            claims.append(_Claim(decision, generation=0, insert=True))
        elif latest["status"] not in ("sent", "unknown") and not _outcome_unknown(latest):
            # Never confirmed sent (failed, or left claimed by a killed or earlier run): take it over.
            # Its reference is kept, so an email an earlier attempt did send is found, not repeated.
            claims.append(_Claim(decision, generation=latest["generation"], insert=False))
        elif params.force_resend and latest["dag_run_id"] != run_id:
            claims.append(_Claim(decision, generation=latest["generation"] + 1, insert=True, forced=True))
        elif latest["status"] == "sent":
            when = latest["sent_at"].isoformat() if latest["sent_at"] else "earlier"
            decision.settle("skip", "already_sent", f"sent {when} by run {latest['dag_run_id']}")
        else:
            decision.settle("skip", "send_unknown", UNKNOWN_DETAIL)
    return claims


def _mark_unknown_claims(conn, existing: dict[str, dict]) -> None:
    """Rows an earlier SES call left open are `unknown` from now on (they are never sent again as is)."""
    references = [row["reference"] for row in existing.values() if _outcome_unknown(row)]
    conn.execute(
        """UPDATE mailtrace.resend_request
           SET status = 'unknown', updated_at = now(),
               error = coalesce(error, 'the last SES call may have been accepted; no MessageId recorded')
           WHERE reference = ANY(%s) AND status = 'claimed'""",
        (references,),
    )


def _write_claims(conn, claims: list[_Claim], params: ResendParams, run_id: str, provider: str) -> None:
    for claim in claims:
        decision = claim.decision
        reference = reference_for(
            params.incident_id, params.id_type, decision.row.subject_id, claim.generation
        )
        values = {
            "incident_id": params.incident_id,
            "subject_type": params.id_type,
            "subject_id": decision.row.subject_id,
            "generation": claim.generation,
            "template": params.template,
            "language": params.language,
            "notification_type": params.notification_type,
            "email": decision.email,
            "reference": reference,
            "run_id": run_id,
            "chunk_index": claim.chunk_index,
            "forced": claim.forced,
            "provider": provider,
        }
        if claim.insert:
            inserted = conn.execute(
                """INSERT INTO mailtrace.resend_request
                       (incident_id, subject_type, subject_id, generation, template, language,
                        notification_type, recipient_email, reference, dag_run_id, chunk_index, forced,
                        provider)
                   VALUES (%(incident_id)s, %(subject_type)s, %(subject_id)s, %(generation)s, %(template)s,
                           %(language)s, %(notification_type)s, %(email)s, %(reference)s, %(run_id)s,
                           %(chunk_index)s, %(forced)s, %(provider)s)
                   ON CONFLICT DO NOTHING""",
                values,
            ).rowcount
            if not inserted:
                decision.settle("skip", "claimed_elsewhere", "another run claimed this ID at the same time")
        else:
            # The address may only change while no provider call has been made for the row, the
            # provider while no call may be outstanding (it is looked up, or judged, where it went).
            conn.execute(
                """UPDATE mailtrace.resend_request
                   SET dag_run_id = %(run_id)s, chunk_index = %(chunk_index)s, status = 'claimed',
                       template = %(template)s, language = %(language)s,
                       notification_type = %(notification_type)s,
                       recipient_email = CASE WHEN attempts = 0 THEN %(email)s ELSE recipient_email END,
                       provider = CASE WHEN NOT attempt_open THEN %(provider)s ELSE provider END,
                       error = NULL, updated_at = now()
                   WHERE reference = %(reference)s AND status <> 'sent'""",
                values,
            )


def plan_resend(params: ResendParams, *, run_id: str) -> list[dict[str, int]]:
    """Validate the list, write the outcome CSV, claim the rows to send; return the chunks to send.

    Re-running it for the same run gives the same claims and chunks. Fails (after writing the
    outcome CSV) when no row is valid or more than `max_recipients` would receive mail.
    """
    patterns = id_patterns()
    params.check(patterns)
    provider = resend_provider()
    if not params.dry_run:
        check_provider_settings(provider)  # fail before claiming anything if sending cannot work
    try:
        rows = read_id_rows(params)
        allow_list = load_allow_list()
    except IdListError as error:
        raise ResendInputError(str(error)) from None
    with connect() as conn:
        decisions = validate_rows(conn, rows, subject_type=params.id_type, pattern=patterns[params.id_type])
        apply_allow_list(decisions, allow_list)
        if not any(d.pending for d in decisions):
            _finish_plan(conn, params, run_id, decisions, claims=[])
            raise ResendInputError(_nothing_valid_message(decisions))
        sample = next(d for d in decisions if d.pending)
        try:
            render_email(
                params.template,
                params.language,
                subject_type=params.id_type,
                subject_id=sample.row.subject_id,
            )
        except (ValueError, LookupError) as error:  # a missing or broken template: fix it, then trigger
            raise ResendInputError(f"cannot render the {params.template} email: {error}") from None

        pending_ids = [d.row.subject_id for d in decisions if d.pending]
        existing = _existing_ledger_rows(conn, params, pending_ids)
        claims = _plan_claims(decisions, existing, params, run_id)
        if len(claims) > params.max_recipients:
            for claim in claims:
                claim.decision.settle("skip", "max_recipients_exceeded", f"limit is {params.max_recipients}")
            conn.rollback()
            _finish_plan(conn, params, run_id, decisions, claims=[])
            raise ResendInputError(
                f"{len(claims)} recipients would receive mail, more than "
                f"max_recipients={params.max_recipients}; "
                "nothing was sent. Check the list, or raise max_recipients deliberately."
            )
        for position, claim in enumerate(claims):
            claim.chunk_index = position // params.chunk_size
            if params.dry_run:
                claim.decision.settle("would_send", "dry_run", "dry run: nothing sent")
        if params.dry_run:
            conn.rollback()
        else:
            _mark_unknown_claims(conn, existing)
            _write_claims(conn, claims, params, run_id, provider)
        claims = [claim for claim in claims if claim.decision.decision in ("send", "would_send")]
        _finish_plan(conn, params, run_id, decisions, claims=claims)
    if params.dry_run:
        return []
    chunk_sizes = Counter(claim.chunk_index for claim in claims)
    return [{"chunk_index": index, "size": size} for index, size in sorted(chunk_sizes.items())]


def _nothing_valid_message(decisions: list[Decision]) -> str:
    reasons = Counter(d.reason for d in decisions)
    summary = ", ".join(f"{count} {reason}" for reason, count in reasons.most_common())
    return f"nothing to send: no row of the list can be used ({summary}); see the outcome CSV"


def _finish_plan(conn, params: ResendParams, run_id: str, decisions, *, claims) -> None:
    """Write the outcome CSV and the run's audit row (the claims, if any, commit with it)."""
    content = to_csv(OUTCOME_HEADER, [d.csv_row() for d in decisions])
    outcome_uri = write_outcome_csv(params.incident_id, run_id, content)
    counts = Counter(d.decision for d in decisions)
    set_aside = sum(1 for d in decisions if d.row.problem)
    chunks = len({claim.chunk_index for claim in claims}) if not params.dry_run else 0
    conn.execute(
        """INSERT INTO mailtrace.resend_run
               (dag_run_id, incident_id, params, dry_run, outcome_uri, rows_read, planned, skipped,
                rejected, chunks)
           VALUES (%(run_id)s, %(incident_id)s, %(params)s, %(dry_run)s, %(outcome_uri)s, %(rows_read)s,
                   %(planned)s, %(skipped)s, %(rejected)s, %(chunks)s)
           ON CONFLICT (dag_run_id) DO UPDATE SET
               params = EXCLUDED.params, dry_run = EXCLUDED.dry_run, outcome_uri = EXCLUDED.outcome_uri,
               rows_read = EXCLUDED.rows_read, planned = EXCLUDED.planned, skipped = EXCLUDED.skipped,
               rejected = EXCLUDED.rejected, chunks = EXCLUDED.chunks, planned_at = now(),
               finished_at = NULL""",
        {
            "run_id": run_id,
            "incident_id": params.incident_id,
            "params": json.dumps(asdict(params)),
            "dry_run": params.dry_run,
            "outcome_uri": outcome_uri,
            "rows_read": len(decisions),
            "planned": len(claims),
            "skipped": counts["skip"],
            "rejected": counts["reject"],
            "chunks": chunks,
        },
    )
    conn.commit()
    log.info(
        "resend %s run %s: %d rows, %d to send, %d skipped, %d rejected (%d unreadable rows set aside)%s; "
        "outcome %s",
        params.incident_id,
        run_id,
        len(decisions),
        len(claims),
        counts["skip"],
        counts["reject"],
        set_aside,
        " (dry run)" if params.dry_run else "",
        outcome_uri,
    )


# ------------------------------------------------------------------------------------------ send


def resend_provider() -> str:
    """The provider new resends go through: Variable `mailtrace_resend_provider`, gc_notify or ses."""
    value = str(get_setting("resend_provider", PROVIDER)).strip().lower()
    if value not in PROVIDERS:
        raise ResendInputError(
            f"Variable mailtrace_resend_provider must be one of {list(PROVIDERS)} (got {value!r})"
        )
    return value


def check_provider_settings(provider: str) -> None:
    """Fail with a clear message when the settings sending through `provider` needs are missing."""
    if provider == SES_PROVIDER:
        ses_sender()
    else:
        notify_template_id()


def notify_template_id() -> str:
    """The generic Notify template (placeholders ((subject)) and ((body))) every resend uses."""
    value = str(get_setting("notify_template_id", "")).strip()
    if not value:
        raise ResendInputError(
            "set Variable mailtrace_notify_template_id to the generic Notify template's id"
        )
    return value


def ses_sender() -> str:
    """The From of SES resends (Variable `mailtrace_ses_sender`): a verified address, or `Name <address>`."""
    value = str(get_setting("ses_sender", "")).strip()
    if not value:
        raise ResendInputError(
            "set Variable mailtrace_ses_sender to the SES-verified address resends come from"
        )
    if _SUBJECT_FORBIDDEN.search(value) or address_problem(parseaddr(value)[1]):
        raise ResendInputError(
            "Variable mailtrace_ses_sender must be one email address, optionally 'Name <address>'"
        )
    return value


def settle_seconds() -> float:
    """How long after an ambiguous Notify answer a lookup miss may lead to a new send."""
    value = get_setting("resend_settle_seconds", DEFAULT_SETTLE_SECONDS)
    seconds = -1.0 if isinstance(value, bool) else value
    try:
        seconds = float(seconds)
    except (TypeError, ValueError):
        seconds = -1.0
    if not 0 <= seconds < float("inf"):
        raise ResendInputError(
            f"Variable mailtrace_resend_settle_seconds must be a number of seconds >= 0 (got {value!r})"
        )
    return seconds


class Pacer:
    """Spaces provider calls `60 / rate_per_minute` seconds apart across every sender.

    The next free slot lives in `mailtrace.send_pacer` (one line per provider); each call moves it on by
    one interval and sleeps until its own slot, so parallel chunks and concurrent runs add up to the
    requested rate instead of each sending at it. A slot left unused (idle sender) is not saved up as a
    burst.
    """

    def __init__(
        self,
        conn: psycopg.Connection,
        rate_per_minute: int,
        *,
        sleep: Callable = time.sleep,
        name: str = PACER_NAME,
    ):
        self._conn = conn
        self.interval = 60.0 / rate_per_minute
        self._sleep = sleep
        self.name = name

    def wait(self) -> None:
        with self._conn.transaction():
            (delay,) = self._conn.execute(
                """INSERT INTO mailtrace.send_pacer AS pacer (name, next_slot)
                   VALUES (%(name)s, clock_timestamp() + make_interval(secs => %(interval)s))
                   ON CONFLICT (name) DO UPDATE SET next_slot =
                       greatest(pacer.next_slot, clock_timestamp()) + make_interval(secs => %(interval)s)
                   RETURNING extract(epoch FROM pacer.next_slot - clock_timestamp())::float8
                             - %(interval)s""",
                {"name": self.name, "interval": self.interval},
            ).fetchone()
        if delay > 0:
            self._sleep(delay)


class SesSender:
    """Sends one rendered email (text and HTML parts) through SES with connection `aws_default`.

    botocore's own retries are switched off: it would repeat a call that timed out or got a 5xx,
    and SES cannot tell afterwards whether the first one was accepted.
    """

    def __init__(
        self,
        *,
        sender: str,
        configuration_set: str | None = None,
        client: Any = None,
        sleep: Callable[[float], None] = time.sleep,
    ):
        self.sender = sender
        self.configuration_set = configuration_set
        self._client = client
        self.sleep = sleep

    @classmethod
    def from_settings(cls) -> SesSender:
        configuration_set = str(get_setting("ses_configuration_set", "")).strip() or None
        return cls(sender=ses_sender(), configuration_set=configuration_set)

    @property
    def client(self) -> Any:
        if self._client is None:
            from airflow.providers.amazon.aws.hooks.ses import SesHook
            from botocore.config import Config

            no_retries = SesHook(aws_conn_id=AWS_CONN_ID).config.merge(
                Config(retries={"total_max_attempts": 1, "mode": "standard"})
            )
            self._client = SesHook(aws_conn_id=AWS_CONN_ID, config=no_retries).conn
        return self._client

    def message(self, row: _LedgerRow, rendered: RenderedEmail) -> bytes:
        """The MIME message: multipart/alternative with the text and the HTML part."""
        message = EmailMessage(policy=email.policy.SMTP)
        message["From"] = self.sender
        message["To"] = row.recipient_email
        message["Subject"] = rendered.subject
        message["Date"] = formatdate(usegmt=True)
        message["X-Mailtrace-Reference"] = row.reference
        message.set_content(rendered.text)
        message.add_alternative(rendered.html, subtype="html")
        return message.as_bytes()

    def send(self, raw_message: bytes) -> str:
        """Hand the message to SES (recipients from its To header) and return the SES MessageId."""
        request: dict[str, Any] = {"Source": self.sender, "RawMessage": {"Data": raw_message}}
        if self.configuration_set:
            request["ConfigurationSetName"] = self.configuration_set
        return str(self.client.send_raw_email(**request)["MessageId"])


def _ses_error_kind(error: Exception) -> str:
    """What a failed SES call means: throttled or not_sent (certainly not accepted: safe to send again),
    refused (SES said no for good), or ambiguous (it may have been accepted)."""
    from botocore.exceptions import (
        ClientError,
        NoCredentialsError,
        NoRegionError,
        ParamValidationError,
        PartialCredentialsError,
    )
    from botocore.exceptions import ConnectionError as NoConnectionError

    if isinstance(error, ClientError):
        code = error.response.get("Error", {}).get("Code", "")
        status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0
        if code in _SES_THROTTLE_CODES:
            return "throttled"
        return "refused" if 400 <= status < 500 else "ambiguous"
    # No connection was made, or the request was never built: nothing reached SES.
    if isinstance(
        error,
        NoConnectionError
        | NoCredentialsError
        | PartialCredentialsError
        | NoRegionError
        | ParamValidationError,
    ):
        return "not_sent"
    return "ambiguous"  # read timeout, connection dropped mid-answer, unreadable answer, anything else


def _describe_ses_error(error: Exception) -> str:
    response = getattr(error, "response", None)
    if isinstance(response, dict) and "Error" in response:
        status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        return f"SES answered {status} {response['Error'].get('Code')}: {response['Error'].get('Message')}"
    return f"{type(error).__name__}: {error}"[:300]


# SES error codes that refuse every email of the account or configuration, not one address.
_SES_SYSTEMIC_CODES = {
    "AccountSendingPausedException": "SES sending is paused for the account",
    "ConfigurationSetDoesNotExist": "the SES configuration set (Variable mailtrace_ses_configuration_set) "
    "does not exist",
    "ConfigurationSetSendingPausedException": "SES sending is paused for the configuration set",
    "MailFromDomainNotVerifiedException": "the SES MAIL FROM domain is not verified",
}


def notify_systemic_refusal(error: NotifyApiError) -> str | None:
    """What a Notify refusal says about every email of the resend, or None when it is about this one.

    403 is the API key (revoked, wrong, or from another service); a 400 naming the template is the
    template id; trial mode or a team key allows only the service's team as recipients.
    """
    status = getattr(error.__cause__, "status_code", None)
    text = str(error).lower()
    if status in (401, 403):
        return "Notify refused the API key (revoked or wrong: connection notify_api)"
    if status == 400 and "template" in text:
        return "Notify does not know the template (Variable mailtrace_notify_template_id)"
    if status == 400 and ("trial mode" in text or "team-only" in text or "team only" in text):
        return "the Notify service is in trial mode or the key is a team key: only team members can receive"
    return None


def ses_systemic_refusal(error: Exception, sender: str) -> str | None:
    """What an SES refusal says about every email of the resend, or None when it is about this one."""
    response = getattr(error, "response", None) or {}
    code = response.get("Error", {}).get("Code", "")
    message = str(response.get("Error", {}).get("Message", "")).lower()
    if code in _SES_SYSTEMIC_CODES:
        return _SES_SYSTEMIC_CODES[code]
    if code != "MessageRejected":
        return None
    # "Email address is not verified. The following identities failed the check …: <sender>", or
    # "Did not have authority to send from email <sender>": the sender is refused for every email.
    sender_address = parseaddr(sender)[1].lower()
    if sender_address and sender_address in message:
        return "the SES sender is not verified (Variable mailtrace_ses_sender)"
    if "not verified" in message:
        return (
            "SES is in the sandbox: it sends only to verified addresses (request production access, "
            "or verify the recipients)"
        )
    return None


@dataclass
class _LedgerRow:
    incident_id: str
    subject_type: str
    subject_id: str
    generation: int
    reference: str
    recipient_email: str
    template: str
    language: str
    notification_type: str
    provider: str = PROVIDER


def _chunk_rows(conn, run_id: str, chunk_index: int) -> list[_LedgerRow]:
    with conn.cursor(row_factory=dict_row) as cursor:
        rows = cursor.execute(
            """SELECT incident_id, subject_type, subject_id, generation, reference, recipient_email,
                      template, language, notification_type, provider
               FROM mailtrace.resend_request
               WHERE dag_run_id = %s AND chunk_index = %s AND status = 'claimed'
               ORDER BY subject_id, generation""",
            (run_id, chunk_index),
        ).fetchall()
    return [_LedgerRow(**row) for row in rows]


class _Senders:
    """The provider clients of one chunk, each built on first use (a chunk may need only one)."""

    def __init__(self, notify: NotifyClient | None, ses: SesSender | None):
        self._notify = notify
        self._ses = ses

    @property
    def notify(self) -> NotifyClient:
        if self._notify is None:
            self._notify = NotifyClient.from_connection()
        return self._notify

    @functools.cached_property
    def template_id(self) -> str:
        return notify_template_id()

    @property
    def ses(self) -> SesSender:
        if self._ses is None:
            self._ses = SesSender.from_settings()
        return self._ses


def send_chunk(
    params: ResendParams,
    *,
    run_id: str,
    chunk_index: int,
    client: NotifyClient | None = None,
    ses: SesSender | None = None,
) -> dict[str, int]:
    """Send every still-claimed row of one chunk; returns counts per outcome.

    Outcomes: sent, recovered (found at Notify by reference, recorded without sending), failed (the
    provider refused for good), skipped (sent or taken over by another run meanwhile), unknown (an SES
    call that may have been accepted: never repeated, needs a human), deferred (left claimed:
    rate-limited, ambiguous Notify answer, or waiting for the settle delay). Deferred rows make the
    task fail after the rest are done, so Airflow's retry picks them up; the lookup-first and settle
    rules make that retry safe.
    """
    senders = _Senders(client, ses)
    settle = settle_seconds()
    counts: Counter[str] = Counter()
    # botocore logs SES requests and answers whole at DEBUG: the message, and refusals naming addresses.
    with library_bodies_kept_out_of_logs(), connect() as conn:
        conn.autocommit = True
        drop_session_if_client_vanishes(conn)  # a crashed worker must not keep a row's lock for hours
        rows = _chunk_rows(conn, run_id, chunk_index)
        for provider in sorted({row.provider for row in rows}):
            check_provider_settings(provider)  # before any call: a missing setting fails the whole chunk
        pacers: dict[str, Pacer] = {}
        for row in rows:
            pacer = pacers.setdefault(row.provider, Pacer(conn, params.rate_per_minute, name=row.provider))
            conn.execute("SELECT pg_advisory_lock(%s, hashtext(%s))", (SEND_LOCK_CLASS, row.reference))
            try:
                counts[_send_one(conn, senders, pacer, row, run_id=run_id, settle=settle)] += 1
            finally:
                conn.execute("SELECT pg_advisory_unlock(%s, hashtext(%s))", (SEND_LOCK_CLASS, row.reference))
    log.info("resend %s chunk %d: %s", params.incident_id, chunk_index, dict(counts))
    if counts["deferred"]:
        raise ResendError(
            f"chunk {chunk_index}: {counts['deferred']} emails left unresolved (rate-limited or ambiguous "
            "provider answers); a retry looks each one up by reference, after the settle delay, before "
            "sending"
        )
    return dict(counts)


def _send_one(conn, senders: _Senders, pacer: Pacer, row: _LedgerRow, *, run_id: str, settle: float) -> str:
    """Send one claimed row exactly once. Called holding the row's advisory lock."""
    current = conn.execute(
        """SELECT status, dag_run_id, attempts, attempt_open,
                  last_attempt_at IS NULL
                  OR clock_timestamp() >= last_attempt_at + make_interval(secs => %s)
           FROM mailtrace.resend_request WHERE reference = %s""",
        (settle, row.reference),
    ).fetchone()
    if current is None or current[0] != "claimed" or current[1] != run_id:
        return "skipped"
    _, _, attempts, attempt_open, settled = current
    if row.provider == SES_PROVIDER:
        return _send_one_ses(conn, senders.ses, pacer, row, attempt_open=attempt_open)
    return _send_one_notify(
        conn, senders, pacer, row, attempts=attempts, attempt_open=attempt_open, settled=settled
    )


def _send_one_notify(
    conn,
    senders: _Senders,
    pacer: Pacer,
    row: _LedgerRow,
    *,
    attempts: int,
    attempt_open: bool,
    settled: bool,
) -> str:
    client = senders.notify
    if attempts > 0:
        # An earlier call may have been accepted (task killed before recording it, or an ambiguous
        # answer): ask Notify before sending anything.
        outcome = _recover_if_sent(conn, client, pacer, row, failure_note="lookup failed")
        if outcome is not None:
            return outcome
        if attempt_open and not settled:
            # Not found is no proof yet: Notify may still be storing an email it accepted.
            log.warning(
                "email to %s: earlier call not found by reference yet; waiting for the settle delay",
                mask_email(row.recipient_email),
            )
            return "deferred"
    rendered = render_email(
        row.template, row.language, subject_type=row.subject_type, subject_id=row.subject_id
    )
    personalisation = {"subject": rendered.subject, "body": rendered.text, "html_body": rendered.html}
    pacer.wait()
    _start_attempt(conn, row)
    try:
        response = client.send_email(row.recipient_email, senders.template_id, personalisation, row.reference)
    except AmbiguousSendError as error:
        log.warning(
            "ambiguous send to %s (%s); looking it up", mask_email(row.recipient_email), mask_text(error)
        )
        _note_error(conn, row, f"ambiguous answer: {error}")
        # Never a second POST in this attempt: unless the email is found, the row stays claimed with its
        # call open, and a later attempt sends only if the reference is still unknown after the settle delay.
        outcome = _recover_if_sent(
            conn, client, pacer, row, failure_note="ambiguous send, then lookup failed"
        )
        return outcome or "deferred"
    except NotifyApiError as error:
        if _is_rate_limited(error):
            _close_attempt(conn, row, str(error))  # a 429 is a certain refusal
            return "deferred"
        cause = notify_systemic_refusal(error)
        if cause:
            _close_attempt(conn, row, f"{cause}: {error}")  # refused, so certainly not sent
            raise SystemicRefusal(f"{cause} ({_stored_error(error)})") from None
        _mark_failed(conn, row, str(error))
        return "failed"
    _record_sent(conn, row, response)
    return "sent"


def _send_one_ses(conn, ses: SesSender, pacer: Pacer, row: _LedgerRow, *, attempt_open: bool) -> str:
    if attempt_open:
        # A call was made and no MessageId recorded (task killed in between): SES cannot be asked
        # whether it went out, so it is never repeated on its own.
        _mark_unknown(
            conn, row, "an earlier SES call may have been accepted; its MessageId was never recorded"
        )
        return "unknown"
    rendered = render_email(
        row.template, row.language, subject_type=row.subject_type, subject_id=row.subject_id
    )
    try:
        raw_message = ses.message(row, rendered)
    except (ValueError, TypeError, UnicodeError) as error:  # e.g. an address SES cannot put in a header
        _mark_failed(conn, row, f"cannot build the SES message: {error}")
        return "failed"
    for attempt in range(SES_THROTTLE_TRIES):
        pacer.wait()
        _start_attempt(conn, row)
        try:
            message_id = ses.send(raw_message)
        except Exception as error:  # classified: anything not known to be harmless counts as ambiguous
            kind, description = _ses_error_kind(error), _describe_ses_error(error)
            if kind in ("throttled", "not_sent"):
                _close_attempt(conn, row, description)
                if kind == "throttled" and attempt + 1 < SES_THROTTLE_TRIES:
                    ses.sleep(SES_THROTTLE_BACKOFF_SECONDS * 2**attempt)
                    continue
                return "deferred"
            if kind == "refused":
                cause = ses_systemic_refusal(error, ses.sender)
                if cause:
                    _close_attempt(conn, row, f"{cause}: {description}")
                    raise SystemicRefusal(f"{cause} ({_stored_error(description)})") from None
                _mark_failed(conn, row, description)
                return "failed"
            _mark_unknown(conn, row, f"ambiguous SES answer: {description}")
            return "unknown"
        _record_sent(conn, row, {"id": message_id})
        return "sent"
    raise AssertionError("unreachable")


def _recover_if_sent(
    conn, client: NotifyClient, pacer: Pacer, row: _LedgerRow, *, failure_note: str
) -> str | None:
    """Ask Notify for the row's reference: "recovered" (recorded) when the email went out, "deferred"
    when the look-up itself failed, None when Notify has no such email."""
    try:
        found = _find_sent(client, pacer, row.reference)
    except NotifyApiError as error:
        _note_error(conn, row, f"{failure_note}: {error}")
        cause = notify_systemic_refusal(error)
        if cause:  # e.g. the key was revoked since the earlier attempt: no retry would get an answer
            raise SystemicRefusal(f"{cause} ({_stored_error(error)})") from None
        return "deferred"
    if found is None:
        return None
    _record_sent(conn, row, found)
    return "recovered"


def _find_sent(client: NotifyClient, pacer: Pacer, reference: str) -> dict | None:
    pacer.wait()
    matches = client.find_by_reference(reference)
    if len(matches) > 1:
        log.error("reference %s matches %d notifications at Notify", reference, len(matches))
    return matches[-1] if matches else None  # newest first: the oldest is the one first sent


def _is_rate_limited(error: NotifyApiError) -> bool:
    return getattr(error.__cause__, "status_code", None) == 429


def _start_attempt(conn, row: _LedgerRow) -> None:
    """Commit that a provider call is about to start (its outcome is open until recorded or closed)."""
    conn.execute(
        """UPDATE mailtrace.resend_request
           SET attempts = attempts + 1, last_attempt_at = clock_timestamp(), attempt_open = true,
               updated_at = now()
           WHERE reference = %s""",
        (row.reference,),
    )


def _stored_error(message: object) -> str:
    """An error as it may be logged and stored: providers quote addresses in their answers."""
    return mask_text(message)[:2000]


def _close_attempt(conn, row: _LedgerRow, message: str) -> None:
    """The call was certainly not accepted (rate-limited, no connection): sending again is safe."""
    conn.execute(
        """UPDATE mailtrace.resend_request SET attempt_open = false, error = %s, updated_at = now()
           WHERE reference = %s""",
        (_stored_error(message), row.reference),
    )


def _note_error(conn, row: _LedgerRow, message: str) -> None:
    conn.execute(
        "UPDATE mailtrace.resend_request SET error = %s, updated_at = now() WHERE reference = %s",
        (_stored_error(message), row.reference),
    )


def _mark_failed(conn, row: _LedgerRow, message: str) -> None:
    log.warning(
        "the provider refused the email to %s: %s", mask_email(row.recipient_email), _stored_error(message)
    )
    conn.execute(
        """UPDATE mailtrace.resend_request
           SET status = 'failed', attempt_open = false, error = %s, updated_at = now()
           WHERE reference = %s AND status = 'claimed'""",
        (_stored_error(message), row.reference),
    )


def _mark_unknown(conn, row: _LedgerRow, message: str) -> None:
    log.error(
        "email to %s may or may not have been sent (%s); it needs a human: %s",
        mask_email(row.recipient_email),
        _stored_error(message),
        UNKNOWN_DETAIL,
    )
    conn.execute(
        """UPDATE mailtrace.resend_request SET status = 'unknown', error = %s, updated_at = now()
           WHERE reference = %s AND status = 'claimed'""",
        (_stored_error(message), row.reference),
    )


def _record_sent(conn, row: _LedgerRow, notification: dict) -> None:
    """Mark the row sent and log the event for the delivery pipeline, in one transaction.

    `notification` is what the provider returned: Notify's notification (id, created_at) or, for SES,
    `{"id": <MessageId>}`.
    """
    provider_reference = str(notification["id"])
    sent_at = parse_timestamp(notification.get("created_at")) or datetime.now(UTC)
    with conn.transaction():
        conn.execute(
            """UPDATE mailtrace.resend_request
               SET status = 'sent', provider_reference = %(provider_reference)s, event_id = %(reference)s,
                   sent_at = %(sent_at)s, attempt_open = false, error = NULL, updated_at = now()
               WHERE reference = %(reference)s""",
            {"provider_reference": provider_reference, "reference": row.reference, "sent_at": sent_at},
        )
        conn.execute(
            """INSERT INTO mailtrace.own_notification_event
                   (event_id, subject_type, subject_id, notification_type, recipient_email, provider,
                    provider_reference, client_reference, sent_at, local_status)
               VALUES (%(reference)s, %(subject_type)s, %(subject_id)s, %(notification_type)s, %(email)s,
                       %(provider)s, %(provider_reference)s, %(reference)s, %(sent_at)s, 'SENT')
               ON CONFLICT (event_id) DO NOTHING""",
            {
                "reference": row.reference,
                "subject_type": row.subject_type,
                "subject_id": row.subject_id,
                "notification_type": row.notification_type,
                "email": row.recipient_email,
                "provider": row.provider,
                "provider_reference": provider_reference,
                "sent_at": sent_at,
            },
        )


# --------------------------------------------------------------------------------------- summary


def summarize_run(params: ResendParams, *, run_id: str) -> dict[str, int]:
    """Count the run's ledger rows by status into its audit row; fail while any is unresolved.

    Rows left `claimed` can be retried; rows that ended `unknown` need a human: they are counted in
    `resend_run.unknown`, marked in the run's outcome CSV and named in the error.
    """
    with connect() as conn:
        counts = dict(
            conn.execute(
                "SELECT status, count(*) FROM mailtrace.resend_request WHERE dag_run_id = %s GROUP BY status",
                (run_id,),
            ).fetchall()
        )
        conn.execute(
            """UPDATE mailtrace.resend_run
               SET sent = %(sent)s, failed = %(failed)s, unresolved = %(claimed)s, unknown = %(unknown)s,
                   finished_at = now()
               WHERE dag_run_id = %(run_id)s""",
            {
                "sent": counts.get("sent", 0),
                "failed": counts.get("failed", 0),
                "claimed": counts.get("claimed", 0),
                "unknown": counts.get("unknown", 0),
                "run_id": run_id,
            },
        )
        conn.commit()
        unknown_ids = []
        if counts.get("unknown"):
            unknown_ids = [
                subject_id
                for (subject_id,) in conn.execute(
                    """SELECT subject_id FROM mailtrace.resend_request
                       WHERE dag_run_id = %s AND status = 'unknown' ORDER BY subject_id""",
                    (run_id,),
                ).fetchall()
            ]
            outcome = conn.execute(
                "SELECT outcome_uri FROM mailtrace.resend_run WHERE dag_run_id = %s", (run_id,)
            ).fetchone()
            if outcome and outcome[0]:
                _mark_outcome_unknown(params.incident_id, run_id, outcome[0], set(unknown_ids))
    summary = {status: counts.get(status, 0) for status in ("sent", "failed", "claimed")}
    log.info(
        "resend %s run %s finished: %s, unknown %d", params.incident_id, run_id, summary, len(unknown_ids)
    )
    problems = []
    if summary["claimed"]:
        problems.append(
            f"{summary['claimed']} emails are still unresolved; clear the failed send_chunk tasks or "
            "trigger the same list again (already-sent IDs are skipped, unresolved ones looked up first)."
        )
    if summary["failed"] and not summary["sent"] and not summary["claimed"] and not unknown_ids:
        raise ResendRefused(
            f"every email of the run was refused ({summary['failed']} failed, none sent): "
            f"{_refusal_reasons(run_id)}. Fix the cause, then trigger again: refused IDs are sent again."
        )
    if unknown_ids:
        shown = ", ".join(unknown_ids[:20]) + (", …" if len(unknown_ids) > 20 else "")
        problems.append(
            f"{len(unknown_ids)} emails may or may not have been sent (status 'unknown': the SES call's "
            f"outcome cannot be known) and are never re-sent automatically: {shown}. {UNKNOWN_DETAIL}."
        )
    if problems:
        raise ResendError(" ".join(problems))
    return summary


def _refusal_reasons(run_id: str, shown: int = 3) -> str:
    """The run's most common refusals, with counts (errors are stored masked)."""
    with connect() as conn:
        rows = conn.execute(
            """SELECT coalesce(error, 'no reason recorded'), count(*) FROM mailtrace.resend_request
               WHERE dag_run_id = %s AND status = 'failed' GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT %s""",
            (run_id, shown),
        ).fetchall()
    return "; ".join(f"{count} × {error[:300]}" for error, count in rows)


def _mark_outcome_unknown(incident_id: str, run_id: str, outcome_uri: str, subject_ids: set[str]) -> None:
    """Rewrite the run's outcome CSV: rows planned as `send` whose email ended `unknown` say so."""
    text = read_s3_object(outcome_uri, max_bytes=64 * DEFAULT_MAX_BYTES).decode("utf-8")
    rows = list(csv.reader(io.StringIO(text)))
    if not rows or rows[0] != OUTCOME_HEADER:
        log.error("outcome %s has an unexpected header; not marking unknown rows in it", outcome_uri)
        return
    shown_ids = {neutralise_cell(subject_id) for subject_id in subject_ids}
    decision_at, reason_at, detail_at = (
        OUTCOME_HEADER.index(name) for name in ("decision", "reason", "detail")
    )
    subject_at = OUTCOME_HEADER.index("subject_id")
    for row in rows[1:]:
        if row[subject_at] in shown_ids and row[decision_at] in ("send", "unknown"):
            row[decision_at], row[reason_at], row[detail_at] = "unknown", "send_unknown", UNKNOWN_DETAIL
    write_outcome_csv(incident_id, run_id, to_csv(rows[0], rows[1:]))
