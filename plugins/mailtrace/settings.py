"""Deployment settings: every Airflow Variable `mailtrace_<name>` with its type, default, bounds and meaning.

`setting(name)` is the one way to read one: it applies the default registered here (so no call site
keeps a default of its own), converts the value to the registered type and refuses a value out of
bounds with a `SettingError` naming the Variable (a bad parameter: the task fails at once, without
retries). Read inside tasks only, never at DAG parse time; a task reads what it needs once, at its
start. The README's Variables table is checked against `REGISTRY` by tests/test_settings.py.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from airflow.sdk.exceptions import AirflowFailException

VARIABLE_PREFIX = "mailtrace_"


class SettingError(AirflowFailException, ValueError):
    """A Variable holds a value of the wrong type or out of its bounds; the message says which and why."""


@dataclass(frozen=True)
class Setting:
    """One Variable: `kind` is int, float, str, list (JSON list or comma-separated), dict or object."""

    name: str
    kind: type
    default: Any
    meaning: str
    minimum: float | None = None
    maximum: float | None = None
    # How the README states a default computed at run time (the registered default is then None).
    default_text: str | None = None

    @property
    def variable(self) -> str:
        return VARIABLE_PREFIX + self.name


_SETTINGS = (
    # Reconcile, look-ups and monitoring.
    Setting(
        "not_at_provider_grace_minutes",
        float,
        120,
        "an email the provider never saw after this is not_at_provider",
        0,
    ),
    Setting(
        "ses_not_at_provider_grace_hours", float, 24, "the same for an SES email with no event at all", 0
    ),
    Setting(
        "notify_list_overlap_minutes",
        float,
        120,
        "the Notify list walk re-reads this far behind its watermark",
        0,
    ),
    Setting("notify_initial_lookback_days", float, 7, "how far back the first Notify list walk reads", 0),
    Setting(
        "notify_late_sweep_every_hours", float, 6, "how often the list walk reads further back (0: never)", 0
    ),
    Setting("notify_late_sweep_days", float, 3, "how far back a late-receipt sweep reads", 0),
    Setting("notify_max_lookups_per_run", int, 500, "Notify look-ups by id per run", 0),
    # Alerts and monitoring.
    Setting("alert_emails", list, None, "who gets monitoring alerts and failed-task alerts"),
    Setting("alert_sns_topic_arn", str, None, "SNS topic the same alerts are published to"),
    Setting("alert_delivery_rate_floor", float, 0.90, "monitoring alerts below this delivery rate", 0, 1),
    Setting("alert_not_at_provider_max", int, 10, "monitoring alerts above this many not_at_provider", 0),
    Setting("alert_min_sample", int, 20, "verdicts needed before the delivery rate is judged", 0),
    # Flags.
    Setting(
        "soft_failure_flag_threshold", int, None, "N consecutive soft failures also flag (unset: off)", 1
    ),
    # Weekly report.
    Setting("report_bucket", str, None, "S3 bucket of reports, the SES archive and resend outcomes"),
    Setting("examiner_emails", list, None, "who receives the weekly report"),
    Setting("timezone", str, "America/Vancouver", "time zone of the weekly report's period"),
    Setting("subject_id_header", str, "registration_number", "header of the report CSV's subject id column"),
    Setting("delivery_page_url", str, None, "the Delivery page's address, for links in the report emails"),
    Setting(
        "report_attach_max_bytes", int, 5 * 1024 * 1024, "attach the CSV up to this size, else link it", 1
    ),
    # S3 (SigV4) refuses presigned URLs valid for longer than seven days.
    Setting("report_link_expiry_hours", int, 72, "lifetime of the presigned link to a large CSV", 1, 7 * 24),
    # SES events.
    Setting("ses_queue_url", str, None, "SQS queue of SES delivery events"),
    Setting("ses_max_batches", int, 100, "SQS batches of 10 read per run", 1),
    # Resend.
    Setting("environment", str, "development", "anything but production limits resends to the allow-list"),
    Setting(
        "resend_allow_list",
        object,
        [],
        "non-production resend recipients: JSON list, comma list or s3:// URI",
    ),
    Setting("resend_provider", str, "gc_notify", "provider of new resends: gc_notify or ses"),
    Setting("notify_template_id", str, None, "generic Notify template with ((subject)) and ((body))"),
    Setting("ses_sender", str, None, "verified SES identity resends come from"),
    Setting("ses_configuration_set", str, None, "SES configuration set of resends"),
    Setting(
        "resend_settle_seconds", float, 120, "wait before re-sending after an ambiguous Notify answer", 0
    ),
    Setting(
        "resend_ids_prefix",
        str,
        None,
        "the only S3 prefix ID lists are read from",
        default_text="s3://<mailtrace_report_bucket>/resend-requests/",
    ),
    Setting("resend_id_patterns", dict, {}, "extra or replaced ID types: JSON object of id_type to regex"),
    Setting(
        "resend_drop_queue_url",
        str,
        None,
        "SQS queue of the bucket's upload events: a list dropped under the prefix starts a dry run",
    ),
    Setting("resend_drop_id_type", str, "registration", "id_type of the dry runs an S3 drop starts"),
    Setting("resend_max_list_bytes", int, 5 * 1024 * 1024, "largest ID list file read", 1),
    Setting("resend_max_list_rows", int, 100_000, "most IDs in one list", 1),
)
REGISTRY: dict[str, Setting] = {entry.name: entry for entry in _SETTINGS}


def _raw(name: str) -> Any:
    """The Variable's value, JSON-decoded when it is JSON; None when unset or empty."""
    from airflow.sdk import Variable

    return decoded(Variable.get(VARIABLE_PREFIX + name, default=None))


