"""Keep personal data out of logs: addresses are masked before they are logged."""

from __future__ import annotations


def mask_email(address: str | None) -> str:
    """`alice.smith@example.gov` -> `a***@example.gov`; anything unparseable -> `***`."""
    if not address or "@" not in address:
        return "***"
    local, _, domain = address.strip().rpartition("@")
    if not local or not domain:
        return "***"
    return f"{local[0]}***@{domain}"
