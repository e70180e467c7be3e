"""The resend's trigger parameters, checked once before anything is read or sent."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from mailtrace.id_list import (
    DEFAULT_ID_PATTERNS,
)
from mailtrace.resend.constants import (
    DEFAULT_RATE_PER_MINUTE,
    INCIDENT_ID_PATTERN,
    LANGUAGES,
    NOTIFICATION_TYPES,
)
from mailtrace.resend.errors import ResendInputError
from mailtrace.resend_form import (
    DEFAULT_CHUNK_SIZE,
    DEFAULT_MAX_RECIPIENTS,
    NUMBER_BOUNDS,
    bounds_in_words,
)
from mailtrace.settings import setting


@dataclass(frozen=True)
class ResendParams:
    """What ops asked for in the trigger form, checked again here (the form is not the only caller)."""

    incident_id: str
    id_type: str
    template: str = "error_resolved"
    language: str = "en"
    ids_s3_uri: str | None = None
    inline_ids: str | None = None
    dry_run: bool = True
    force_resend: bool = False
    max_recipients: int = DEFAULT_MAX_RECIPIENTS
    rate_per_minute: int = DEFAULT_RATE_PER_MINUTE
    chunk_size: int = DEFAULT_CHUNK_SIZE

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> ResendParams:
        known = {name: values[name] for name in cls.__dataclass_fields__ if name in values}
        for name in ("ids_s3_uri", "inline_ids"):
            if isinstance(known.get(name), str) and not known[name].strip():
                known[name] = None
        missing = [name for name in ("incident_id", "id_type") if name not in known]
        if missing:
            raise ResendInputError(f"invalid resend parameters: {', '.join(missing)} missing")
        params = cls(**known)
        params.check(id_patterns())
        return params

    def check(self, patterns: Mapping[str, str]) -> None:
        problems = []
        if not isinstance(self.incident_id, str) or not re.match(INCIDENT_ID_PATTERN, self.incident_id):
            problems.append(f"incident_id must match {INCIDENT_ID_PATTERN}")
        if self.id_type not in patterns:
            problems.append(f"id_type must be one of {sorted(patterns)}")
        if self.template not in NOTIFICATION_TYPES:
            problems.append(f"template must be one of {sorted(NOTIFICATION_TYPES)}")
        if self.language not in LANGUAGES:
            problems.append(f"language must be one of {list(LANGUAGES)}")
        if (self.ids_s3_uri is None) == (self.inline_ids is None):
            problems.append(
                "give exactly one of the ID list in S3 (ids_s3_uri) and the IDs typed in (inline_ids)"
            )
        if self.ids_s3_uri is not None and not str(self.ids_s3_uri).startswith("s3://"):
            problems.append("ids_s3_uri must start with s3://")
        for name, (least, most) in NUMBER_BOUNDS.items():
            value = getattr(self, name)
            if (
                isinstance(value, bool)
                or not isinstance(value, int)
                or value < least
                or (most is not None and value > most)
            ):
                # Refused, never moved to the nearest allowed value: the run does what was asked or nothing.
                problems.append(f"{name} must be {bounds_in_words(name)} (got {value!r})")
        for name in ("dry_run", "force_resend"):
            if not isinstance(getattr(self, name), bool):
                problems.append(f"{name} must be true or false")
        if problems:
            raise ResendInputError("invalid resend parameters: " + "; ".join(problems))

    @property
    def notification_type(self) -> str:
        return NOTIFICATION_TYPES[self.template]


def id_patterns() -> dict[str, str]:
    """ID regex per id_type: the defaults, overridden by Variable `mailtrace_resend_id_patterns`."""
    overrides = setting("resend_id_patterns")
    if not isinstance(overrides, dict):
        raise ResendInputError("Variable mailtrace_resend_id_patterns must be a JSON object {id_type: regex}")
    return {**DEFAULT_ID_PATTERNS, **overrides}


def reference_for(incident_id: str, subject_type: str, subject_id: str, generation: int) -> str:
    """The Notify `reference` (and event_id) of one resend: the same on every retry, unique overall."""
    return f"resend:{incident_id}:{subject_type}:{subject_id}:{generation}"
