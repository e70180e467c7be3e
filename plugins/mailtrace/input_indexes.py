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

from mailtrace.pipeline_warnings import MISSING_INPUT_INDEX, record_check

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Lookup:
    relation: str
    columns: str
    # A query with parameters ($1, ...; their types in `types`): planned generically, so a view that maps a
    # column to a constant (subject_type 'registration') is not folded away by the planner.
    probe: str
    types: str


INPUT_LOOKUPS: dict[str, tuple[Lookup, ...]] = {
    "notification_event": (
        Lookup(
            "mailtrace.notification_event",
            "(provider, provider_reference)",
            "SELECT 1 FROM mailtrace.notification_event WHERE provider = $1 AND provider_reference = $2",
            "text, text",
        ),
        Lookup(
            "mailtrace.notification_event",
            "(provider, client_reference)",
            "SELECT 1 FROM mailtrace.notification_event"
            " WHERE provider = $1 AND client_reference = $2 AND provider_reference IS NULL",
            "text, text",
        ),
        Lookup(
            "mailtrace.notification_event",
            "(sent_at)",
            "SELECT 1 FROM mailtrace.notification_event WHERE sent_at >= $1",
            "timestamptz",
        ),
        Lookup(
            "mailtrace.notification_event",
            "(event_id)",
            "SELECT 1 FROM mailtrace.notification_event WHERE event_id = $1",
            "text",
        ),
    ),
    "contact": (
        Lookup(
            "mailtrace.contact",
            "(updated_at)",
            "SELECT 1 FROM mailtrace.contact WHERE updated_at > $1",
            "timestamptz",
        ),
        Lookup(
            "mailtrace.contact",
            "(subject_type, subject_id)",
            "SELECT 1 FROM mailtrace.contact WHERE subject_type = $1 AND subject_id = $2",
            "text, text",
        ),
    ),
}
_PROBE = "mailtrace_index_probe"


def _nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield plan
    for child in plan.get("Plans", ()):
        yield from _nodes(child)


def unindexed_tables(conn: psycopg.Connection, lookup: Lookup) -> list[str] | None:
    """The tables a look-up would read sequentially ([] when indexes serve it; None when it cannot tell).

    It cannot tell when the plan reads no table, or when the relation cannot be planned this way at all
    (a column of another type than the contract's, say): the check never fails the run it serves.
    """
    arguments = ", ".join("NULL" for _ in lookup.types.split(","))
    try:
        with conn.transaction(force_rollback=True):
            conn.execute(
                "SELECT set_config('enable_seqscan', 'off', true),"
                " set_config('plan_cache_mode', 'force_generic_plan', true)"
            )
            conn.execute(f"PREPARE {_PROBE} ({lookup.types}) AS {lookup.probe}")
            ((explained,),) = conn.execute(
                f"EXPLAIN (VERBOSE, FORMAT JSON) EXECUTE {_PROBE} ({arguments})"
            ).fetchall()
    except psycopg.Error as error:
        log.debug(
            "index check of %s by %s not possible: %s", lookup.relation, lookup.columns, type(error).__name__
        )
        return None
    finally:
        # A prepared statement belongs to the session, whatever became of the savepoint.
        if conn.execute("SELECT 1 FROM pg_prepared_statements WHERE name = %s", (_PROBE,)).fetchone():
            conn.execute(f"DEALLOCATE {_PROBE}")
    scans = [node for node in _nodes(explained[0]["Plan"]) if "Relation Name" in node]
    if not scans:
        return None
    return sorted(
        {f"{node['Schema']}.{node['Relation Name']}" for node in scans if node["Node Type"] == "Seq Scan"}
    )


def _subject(lookup: Lookup) -> str:
    return f"{lookup.relation} {lookup.columns}"


def _missing_index_warnings(conn: psycopg.Connection, lookups: tuple[Lookup, ...]) -> dict[str, str]:
    """The warning for each look-up no index serves, by subject (`mailtrace.contact (updated_at)`)."""
    warnings = {}
    for lookup in lookups:
        tables = unindexed_tables(conn, lookup)
        if tables is None:
            warnings[_subject(lookup)] = (
                f"{lookup.relation}: cannot tell whether an index serves look-ups by {lookup.columns} "
                "(its plan reads no table, or it could not be planned); CONTRACT.md §1 asks for one"
            )
        elif tables:
            warnings[_subject(lookup)] = (
                f"{lookup.relation}: no index serves look-ups by {lookup.columns} (the plan reads "
                f"{', '.join(tables)} sequentially); CONTRACT.md §1 asks the application for one, "
                "or runs read the whole relation"
            )
    return warnings


def missing_index_warnings(conn: psycopg.Connection, lookups: tuple[Lookup, ...]) -> list[str]:
    """The warnings a run would log for these look-ups, without logging or recording them."""
    return list(_missing_index_warnings(conn, lookups).values())


def warn_missing_input_indexes(conn: psycopg.Connection, lookups: tuple[Lookup, ...]) -> list[str]:
    """Log one warning per look-up the application's relation cannot serve by an index, record them for
    the health panel (and those now served as resolved), and return them. Call inside a transaction.
    """
    warnings = _missing_index_warnings(conn, lookups)
    for warning in warnings.values():
        log.warning("%s", warning)
    record_check(conn, MISSING_INPUT_INDEX, warnings, checked=[_subject(lookup) for lookup in lookups])
    return list(warnings.values())
