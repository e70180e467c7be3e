"""Step 2, `send_chunk`: send the claimed rows of one chunk, exactly once per provider."""

from __future__ import annotations

import functools
import logging
from collections import Counter

from mailtrace.locks import SEND_LOCK_CLASS
from mailtrace.paths import read_sql
from mailtrace.privacy import library_bodies_kept_out_of_logs, mask_email, mask_text
from mailtrace.providers.gc_notify import (
    AmbiguousSendError,
    NotifyApiError,
    NotifyClient,
)
from mailtrace.providers.ses import PROVIDER as SES_PROVIDER
from mailtrace.resend.constants import SES_THROTTLE_BACKOFF_SECONDS, SES_THROTTLE_TRIES
from mailtrace.resend.errors import ResendError, SystemicRefusal
from mailtrace.resend.ledger import (
    _chunk_rows,
    _close_attempt,
    _LedgerRow,
    _mark_failed,
    _mark_unknown,
    _note_error,
    _record_sent,
    _start_attempt,
    _stored_error,
)
from mailtrace.resend.pacing import Pacer
from mailtrace.resend.params import ResendParams
from mailtrace.resend.provider_config import check_provider_settings, notify_template_id, settle_seconds
from mailtrace.resend.rendering import render_email
from mailtrace.resend.senders import (
    SesSender,
    _describe_ses_error,
    _ses_error_kind,
    notify_systemic_refusal,
    ses_systemic_refusal,
)
from mailtrace.resend.states import LedgerStatus
from mailtrace.warehouse import connect, drop_session_if_client_vanishes

log = logging.getLogger(__name__)


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
            conn.execute(read_sql("resend/lock_reference.sql"), (SEND_LOCK_CLASS, row.reference))
            try:
                counts[_send_one(conn, senders, pacer, row, run_id=run_id, settle=settle)] += 1
            finally:
                conn.execute(read_sql("resend/unlock_reference.sql"), (SEND_LOCK_CLASS, row.reference))
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
        read_sql("resend/row_send_state.sql"),
        (settle, row.reference),
    ).fetchone()
    if current is None or current[0] != LedgerStatus.CLAIMED or current[1] != run_id:
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
        return LedgerStatus.FAILED
    _record_sent(conn, row, response)
    return LedgerStatus.SENT


def _send_one_ses(conn, ses: SesSender, pacer: Pacer, row: _LedgerRow, *, attempt_open: bool) -> str:
    if attempt_open:
        # A call was made and no MessageId recorded (task killed in between): SES cannot be asked
        # whether it went out, so it is never repeated on its own.
        _mark_unknown(
            conn, row, "an earlier SES call may have been accepted; its MessageId was never recorded"
        )
        return LedgerStatus.UNKNOWN
    rendered = render_email(
        row.template, row.language, subject_type=row.subject_type, subject_id=row.subject_id
    )
    try:
        raw_message = ses.message(row, rendered)
    except (ValueError, TypeError, UnicodeError) as error:  # e.g. an address SES cannot put in a header
        _mark_failed(conn, row, f"cannot build the SES message: {error}")
        return LedgerStatus.FAILED
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
                return LedgerStatus.FAILED
            _mark_unknown(conn, row, f"ambiguous SES answer: {description}")
            return LedgerStatus.UNKNOWN
        _record_sent(conn, row, {"id": message_id})
        return LedgerStatus.SENT
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
