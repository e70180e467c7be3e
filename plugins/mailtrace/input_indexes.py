"""Whether the application's relations are indexed as CONTRACT.md §1 asks, said in the log.

mailtrace never indexes the application's `notification_event` or `contact` (tables or views), but its
runs stay proportional to new data only if the relations underneath serve the look-ups it makes. This
asks the planner, with sequential scans discouraged, how it would serve each look-up: a plan that still
reads a table sequentially names a missing index. Asking the planner looks through views to the tables
underneath, however the application maps its own columns; where a plan reads no table at all (a view over
a function, a foreign table) the check says it cannot tell.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import psycopg

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Lookup:
    relation: str
    columns: str
    # A constant query (no values from anywhere) whose plan shows how the look-up is served.
    probe: str


INPUT_LOOKUPS: dict[str, tuple[Lookup, ...]] = {
    "notification_event": (
        Lookup(
            "mailtrace.notification_event",
            "(provider, provider_reference)",
            "SELECT 1 FROM mailtrace.notification_event"
            " WHERE provider = 'gc_notify' AND provider_reference = '?'",
        ),
        Lookup(
            "mailtrace.notification_event",
            "(provider, client_reference)",
            "SELECT 1 FROM mailtrace.notification_event"
            " WHERE provider = 'gc_notify' AND client_reference = '?' AND provider_reference IS NULL",
        ),
        Lookup(
            "mailtrace.notification_event",
            "(sent_at)",
            "SELECT 1 FROM mailtrace.notification_event WHERE sent_at >= 'infinity'::timestamptz",
        ),
        Lookup(
            "mailtrace.notification_event",
            "(event_id)",
            "SELECT 1 FROM mailtrace.notification_event WHERE event_id = '?'",
        ),
    ),
    "contact": (
        Lookup(
            "mailtrace.contact",
            "(updated_at)",
            "SELECT 1 FROM mailtrace.contact WHERE updated_at > 'infinity'",
        ),
        Lookup(
            "mailtrace.contact",
            "(subject_type, subject_id)",
            "SELECT 1 FROM mailtrace.contact WHERE subject_type = '?' AND subject_id = '?'",
        ),
    ),
}


def _nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield plan
    for child in plan.get("Plans", ()):
        yield from _nodes(child)


def unindexed_tables(conn: psycopg.Connection, lookup: Lookup) -> list[str] | None:
    """The tables a look-up would read sequentially ([] when indexes serve it; None when it cannot tell)."""
    with conn.transaction(force_rollback=True):
        conn.execute("SELECT set_config('enable_seqscan', 'off', true)")
        ((explained,),) = conn.execute("EXPLAIN (VERBOSE, FORMAT JSON) " + lookup.probe).fetchall()
    nodes = list(_nodes(explained[0]["Plan"]))
    scans = [node for node in nodes if "Relation Name" in node]
    if not scans:
        return None
    return sorted(
        {
            f"{node.get('Schema', '?')}.{node['Relation Name']}"
            for node in scans
            if node["Node Type"] == "Seq Scan"
        }
    )


def missing_index_warnings(conn: psycopg.Connection, lookups: tuple[Lookup, ...]) -> list[str]:
    warnings = []
    for lookup in lookups:
        tables = unindexed_tables(conn, lookup)
        if tables is None:
            warnings.append(
                f"{lookup.relation}: cannot tell whether an index serves look-ups by {lookup.columns} "
                "(its plan reads no table); CONTRACT.md §1 asks for one"
            )
        elif tables:
            warnings.append(
                f"{lookup.relation}: no index serves look-ups by {lookup.columns} (the plan reads "
                f"{', '.join(tables)} sequentially); CONTRACT.md §1 asks the application for one, "
                "or runs read the whole relation"
            )
    return warnings


def warn_missing_input_indexes(conn: psycopg.Connection, lookups: tuple[Lookup, ...]) -> list[str]:
    """Log one warning per look-up the application's relation cannot serve by an index; return them."""
    warnings = missing_index_warnings(conn, lookups)
    for warning in warnings:
        log.warning("%s", warning)
    return warnings
