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

from mailtrace.addresses import address_problem
from mailtrace.resend.constants import (
    DEFAULT_SETTLE_SECONDS,
    INCIDENT_ID_PATTERN,
    LANGUAGES,
    MAX_CHUNK_SIZE,
)
from mailtrace.resend.errors import ResendError, ResendInputError, ResendRefused, SystemicRefusal
from mailtrace.resend.pacing import Pacer
from mailtrace.resend.params import ResendParams
from mailtrace.resend.planning import plan_resend
from mailtrace.resend.rendering import render_email
from mailtrace.resend.sending import send_chunk
from mailtrace.resend.summary import summarize_run

__all__ = [
    "DEFAULT_SETTLE_SECONDS",
    "INCIDENT_ID_PATTERN",
    "LANGUAGES",
    "MAX_CHUNK_SIZE",
    "Pacer",
    "ResendError",
    "ResendInputError",
    "ResendParams",
    "ResendRefused",
    "SystemicRefusal",
    "address_problem",
    "plan_resend",
    "render_email",
    "send_chunk",
    "summarize_run",
]
