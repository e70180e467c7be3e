"""Resend constants shared by the steps: email kinds, languages, limits, S3 prefixes, provider names."""

from __future__ import annotations

import re

from mailtrace.providers.gc_notify import (
    PROVIDER,
)
from mailtrace.providers.ses import PROVIDER as SES_PROVIDER
from mailtrace.resend_form import (  # noqa: F401  (the trigger form's values, re-exported)
    DEFAULT_RATE_PER_MINUTE,
    INCIDENT_ID_PATTERN,
    LANGUAGES,
    MAX_CHUNK_SIZE,
    NOTIFICATION_TYPES,
)
from mailtrace.settings import REGISTRY

# How each id_type is named in the email. The French nouns are all feminine, which the templates rely on.
ID_LABELS = {
    "en": {"registration": "registration", "application": "application", "tax_return": "tax return"},
    "fr": {"registration": "inscription", "application": "demande", "tax_return": "déclaration de revenus"},
}
OUTCOME_PREFIX = "resend-outcomes"
# Where ops upload ID lists by default (see `ids_prefix`).
REQUESTS_PREFIX = "resend-requests"
OUTCOME_HEADER = ["line", "input_value", "subject_id", "decision", "reason", "detail", "recipient"]
PACER_NAME = PROVIDER
PROVIDERS = (PROVIDER, SES_PROVIDER)
# After an ambiguous Notify answer, wait at least this long before a lookup miss may lead to a new send
# (Notify can store an accepted notification asynchronously). Variable mailtrace_resend_settle_seconds.
DEFAULT_SETTLE_SECONDS = REGISTRY["resend_settle_seconds"].default
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
