"""The resend trigger form (no services): every field explains itself, bounds are refused rather than
clamped, and the default ID patterns accept the real shapes of IDs and nothing else."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from airflow.sdk.definitions.param import ParamValidationError

from mailtrace.id_list import DEFAULT_ID_PATTERNS, ID_TYPE_DESCRIPTIONS
from mailtrace.resend import ResendInputError, ResendParams
from mailtrace.resend.validation import malformed_detail
from mailtrace.resend_form import NUMBER_BOUNDS, TEMPLATE_NAMES, trigger_form

REPO_ROOT = Path(__file__).resolve().parents[1]
TEXT_FIELDS = ("incident_id", "ids_s3_uri", "inline_ids", "id_type")


@pytest.fixture(scope="module")
def form():
    return trigger_form()


def test_every_field_has_a_title_and_says_what_it_takes(form):
    for name, param in form.items():
        assert param.schema.get("title"), name
        assert len(param.schema.get("description_md", "")) > 20, name
    for name in TEXT_FIELDS:
        assert "e.g." in form[name].schema["description_md"], name
    # The allowed characters, in words.
    assert "Letters, digits, `.`, `_` and `-` (no spaces)" in form["incident_id"].schema["description_md"]
    assert "lower-case letters, digits and `_`" in form["id_type"].schema["description_md"]


def test_a_refused_text_quotes_the_rule_not_the_whole_field(form):
    with pytest.raises(ParamValidationError) as refused:
        form["incident_id"].resolve("INC 2026")
    assert str(refused.value).startswith("'INC 2026' does not match")
    assert "description_md" not in str(refused.value) and "title" not in str(refused.value)
    assert form["ids_s3_uri"].resolve("s3://bucket/resend-requests/INC-1/ids.csv")
    with pytest.raises(ParamValidationError):
        form["ids_s3_uri"].resolve("s3://bucket/ids.csv\n")


def test_exactly_one_list_source_is_asked_for_in_both_fields(form):
    for name in ("ids_s3_uri", "inline_ids"):
        assert "Give exactly one of this and" in form[name].schema["description_md"]


def test_id_type_is_described_in_words_with_examples_that_match(form):
    text = form["id_type"].schema["description_md"]
    assert "subject_type" not in text
    for name, (words, examples) in ID_TYPE_DESCRIPTIONS.items():
        assert f"`{name}`: {words}" in text
        for example in examples:
            assert f"`{example}`" in text
            assert re.fullmatch(DEFAULT_ID_PATTERNS[name], example), (name, example)


def test_the_message_field_is_named_for_the_message_not_an_address(form):
    template = form["template"].schema
    assert template["title"] == "Message to send" and "email" not in template["title"].lower()
    assert set(template["values_display"]) == set(template["enum"])
    for name, shown in TEMPLATE_NAMES.items():
        assert f"**{shown}** (`{name}`)" in template["description_md"]


@pytest.mark.parametrize(
    ("name", "bad", "message"),
    [
        ("chunk_size", 0, "0 is less than the minimum of 1"),
        ("chunk_size", 5000, "5000 is greater than the maximum of 1000"),
        ("max_recipients", 0, "0 is less than the minimum of 1"),
        ("rate_per_minute", -5, "-5 is less than the minimum of 1"),
    ],
)
def test_out_of_range_numbers_are_refused_not_clamped(form, name, bad, message):
    param = form[name]
    # Airflow's number field clamps to a top-level minimum/maximum when it loses focus: none here.
    assert "minimum" not in param.schema and "maximum" not in param.schema
    with pytest.raises(ParamValidationError) as refused:
        param.resolve(bad)
    assert str(refused.value).startswith(message)
    least, most = NUMBER_BOUNDS[name]
    assert param.resolve(least) == least
    if most:
        assert param.resolve(most) == most


def test_the_dag_as_the_api_server_loads_it_refuses_an_out_of_range_trigger():
    """The form's bounds survive serialization (what the api-server validates a trigger with)."""
    from airflow.dag_processing.dagbag import DagBag
    from airflow.serialization.serialized_objects import DagSerialization

    dag = DagBag(dag_folder=str(REPO_ROOT / "dags" / "mailtrace_resend.py")).dags["mailtrace_resend"]
    served = DagSerialization.from_dict(DagSerialization.to_dict(dag))
    params = served.params.deep_merge(
        {"incident_id": "INC-2026-014", "inline_ids": "STR-1", "chunk_size": 5000}
    )
    with pytest.raises(ValueError, match="chunk_size: 5000 is greater than the maximum of 1000"):
        params.validate()


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"chunk_size": 5000}, "chunk_size must be a whole number from 1 to 1,000 (got 5000)"),
        ({"chunk_size": 0}, "chunk_size must be a whole number from 1 to 1,000 (got 0)"),
        ({"max_recipients": 0}, "max_recipients must be a whole number, at least 1 (got 0)"),
        ({"rate_per_minute": 1.5}, "rate_per_minute must be a whole number, at least 1 (got 1.5)"),
        ({"inline_ids": None}, "give exactly one of the ID list in S3 (ids_s3_uri) and the IDs typed in"),
    ],
)
def test_the_task_refuses_what_the_form_refuses(overrides, message):
    params = ResendParams(
        **{"incident_id": "INC-2026-014", "id_type": "registration", "inline_ids": "STR-000001", **overrides}
    )
    with pytest.raises(ResendInputError, match=re.escape(message)):
        params.check(DEFAULT_ID_PATTERNS)


