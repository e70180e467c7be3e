"""Keep personal data out of logs: addresses are masked before they are logged."""

from __future__ import annotations

import logging
import re


def mask_email(address: str | None) -> str:
    """`alice.smith@example.gov` -> `a***@example.gov`; anything unparseable -> `***`."""
    if not address or "@" not in address:
        return "***"
    local, _, domain = address.strip().rpartition("@")
    if not local or not domain:
        return "***"
    return f"{local[0]}***@{domain}"


# An address as mail servers and providers quote it in their answers ("550 5.1.1 <a.b@example.gov>",
# "identities failed the check: a.b@example.gov"); \w covers internationalised local parts and domains.
_ADDRESS_IN_TEXT = re.compile(r"[\w.!#$%&'*+/=?^`{|}~-]+@[\w-]+(?:\.[\w-]+)*")


def mask_text(text: object) -> str:
    """`text` with every email address in it masked (text quoted from servers, exceptions, stored errors)."""
    return _ADDRESS_IN_TEXT.sub(lambda match: mask_email(match.group(0)), str(text))


class MaskAddresses(logging.Filter):
    """Masks the addresses in every record of the logger it is added to (a library's DEBUG output)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg, record.args = mask_text(record.getMessage()), None
        return True


def mask_library_logs(*logger_names: str) -> None:
    """Add MaskAddresses to these loggers (once each): libraries that log whole requests or answers."""
    for name in logger_names:
        logger = logging.getLogger(name)
        if not any(isinstance(existing, MaskAddresses) for existing in logger.filters):
            logger.addFilter(MaskAddresses())
