"""The examiners' words for the contract's codes: every status and reason has a phrase and an action, and the
email's groups, caps and Delivery page links are built from them."""

from __future__ import annotations

import re
from itertools import product
from pathlib import Path

import pytest

from mailtrace.events import DELIVERY_STATUSES, FAILURE_REASONS
from mailtrace.report.email_view import action_groups, flagged_groups, page_link
from mailtrace.report.wording import (
    ACTIONS,
    REASON_PHRASES,
    STATUS_PHRASES,
    action_for,
    flag_action_for,
    flag_reason,
    outcome,
    subject_label,
)

CONTRACT = Path(__file__).resolve().parents[1] / "docs" / "CONTRACT.md"
CODE = re.compile(r"\b[a-z]+(?:_[a-z]+)+\b")


def contract_values(field: str) -> set[str]:
    """The codes CONTRACT.md §2 "Values" lists for `field` (its paragraph starts with the field's name)."""
    values = CONTRACT.read_text(encoding="utf-8").split("### Values", 1)[1].split("###", 1)[0]
    (paragraph,) = [p for p in values.split("\n\n") if p.startswith(f"`{field}`")]
    return set(re.findall(r"`([a-z_]+)`", paragraph)) - {field}


def test_the_contract_document_and_the_code_name_the_same_vocabulary():
    assert contract_values("delivery_status") == set(DELIVERY_STATUSES)
    assert contract_values("failure_reason") == set(FAILURE_REASONS)


def test_every_status_and_reason_of_the_contract_has_a_phrase():
    assert set(STATUS_PHRASES) == set(DELIVERY_STATUSES)
    assert set(REASON_PHRASES) == set(FAILURE_REASONS)


@pytest.mark.parametrize(("status", "reason"), list(product(DELIVERY_STATUSES, (None, *FAILURE_REASONS))))
def test_every_combination_reads_as_plain_words_with_an_action(status, reason):
    said = outcome(status, reason)
    assert "cannot describe" not in said
    assert not CODE.search(said), said
    action = action_for(status, reason)
    assert ACTIONS[action.key] is action
    assert not CODE.search(action.heading + action.explanation)


def test_the_delivery_check_constraints_allow_exactly_the_phrased_codes(warehouse_conn):
    """The warehouse's own check constraints on mailtrace.delivery (migration 013) are the third source."""
    constraints = dict(
        warehouse_conn.execute(
            """SELECT c.conname, pg_get_constraintdef(c.oid)
                 FROM pg_constraint AS c
                WHERE c.conrelid = 'mailtrace.delivery'::regclass AND c.contype = 'c'"""
        ).fetchall()
    )
    by_column = {
        column: set(re.findall(r"'([a-z_]+)'", definition))
        for column in ("delivery_status", "failure_reason")
        for definition in constraints.values()
        if f"({column} " in definition or f"(({column})" in definition
    }
    assert by_column == {"delivery_status": set(STATUS_PHRASES), "failure_reason": set(REASON_PHRASES)}


@pytest.mark.parametrize(
    ("status", "reason", "said", "action"),
    [
        (
            "permanent_failure",
            "invalid_address",
            "Could not be delivered: the address does not exist",
            "new_address",
        ),
        (
            "permanent_failure",
            "suppressed",
            "the email service refuses to send to this address",
            "new_address",
        ),
        ("temporary_failure", "mailbox_full", "the mailbox was full or the mail server busy", "wait"),
        ("temporary_failure", "unknown", "the email service did not say why", "wait"),
        (
            "permanent_failure",
            "unknown",
            "Could not be delivered: the email service did not say why",
            "read_details",
        ),
        ("not_at_provider", None, "the email service never received it", "send_again"),
        ("send_failed", "provider_error", "could not hand it to the email service", "send_again"),
        ("technical_failure", "provider_error", "the email service reported an error", "report_fault"),
        ("complaint", None, "Delivered, then marked as spam by the person", "contact_another_way"),
        ("permanent_failure", "content_rejected", "refused the email's content", "check_content"),
    ],
)
def test_phrases_and_actions(status, reason, said, action):
    assert said in outcome(status, reason)
    assert action_for(status, reason).key == action


def test_a_code_outside_the_contract_is_never_guessed_or_repeated():
    assert outcome("bounced_softly", None) == "An outcome this email cannot describe (see the CSV)"
    assert outcome("permanent_failure", "greylisted") == (
        "Could not be delivered: for a reason this email cannot describe (see the CSV)"
    )
    assert action_for("bounced_softly", None).key == "read_details"
    assert action_for("permanent_failure", "greylisted").key == "read_details"
    assert flag_action_for("greylisted").key == "read_details"
    assert "greylisted" not in flag_reason("greylisted")


