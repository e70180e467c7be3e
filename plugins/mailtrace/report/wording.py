"""What each delivery status and failure reason means to an examiner, and what to do about it.

The contract's vocabulary (`mailtrace.events`, CONTRACT.md §2) is written for systems: `permanent_failure`,
`invalid_address`, `not_at_provider`. The examiners' emails say instead what happened in plain words and
what to do now, and list the failures grouped by that action; the CSV keeps the codes. This is the one
home of those phrases (tests/test_report_wording.py checks that it covers every status and reason the
contract and the warehouse's check constraints allow). A code it does not know is said to be unknown,
never guessed: the phrase sends the reader to the CSV.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Action:
    """What an examiner does about a group of failures: a heading and one sentence saying why."""

    key: str
    heading: str
    explanation: str


_ACTIONS = (
    Action(
        "new_address",
        "Ask the person for a new email address",
        "These addresses cannot receive email: every email sent to them is lost until the person gives a "
        "new one.",
    ),
    Action(
        "check_mailbox",
        "Ask the person to check their mailbox",
        "Emails to these addresses keep failing (a full mailbox, or no answer from their mail server): ask "
        "the person to make room, or for a new email address.",
    ),
    Action(
        "send_again",
        "Send it again",
        "The email never reached the person, and their address is not the cause: sending it again is safe.",
    ),
    Action(
        "check_content",
        "Ask the team that writes the email to check its content",
        "The person's mail server refused what the email says or carries; the details are in the CSV.",
    ),
    Action(
        "report_fault",
        "Tell the technical team",
        "A fault at the email service: the technical team can read the details in the CSV. Send the email "
        "again once they say it is fixed.",
    ),
    Action(
        "contact_another_way",
        "Contact the person another way if it matters",
        "The person received the email and marked it as spam: sending it again would not help.",
    ),
    Action(
        "wait",
        "Nothing to do now: check next week",
        "The mailbox was full or the person's mail server busy. If it keeps happening, the address is "
        "flagged and listed under its own heading.",
    ),
    Action(
        "read_details",
        "Read the details before acting",
        "The email service did not say why (or said something this email cannot describe): read the "
        "details in the CSV; nothing is guessed here.",
    ),
    Action("nothing", "Nothing to do", "The email reached the person, or its receipt is still on its way."),
)
# In the order the email lists them: the actions that help the person most first.
ACTIONS: dict[str, Action] = {action.key: action for action in _ACTIONS}

STATUS_PHRASES: dict[str, str] = {
    "pending": "sent, no receipt from the email service yet",
    "delivered": "delivered",
    "permanent_failure": "could not be delivered",
    "temporary_failure": "not delivered, for a reason that may pass",
    "technical_failure": "not delivered because of a fault at the email service",
    "complaint": "delivered, then marked as spam by the person",
    "not_at_provider": "our system recorded it as sent, but the email service never received it",
    "send_failed": "our system could not hand it to the email service",
}
REASON_PHRASES: dict[str, str] = {
    "invalid_address": "the address does not exist",
    "suppressed": "the email service refuses to send to this address (it bounced or was marked as spam "
    "before)",
    "mailbox_full": "the mailbox was full or the mail server busy",
    "content_rejected": "the person's mail server refused the email's content",
    "no_receipt": "the email service gave up waiting for an answer from the person's mail server",
    "provider_error": "the email service reported an error",
    "unknown": "the email service did not say why",
}
UNKNOWN_STATUS_PHRASE = "an outcome this email cannot describe (see the CSV)"
UNKNOWN_REASON_PHRASE = "for a reason this email cannot describe (see the CSV)"

# The status decides what to do when it says more than any reason could.
_STATUS_ACTIONS = {
    "complaint": "contact_another_way",
    "not_at_provider": "send_again",
    "send_failed": "send_again",
    "pending": "nothing",
    "delivered": "nothing",
}
# Otherwise the reason does, when the provider gave a telling one ...
_REASON_ACTIONS = {
    "invalid_address": "new_address",
    "suppressed": "new_address",
    "mailbox_full": "wait",
    "content_rejected": "check_content",
    "no_receipt": "send_again",
    "provider_error": "report_fault",
}
# ... and else the status's own default (a reason of `unknown`, or none).
_STATUS_DEFAULT_ACTIONS = {
    "permanent_failure": "read_details",
    "temporary_failure": "wait",
    "technical_failure": "report_fault",
}
# A flag means the address failed for good (a hard bounce) or again and again (soft failures).
_FLAG_ACTIONS = {
    "invalid_address": "new_address",
    "suppressed": "new_address",
    "mailbox_full": "check_mailbox",
    "no_receipt": "check_mailbox",
}


def _sentence(phrase: str) -> str:
    return phrase[:1].upper() + phrase[1:]


def outcome(status: str | None, reason: str | None) -> str:
    """What happened to an email, as one sentence: `Could not be delivered: the address does not exist`."""
    if status not in STATUS_PHRASES:
        return _sentence(UNKNOWN_STATUS_PHRASE)
    said = STATUS_PHRASES[status]
    if not reason:
        return _sentence(said)
    return _sentence(f"{said}: {REASON_PHRASES.get(reason, UNKNOWN_REASON_PHRASE)}")


def action_for(status: str | None, reason: str | None) -> Action:
    """What to do about one email with this status and reason (`read_details` for codes it does not know)."""
    if status not in STATUS_PHRASES or (reason and reason not in REASON_PHRASES):
        return ACTIONS["read_details"]
    key = _STATUS_ACTIONS.get(status) or _REASON_ACTIONS.get(reason or "")
    return ACTIONS[key or _STATUS_DEFAULT_ACTIONS.get(status, "read_details")]


def flag_reason(reason: str | None) -> str:
    """Why an address is flagged, as a sentence."""
    if not reason:
        return "Emails to it failed"
    return _sentence(REASON_PHRASES.get(reason, UNKNOWN_REASON_PHRASE))


def flag_action_for(reason: str | None) -> Action:
    """What to do about an address flagged for this reason."""
    return ACTIONS[_FLAG_ACTIONS.get(reason or "", "read_details")]


def subject_label(subject_type: str) -> str:
    """`tax_return` -> `Tax return`: the subject type as a column header or a word in a sentence."""
    words = " ".join(subject_type.replace("_", " ").split())
    return _sentence(words) or "Subject"
