"""The settings registry: the README's Variables table matches it, and values are typed and bounded."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from mailtrace.settings import REGISTRY, SettingError, required_setting, setting

README = Path(__file__).resolve().parents[1] / "README.md"
ROW = re.compile(r"^\| `mailtrace_(\w+)` \| ([^|]*) \|", re.M)
# How the README says "no default".
NO_DEFAULT = {"none", "unset", "**required**"}


def readme_defaults() -> dict[str, str]:
    """variable name -> the README's default cell, up to its first remark ("6 (0: off)" -> "6")."""
    text = README.read_text(encoding="utf-8").split("## Variables", 1)[1].split("\n## ", 1)[0]
    return {name: re.split(r" \(| for ", cell.strip())[0].strip("`") for name, cell in ROW.findall(text)}


def expected_cell(name: str) -> str:
    entry = REGISTRY[name]
    if entry.default_text is not None:
        return entry.default_text
    if isinstance(entry.default, list | dict):
        return json.dumps(entry.default)
    return str(entry.default)


def test_every_registered_variable_is_in_the_readme_table_and_vice_versa():
    documented = readme_defaults()
    assert sorted(documented) == sorted(REGISTRY)


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_the_readme_states_the_registered_default(name):
    cell = readme_defaults()[name]
    entry = REGISTRY[name]
    if entry.default is None and entry.default_text is None:
        assert cell in NO_DEFAULT, f"README says {cell!r} for mailtrace_{name}, which has no default"
    elif isinstance(entry.default, int | float):
        assert float(cell) == entry.default, f"README says {cell!r}, the registry {entry.default!r}"
    else:
        assert cell == expected_cell(name)


@pytest.mark.parametrize(
    ("variable", "value", "read"),
    [
        ("NOTIFY_MAX_LOOKUPS_PER_RUN", "25", 25),
        ("NOT_AT_PROVIDER_GRACE_MINUTES", "7.5", 7.5),
        ("EXAMINER_EMAILS", " a@example.gov, b@example.gov ,", ["a@example.gov", "b@example.gov"]),
        ("EXAMINER_EMAILS", '["a@example.gov"]', ["a@example.gov"]),
        ("RESEND_PROVIDER", " ses ", "ses"),
    ],
)
def test_values_are_converted_to_the_registered_type(monkeypatch, variable, value, read):
    monkeypatch.setenv(f"AIRFLOW_VAR_MAILTRACE_{variable}", value)
    assert setting(variable.lower()) == read


def test_an_unset_variable_reads_as_its_registered_default(monkeypatch):
    monkeypatch.delenv("AIRFLOW_VAR_MAILTRACE_TIMEZONE", raising=False)
    assert setting("timezone") == "America/Vancouver"


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("REPORT_LINK_EXPIRY_HOURS", "169"),
        ("REPORT_LINK_EXPIRY_HOURS", "0"),
        ("NOTIFY_MAX_LOOKUPS_PER_RUN", "1e3"),
        ("NOTIFY_MAX_LOOKUPS_PER_RUN", "true"),
        ("ALERT_DELIVERY_RATE_FLOOR", "1.5"),
        ("RESEND_SETTLE_SECONDS", "-1"),
        ("RESEND_SETTLE_SECONDS", "NaN"),
        ("RESEND_ID_PATTERNS", "[1]"),
    ],
)
def test_a_value_of_the_wrong_type_or_out_of_bounds_fails_at_once_naming_the_variable(
    monkeypatch, variable, value
):
    monkeypatch.setenv(f"AIRFLOW_VAR_MAILTRACE_{variable}", value)
    with pytest.raises(SettingError, match=f"mailtrace_{variable.lower()}"):
        setting(variable.lower())


def test_a_required_variable_left_unset_says_what_needs_it(monkeypatch):
    monkeypatch.delenv("AIRFLOW_VAR_MAILTRACE_REPORT_BUCKET", raising=False)
    with pytest.raises(SettingError, match="mailtrace_report_bucket: the report needs it"):
        required_setting("report_bucket", "the report")
