"""Mask addresses in what the Delivery page returns, for users not allowed to see them in full.

Address columns are masked with `mailtrace.privacy.mask_email`; free-text columns (provider
diagnostics such as "550 5.1.1 <alice@example.gov>: no such user") have every address inside them
masked the same way.
"""

from __future__ import annotations

from typing import Any

from mailtrace.privacy import mask_email, mask_text

ADDRESS_FIELDS = frozenset({"email", "recipient_email"})
TEXT_FIELDS = frozenset({"detail", "delivery_detail"})


def mask(value: Any) -> Any:
    """A copy of `value` (dicts and lists, nested) with addresses masked."""
    if isinstance(value, list):
        return [mask(item) for item in value]
    if isinstance(value, dict):
        masked = {}
        for key, item in value.items():
            if key in ADDRESS_FIELDS and isinstance(item, str):
                masked[key] = mask_email(item)
            elif key in TEXT_FIELDS and isinstance(item, str):
                masked[key] = mask_text(item)
            else:
                masked[key] = mask(item)
        return masked
    return value
