"""The SES sender and how provider errors are sorted (systemic refusal, throttling, ambiguous)."""

from __future__ import annotations

import email.policy
import time
from collections.abc import Callable
from email.message import EmailMessage
from email.utils import formatdate, parseaddr
from typing import Any

from mailtrace.providers.gc_notify import (
    NotifyApiError,
)
from mailtrace.resend.constants import _SES_THROTTLE_CODES
from mailtrace.resend.ledger import _LedgerRow
from mailtrace.resend.provider_config import ses_sender
from mailtrace.resend.rendering import RenderedEmail
from mailtrace.s3 import AWS_CONN_ID
from mailtrace.settings import setting


class SesSender:
    """Sends one rendered email (text and HTML parts) through SES with connection `aws_default`.

    botocore's own retries are switched off: it would repeat a call that timed out or got a 5xx,
    and SES cannot tell afterwards whether the first one was accepted.
    """

    def __init__(
        self,
        *,
        sender: str,
        configuration_set: str | None = None,
        client: Any = None,
        sleep: Callable[[float], None] = time.sleep,
    ):
        self.sender = sender
        self.configuration_set = configuration_set
        self._client = client
        self.sleep = sleep

    @classmethod
    def from_settings(cls) -> SesSender:
        configuration_set = setting("ses_configuration_set") or None
        return cls(sender=ses_sender(), configuration_set=configuration_set)

    @property
    def client(self) -> Any:
        if self._client is None:
            from airflow.providers.amazon.aws.hooks.ses import SesHook
            from botocore.config import Config

            no_retries = SesHook(aws_conn_id=AWS_CONN_ID).config.merge(
                Config(retries={"total_max_attempts": 1, "mode": "standard"})
            )
            self._client = SesHook(aws_conn_id=AWS_CONN_ID, config=no_retries).conn
        return self._client

    def message(self, row: _LedgerRow, rendered: RenderedEmail) -> bytes:
        """The MIME message: multipart/alternative with the text and the HTML part."""
        message = EmailMessage(policy=email.policy.SMTP)
        message["From"] = self.sender
        message["To"] = row.recipient_email
        message["Subject"] = rendered.subject
        message["Date"] = formatdate(usegmt=True)
        message["X-Mailtrace-Reference"] = row.reference
        message.set_content(rendered.text)
        message.add_alternative(rendered.html, subtype="html")
        return message.as_bytes()

    def send(self, raw_message: bytes) -> str:
        """Hand the message to SES (recipients from its To header) and return the SES MessageId."""
        request: dict[str, Any] = {"Source": self.sender, "RawMessage": {"Data": raw_message}}
        if self.configuration_set:
            request["ConfigurationSetName"] = self.configuration_set
        return str(self.client.send_raw_email(**request)["MessageId"])


def _ses_error_kind(error: Exception) -> str:
    """What a failed SES call means: throttled or not_sent (certainly not accepted: safe to send again),
    refused (SES said no for good), or ambiguous (it may have been accepted)."""
    from botocore.exceptions import (
        ClientError,
        NoCredentialsError,
        NoRegionError,
        ParamValidationError,
        PartialCredentialsError,
    )
    from botocore.exceptions import ConnectionError as NoConnectionError

    if isinstance(error, ClientError):
        code = error.response.get("Error", {}).get("Code", "")
        status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0
        if code in _SES_THROTTLE_CODES:
            return "throttled"
        return "refused" if 400 <= status < 500 else "ambiguous"
    # No connection was made, or the request was never built: nothing reached SES.
    if isinstance(
        error,
        NoConnectionError
        | NoCredentialsError
        | PartialCredentialsError
        | NoRegionError
        | ParamValidationError,
    ):
        return "not_sent"
    return "ambiguous"  # read timeout, connection dropped mid-answer, unreadable answer, anything else


def _describe_ses_error(error: Exception) -> str:
    response = getattr(error, "response", None)
    if isinstance(response, dict) and "Error" in response:
        status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        return f"SES answered {status} {response['Error'].get('Code')}: {response['Error'].get('Message')}"
    return f"{type(error).__name__}: {error}"[:300]


# SES error codes that refuse every email of the account or configuration, not one address.
_SES_SYSTEMIC_CODES = {
    "AccountSendingPausedException": "SES sending is paused for the account",
    "ConfigurationSetDoesNotExist": "the SES configuration set (Variable mailtrace_ses_configuration_set) "
    "does not exist",
    "ConfigurationSetSendingPausedException": "SES sending is paused for the configuration set",
    "MailFromDomainNotVerifiedException": "the SES MAIL FROM domain is not verified",
}


def notify_systemic_refusal(error: NotifyApiError) -> str | None:
    """What a Notify refusal says about every email of the resend, or None when it is about this one.

    403 is the API key (revoked, wrong, or from another service); a 400 naming the template is the
    template id; trial mode or a team key allows only the service's team as recipients.
    """
    status = getattr(error.__cause__, "status_code", None)
    text = str(error).lower()
    if status in (401, 403):
        return "Notify refused the API key (revoked or wrong: connection notify_api)"
    if status == 400 and "template" in text:
        return "Notify does not know the template (Variable mailtrace_notify_template_id)"
    if status == 400 and ("trial mode" in text or "team-only" in text or "team only" in text):
        return "the Notify service is in trial mode or the key is a team key: only team members can receive"
    return None


def ses_systemic_refusal(error: Exception, sender: str) -> str | None:
    """What an SES refusal says about every email of the resend, or None when it is about this one."""
    response = getattr(error, "response", None) or {}
    code = response.get("Error", {}).get("Code", "")
    message = str(response.get("Error", {}).get("Message", "")).lower()
    if code in _SES_SYSTEMIC_CODES:
        return _SES_SYSTEMIC_CODES[code]
    if code != "MessageRejected":
        return None
    # "Email address is not verified. The following identities failed the check …: <sender>", or
    # "Did not have authority to send from email <sender>": the sender is refused for every email.
    sender_address = parseaddr(sender)[1].lower()
    if sender_address and sender_address in message:
        return "the SES sender is not verified (Variable mailtrace_ses_sender)"
    if "not verified" in message:
        return (
            "SES is in the sandbox: it sends only to verified addresses (request production access, "
            "or verify the recipients)"
        )
    return None