REAL_TAX_RETURN_IDS = [
    "3f2b8c1e-9a4d-4e6b-8f21-6c0d2e9b7a15",
    "3F2B8C1E-9A4D-4E6B-8F21-6C0D2E9B7A15",
    "0189c3a2-7d5e-7b1f-9c44-2f6e8a1b3d90",  # a version-7 UUID
    "e5b1F0c2-44aa-4b0b-A3c9-9d2f1e7c6b01",  # mixed case, as some exports write them
    "TR-2025-0001234",
]
JUNK_TAX_RETURN_IDS = [
    "3f2b8c1e9a4d4e6b8f216c0d2e9b7a15",  # no hyphens
    "3f2b8c1e-9a4d-4e6b-8f21-6c0d2e9b7a1",  # one digit short
    "3f2b8c1e-9a4d-4e6b-8f21-6c0d2e9b7a15a",
    "{3f2b8c1e-9a4d-4e6b-8f21-6c0d2e9b7a15}",
    "3f2b8c1g-9a4d-4e6b-8f21-6c0d2e9b7a15",  # not hexadecimal
    "3f2b8c1e-9a4d-4e6b-8f21-6c0d2e9b7a15\n",
    "urn:uuid:3f2b8c1e-9a4d-4e6b-8f21-6c0d2e9b7a15",
    "1' OR '1'='1",
    "=cmd|' /C calc'!A0",
    "STR-004211",
    "",
]


@pytest.mark.parametrize("value", REAL_TAX_RETURN_IDS)
def test_tax_return_pattern_accepts_uuids_in_any_case(value):
    assert re.fullmatch(DEFAULT_ID_PATTERNS["tax_return"], value)


@pytest.mark.parametrize("value", JUNK_TAX_RETURN_IDS)
def test_tax_return_pattern_rejects_junk(value):
    assert not re.fullmatch(DEFAULT_ID_PATTERNS["tax_return"], value)


def test_a_malformed_id_is_explained_in_words():
    assert malformed_detail("tax_return", DEFAULT_ID_PATTERNS["tax_return"]).startswith(
        "not a tax return id as the tax service issues it: a UUID"
    )
    assert malformed_detail("registration", r"\AR-\d+\Z") == r"does not match \AR-\d+\Z"  # a deployment's own
