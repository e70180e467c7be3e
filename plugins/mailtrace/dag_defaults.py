"""Defaults every mailtrace DAG shares, so retries, failure alerts and ownership are the same everywhere."""

from __future__ import annotations

from datetime import datetime, timedelta

from mailtrace.failure_alert import email_task_failure

OWNER = "mailtrace"
START_DATE = datetime(2026, 1, 5)

DEFAULT_ARGS = {
    "owner": OWNER,
    "retries": 3,
    "retry_delay": timedelta(minutes=1),
    "retry_exponential_backoff": True,
    "max_retry_delay": timedelta(minutes=20),
    "on_failure_callback": email_task_failure,
}
