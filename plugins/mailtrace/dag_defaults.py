"""Defaults every mailtrace DAG shares, so retries, failure alerts and ownership are the same everywhere."""

from __future__ import annotations

import os
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


def pipeline_schedule(production_schedule):
    """A provider pipeline's schedule: `production_schedule`, or every MAILTRACE_PIPELINE_EVERY_SECONDS
    seconds where `make up` or an end-to-end test wants runs sooner than production needs them."""
    seconds = os.environ.get("MAILTRACE_PIPELINE_EVERY_SECONDS")
    return timedelta(seconds=int(seconds)) if seconds else production_schedule