def decoded(raw: Any) -> Any:
    """A Variable's stored text JSON-decoded when it is JSON; None when unset or empty."""
    if raw is None or raw == "":
        return None
    try:
        return json.loads(raw)
    except (TypeError, ValueError):
        return raw


def _converted(entry: Setting, value: Any) -> Any:
    shown = str(value)[:40]
    if entry.kind is int:
        if (
            isinstance(value, bool)
            or not isinstance(value, int | str)
            or not str(value).strip().lstrip("-").isdigit()
        ):
            raise SettingError(f"Variable {entry.variable} must be a whole number, got {shown!r}")
        return int(value)
    if entry.kind is float:
        try:
            if isinstance(value, bool):
                raise TypeError
            number = float(value)
        except (TypeError, ValueError):
            raise SettingError(f"Variable {entry.variable} must be a number, got {shown!r}") from None
        if number != number or number in (float("inf"), float("-inf")):
            raise SettingError(f"Variable {entry.variable} must be a finite number, got {shown!r}")
        return number
    if entry.kind is str:
        return str(value).strip()
    if entry.kind is list:
        items = value.split(",") if isinstance(value, str) else value
        if not isinstance(items, list):
            raise SettingError(f"Variable {entry.variable} must be a JSON list or a comma-separated string")
        return [str(item).strip() for item in items if item and str(item).strip()]
    if entry.kind is dict and not isinstance(value, dict):
        raise SettingError(f"Variable {entry.variable} must be a JSON object")
    return value


def _bounded(entry: Setting, value: Any) -> Any:
    low, high = entry.minimum, entry.maximum
    if isinstance(value, int | float) and (
        (low is not None and value < low) or (high is not None and value > high)
    ):
        limits = " and ".join(
            part
            for part in (
                f"at least {low:g}" if low is not None else "",
                f"at most {high:g}" if high is not None else "",
            )
            if part
        )
        raise SettingError(f"Variable {entry.variable} must be {limits}, got {value!r}")
    return value


def setting(name: str) -> Any:
    """Variable `mailtrace_<name>` converted to its registered type, or its registered default."""
    return setting_from(name, _raw(name))


def setting_from(name: str, value: Any) -> Any:
    """`value` (a decoded Variable read elsewhere, e.g. by the api-server) converted like `setting`."""
    entry = REGISTRY[name]
    if value is None:
        return entry.default
    return _bounded(entry, _converted(entry, value))


def required_setting(name: str, what_for: str) -> Any:
    """`setting(name)`, refusing an unset Variable with a message saying what needs it."""
    value = setting(name)
    if value in (None, "", [], {}):
        raise SettingError(f"set Variable {REGISTRY[name].variable}: {what_for} needs it")
    return value
