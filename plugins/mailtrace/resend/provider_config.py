"""Which provider resends go through and the settings it needs, checked before any send."""

from __future__ import annotations

from email.utils import parseaddr

from mailtrace.addresses import address_problem
from mailtrace.providers.ses import PROVIDER as SES_PROVIDER
from mailtrace.resend.constants import _SUBJECT_FORBIDDEN, PROVIDERS
from mailtrace.resend.errors import ResendInputError
from mailtrace.settings import setting


def resend_provider() -> str:
    """The provider new resends go through: Variable `mailtrace_resend_provider`, gc_notify or ses."""
    value = setting("resend_provider").lower()
    if value not in PROVIDERS:
        raise ResendInputError(
            f"Variable mailtrace_resend_provider must be one of {list(PROVIDERS)} (got {value!r})"
        )
    return value


def check_provider_settings(provider: str) -> None:
    """Fail with a clear message when the settings sending through `provider` needs are missing."""
    if provider == SES_PROVIDER:
        ses_sender()
    else:
        notify_template_id()


def notify_template_id() -> str:
    """The generic Notify template (placeholders ((subject)) and ((body))) every resend uses."""
    value = setting("notify_template_id") or ""
    if not value:
        raise ResendInputError(
            "set Variable mailtrace_notify_template_id to the generic Notify template's id"
        )
    return value


def ses_sender() -> str:
    """The From of SES resends (Variable `mailtrace_ses_sender`): a verified address, or `Name <address>`."""
    value = setting("ses_sender") or ""
    if not value:
        raise ResendInputError(
            "set Variable mailtrace_ses_sender to the SES-verified address resends come from"
        )
    if _SUBJECT_FORBIDDEN.search(value) or address_problem(parseaddr(value)[1]):
        raise ResendInputError(
            "Variable mailtrace_ses_sender must be one email address, optionally 'Name <address>'"
        )
    return value


def settle_seconds() -> float:
    """How long after an ambiguous Notify answer a lookup miss may lead to a new send."""
    return setting("resend_settle_seconds")
