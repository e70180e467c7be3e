"""The one check of an email address mailtrace sends to (resend recipients, the SES sender, examiners)."""

from __future__ import annotations


def address_problem(address: str) -> str | None:
    """Why `address` cannot be sent to, or None when its syntax is valid (no DNS look-up)."""
    from email_validator import EmailNotValidError, validate_email

    try:
        validate_email(address, check_deliverability=False)
    except EmailNotValidError as error:
        return str(error)
    return None
