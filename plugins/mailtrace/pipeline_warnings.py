"""Warnings the pipeline logs, also kept in `mailtrace.pipeline_warning` for the Delivery page's health panel.

A warning in a run's log (a missing source index, a provider status mailtrace does not map) is read by
nobody and rotated away; the health panel shows the recorded ones instead. One row per distinct warning
(`kind`, `subject`), with when it was first and last met and by how many runs; a check that no longer
finds the condition marks it resolved, so the panel lists only what still holds. Written in the caller's
transaction: a run that rolls back (a dry run, a failure) records nothing. Addresses are masked in what is
stored (every viewer of the page sees the panel), and a message is cut to 2,000 characters.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import psycopg

from mailtrace.paths import read_sql
from mailtrace.privacy import mask_text

MISSING_INPUT_INDEX = "missing_input_index"
UNMAPPED_NOTIFY_STATUS = "unmapped_notify_status"
S3_DROP_SET_ASIDE = "s3_drop_set_aside"
# Warnings about one event rather than a standing condition: nothing resolves them, so the health panel
# shows them for this long after they were last met.
EVENT_KINDS = (S3_DROP_SET_ASIDE,)
EVENT_SHOWN_FOR_DAYS = 7


def record_check(
    conn: psycopg.Connection,
    kind: str,
    found: Mapping[str, str],
    *,
    checked: Iterable[str] | None,
) -> None:
    """Record what one check found: each subject of `found` (subject -> message) is a warning now.

    `checked`: the subjects the check looked at; those it did not find are resolved. None: it looked at
    every subject of its kind (a walk over everything the provider reported); an empty list: it proves
    nothing about the others (a look-up of a few items), so nothing is resolved.
    """
    found = {_stored(subject): mask_text(message)[:2000] for subject, message in found.items()}
    with conn.cursor() as cur:
        if found:
            cur.executemany(
                read_sql("pipeline_warning/record.sql"),
                [
                    {"kind": kind, "subject": subject, "message": message}
                    for subject, message in found.items()
                ],
            )
        cur.execute(
            read_sql("pipeline_warning/resolve.sql"),
            {
                "kind": kind,
                "checked": None if checked is None else [_stored(subject) for subject in checked],
                "found": list(found),
            },
        )


def _stored(subject: str) -> str:
    return mask_text(subject)[:500]
