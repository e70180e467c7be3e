"""Keep personal data out of logs: addresses are masked before they are logged or stored as free text.

`mask_email` masks one address; `mask_text` masks every address inside a free text (a mail server's
"550 5.1.1 <alice@example.gov>: no such user", an exception message). `library_bodies_kept_out_of_logs`
keeps AWS and HTTP libraries from logging request and response bodies (an SQS receive carries whole
SES events, addresses included) even when logging is at DEBUG.
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Iterator

_ADDRESS_IN_TEXT = re.compile(r"[^\s<>()\[\]\"',;:@]+@[^\s<>()\[\]\"',;:@]+")
# Loggers that write wire-level detail at DEBUG: botocore.parsers logs every response body,
# botocore.endpoint every request's parameters, urllib3 the request lines.
BODY_LOGGING_LIBRARIES = ("botocore", "boto3", "s3transfer", "urllib3", "aiobotocore")


def mask_email(address: str | None) -> str:
    """`alice.smith@example.gov` -> `a***@example.gov`; anything unparseable -> `***`."""
    if not address or "@" not in address:
        return "***"
    local, _, domain = address.strip().rpartition("@")
    if not local or not domain:
        return "***"
    return f"{local[0]}***@{domain}"


def mask_text(text: object) -> str | None:
    """`text` (or an exception, as `str()` gives it) with every address masked like `mask_email`.

    None stays None, so optional columns keep their NULL.
    """
    if text is None:
        return None
    return _ADDRESS_IN_TEXT.sub(lambda match: mask_email(match.group(0)), str(text))


@contextlib.contextmanager
def library_bodies_kept_out_of_logs() -> Iterator[None]:
    """Hold the body-logging libraries (and any of their loggers set lower) at INFO or above.

    Levels are restored on exit, so a developer who turned botocore's DEBUG on gets it back after.
    """
    manager = logging.Logger.manager
    names = [
        name
        for name in (*BODY_LOGGING_LIBRARIES, *manager.loggerDict)
        if name.split(".", 1)[0] in BODY_LOGGING_LIBRARIES
    ]
    saved = {}
    for name in dict.fromkeys(names):
        logger = logging.getLogger(name)
        if logger.level == logging.NOTSET and "." in name:
            continue  # inherits from its library's top logger, raised below
        if logger.level < logging.INFO:
            saved[name] = logger.level
            logger.setLevel(logging.INFO)
    try:
        yield
    finally:
        for name, level in saved.items():
            logging.getLogger(name).setLevel(level)