def test_flags_ask_for_a_new_address_or_a_mailbox_check():
    assert flag_action_for("invalid_address").key == "new_address"
    assert flag_action_for("suppressed").key == "new_address"
    assert flag_action_for("mailbox_full").key == "check_mailbox"
    assert flag_action_for("no_receipt").key == "check_mailbox"
    assert flag_reason("invalid_address") == "The address does not exist"


def test_subject_labels():
    assert subject_label("registration") == "Registration"
    assert subject_label("tax_return") == "Tax return"
    assert subject_label("  ") == "Subject"


def test_page_links_keep_the_base_query_and_encode_values():
    assert page_link(None, nap_since="2026-01-05") is None
    assert page_link(
        "https://airflow.example.gov/plugin/delivery", nap_since="2026-01-05", nap_until=None
    ) == ("https://airflow.example.gov/plugin/delivery?nap_since=2026-01-05")
    assert page_link("https://a.example/mailtrace/?x=1", flagged_reason="a&b c") == (
        "https://a.example/mailtrace/?x=1&flagged_reason=a%26b+c"
    )


def test_counts_are_grouped_by_action_in_order_and_rows_that_read_the_same_merge():
    rows = [
        {
            "delivery_status": "temporary_failure",
            "failure_reason": "mailbox_full",
            "current": 5,
            "previous": 1,
        },
        {
            "delivery_status": "permanent_failure",
            "failure_reason": "invalid_address",
            "current": 2,
            "previous": 4,
        },
        {"delivery_status": "not_at_provider", "failure_reason": "", "current": 3, "previous": 0},
        {"delivery_status": "permanent_failure", "failure_reason": "suppressed", "current": 1, "previous": 0},
        {"delivery_status": "permanent_failure", "failure_reason": "odd_one", "current": 1, "previous": 0},
        {"delivery_status": "permanent_failure", "failure_reason": "odd_two", "current": 1, "previous": 2},
    ]
    groups = action_groups(
        rows, base_url="https://p.example/d", first_day="2026-01-05", last_day="2026-01-11"
    )
    assert [(g["heading"], g["current"], g["previous"], g["change"]) for g in groups] == [
        ("Ask the person for a new email address", 3, 4, -1),
        ("Send it again", 3, 0, 3),
        ("Nothing to do now: check next week", 5, 1, 4),
        ("Read the details before acting", 2, 2, 0),
    ]
    new_address, send_again, _, details = groups
    assert new_address["rows"][0]["link"] == (
        "https://p.example/d?flagged_reason=invalid_address&flagged_since=2026-01-05&flagged_until=2026-01-11"
    )
    assert send_again["rows"][0]["link"] == "https://p.example/d?nap_since=2026-01-05&nap_until=2026-01-11"
    assert groups[2]["rows"][0]["link"] is None  # the page has no list of temporary failures
    (merged,) = details["rows"]  # two unknown reasons read the same: one line
    assert (merged["current"], merged["previous"], merged["change"]) == (2, 2, 0)
    assert action_groups(rows)[1]["rows"][0]["link"] is None  # no page address, no links


def test_flagged_groups_cap_each_heading_and_count_the_rest():
    listed = [
        {
            "subject_type": "registration",
            "subject_id": f"R-{i}",
            "email": f"p{i}@example.com",
            "failure_reason": "invalid_address" if i % 2 else "mailbox_full",
            "flagged_at": f"2026-01-06 10:{i:02d}",
        }
        for i in range(8)
    ] + [
        {
            "subject_type": "tax_return",
            "subject_id": "T-1",
            "email": "t@example.com",
            "failure_reason": "suppressed",
            "flagged_at": "2026-01-06 11:00",
        }
    ]
    totals = {"invalid_address": 40, "mailbox_full": 4, "suppressed": 1}
    groups = flagged_groups(listed, totals, per_group=3, base_url="https://p.example/d")
    assert [(g["heading"], g["total"], len(g["rows"]), g["omitted"]) for g in groups] == [
        ("Ask the person for a new email address", 41, 3, 38),
        ("Ask the person to check their mailbox", 4, 3, 1),
    ]
    new_address, mailbox = groups
    assert mailbox["subject_header"] == "Registration"
    assert [r["subject"] for r in mailbox["rows"]] == ["R-0", "R-2", "R-4"]
    assert [link["url"] for link in new_address["links"]] == [
        "https://p.example/d?flagged_reason=invalid_address",
        "https://p.example/d?flagged_reason=suppressed",
    ]
    # Without the page's address there are no links; with one subject type the header is its label.
    (only,) = flagged_groups(listed[-1:], None, per_group=3)
    assert (only["subject_header"], only["rows"][0]["subject"], only["links"]) == ("Tax return", "T-1", [])
    mixed = flagged_groups([listed[1], listed[-1]], None, per_group=3)[0]
    assert mixed["subject_header"] == "Subject"
    assert [r["subject"] for r in mixed["rows"]] == ["Registration R-1", "Tax return T-1"]
