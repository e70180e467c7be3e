"""Send multipart (plain text + HTML) email with attachments through the `smtp_default` connection."""

from __future__ import annotations

import logging
import smtplib
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import getaddresses, make_msgid, parseaddr

from airflow.sdk.exceptions import AirflowFailException

from mailtrace.privacy import mask_email, mask_text

log = logging.getLogger(__name__)

SMTP_CONN_ID = "smtp_default"


class RecipientsRefused(AirflowFailException):
    """The SMTP server took the message for some recipients and refused the others.

    smtplib raises only when every recipient is refused; a partial refusal comes back as a return
    value that is easy to drop, and then somebody silently never gets the email. A refused address
    stays refused, and a retry would mail the others again (or, once recorded, quietly succeed), so the
    task fails at once, without retries, and the failure alert names the refused addresses.
    """

    def __init__(self, message_id: str, accepted: list[str], refused: dict[str, tuple[int, bytes]]):
        self.message_id = message_id
        self.accepted = accepted
        self.refused = refused
        reasons = "; ".join(
            f"{mask_email(address)}: {code} {mask_text(reply.decode(errors='replace'))}"
            for address, (code, reply) in refused.items()
        )
        super().__init__(f"the SMTP server refused {len(refused)} of the recipients: {reasons}")


class SmtpError(RuntimeError):
    """An SMTP failure with the server's text masked (it quotes addresses: `550 5.1.1 <someone@…>`).

    Raised in place of smtplib's own exception, whose message carries the addresses as they are and
    would reach the task log and the failure alert. A transient fault: the task retries.
    """


@dataclass(frozen=True)
class Attachment:
    filename: str
    content: bytes
    mime_type: str = "text/csv"


def _single_line(value: str, field: str) -> str:
    """Refuse line breaks in header values: a newline would let data inject extra headers.

    Every character str.splitlines() breaks on counts, since the email package refuses them as well.
    """
    if len(value.splitlines()) > 1 or value.endswith(("\r", "\n")):
        raise ValueError(f"{field} must be a single line")
    return value


def _one_address(value: str) -> str:
    """A recipient must be exactly one address: a comma or semicolon would smuggle in more recipients."""
    _single_line(value, "recipient")
    parsed = getaddresses([value.replace(";", ",")])
    if len(parsed) != 1 or "@" not in parsed[0][1]:
        raise ValueError(f"recipient must be one email address, got {len(parsed)} parts")
    return value


def build_message(
    *,
    sender: str,
    to: list[str],
    subject: str,
    text: str,
    html: str | None = None,
    attachments: tuple[Attachment, ...] = (),
) -> EmailMessage:
    if not to:
        raise ValueError("no recipients")
    message = EmailMessage()
    message["From"] = _single_line(sender, "sender")
    message["To"] = ", ".join(_one_address(address) for address in to)
    message["Subject"] = _single_line(subject, "subject")
    message["Message-ID"] = make_msgid(domain=sender.rpartition("@")[2] or None)
    message.set_content(text)
    if html is not None:
        message.add_alternative(html, subtype="html")
    for attachment in attachments:
        maintype, _, subtype = attachment.mime_type.partition("/")
        message.add_attachment(
            attachment.content, maintype=maintype, subtype=subtype, filename=attachment.filename
        )
    return message


def send_email(
    *,
    to: list[str],
    subject: str,
    text: str,
    html: str | None = None,
    attachments: tuple[Attachment, ...] = (),
    conn_id: str = SMTP_CONN_ID,
) -> str:
    """Send one message to `to` and return its Message-ID.

    Raises RecipientsRefused (after the others were sent the message) when the server refuses some of `to`.
    """
    from airflow.providers.smtp.hooks.smtp import SmtpHook

    try:
        with SmtpHook(smtp_conn_id=conn_id) as hook:
            message = build_message(
                sender=hook.from_email or "mailtrace@localhost",
                to=to,
                subject=subject,
                text=text,
                html=html,
                attachments=attachments,
            )
            # SmtpHook only builds HTML-only messages itself; its connected client sends ours as is.
            refused = hook.get_conn()._smtp_client.send_message(message)  # noqa: SLF001
    except smtplib.SMTPRecipientsRefused as error:
        # Every recipient refused: smtplib raises instead of returning the refusals.
        raise RecipientsRefused(message["Message-ID"], [], error.recipients) from None
    except (smtplib.SMTPException, OSError) as error:
        # `from None`: the original, unmasked, would be printed with the traceback.
        raise SmtpError(f"sending {subject!r} failed: {type(error).__name__}: {mask_text(error)}") from None
    # smtplib keys the refusals by the bare address it sent in RCPT TO, whatever form `to` had.
    accepted = [address for address in to if parseaddr(address)[1] not in refused]
    log.info("sent %r to %s", subject, ", ".join(mask_email(a) for a in accepted))
    if refused:
        raise RecipientsRefused(message["Message-ID"], accepted, refused)
    return message["Message-ID"]
