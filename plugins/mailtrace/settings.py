"""Deployment settings read from Airflow Variables named `mailtrace_<name>`.

Read inside tasks only (never at DAG parse time). Each setting has a default that suits the demo,
so a fresh deployment runs before anyone has configured it.
"""

from __future__ import annotations

import json
from typing import Any

VARIABLE_PREFIX = "mailtrace_"

_MISSING = object()


def get_setting(name: str, default: Any = _MISSING) -> Any:
    """Value of Variable `mailtrace_<name>`, JSON-decoded when it is JSON, else the raw string."""
    from airflow.sdk import Variable

    raw = Variable.get(VARIABLE_PREFIX + name, default=None)
    if raw is None or raw == "":
        if default is _MISSING:
            raise KeyError(f"Airflow Variable {VARIABLE_PREFIX + name} is not set")
        return default
    try:
        return json.loads(raw)
    except (TypeError, ValueError):
        return raw


def get_email_list(name: str) -> list[str]:
    """A list of addresses from a Variable holding a JSON list or a comma-separated string."""
    value = get_setting(name, [])
    if isinstance(value, str):
        value = value.split(",")
    return [address.strip() for address in value if address and address.strip()]
