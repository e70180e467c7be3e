"""Defaults every mailtrace DAG shares, so retries and ownership are the same everywhere."""

from __future__ import annotations

from datetime import datetime, timedelta

OWNER = "mailtrace"
START_DATE = datetime(2026, 1, 5)

DEFAULT_ARGS = {
    "owner": OWNER,
    "retries": 3,
    "retry_delay": timedelta(minutes=1),
    "retry_exponential_backoff": True,
    "max_retry_delay": timedelta(minutes=20),
}
