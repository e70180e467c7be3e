"""Extract delivery statuses from GC Notify into the provider history.

Notify's list endpoint has no "updated since" filter and keeps about seven days, so two paths
together see every status change:

* the list walk reads pages newest first until it passes the watermark minus an overlap (the
  overlap re-reads notifications whose status may have changed since the last walk); every few
  hours it reads further back instead (a late-receipt sweep), since a bounce can follow a delivery
  by days and CONTRACT.md §2 says the later bounce wins;
* the id look-up asks for each logged event that is still pending or unknown and older than
  what the list walk covers, while Notify still keeps it. A look-up that finds nothing is the
  evidence reconcile needs for `not_at_provider`.

Both stream: a page is mapped and handed to the loader, which commits in chunks.

A notification that cannot become an observation (no id, a timestamp without a time zone or in the
future, anything else its mapping raises on) is set aside in `mailtrace.notify_quarantine` with the
reason and its JSON, in the transaction that commits the watermark; the rest of its page loads, and
it never moves the watermark. The result counts them (`quarantined`) and a warning names the reasons.
"""

from __future__ import annotations

import hashlib
import json
import logging
import reprlib
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg

from mailtrace.events import PROVIDER_EVENT_COLUMNS, ProviderEvent
from mailtrace.intake import INDEXED_FIELD_MAX_BYTES, storable_reason, storable_text
from mailtrace.load import DEFAULT_CHUNK_ROWS, load_provider_events
from mailtrace.locks import EXTRACT_LOCK_BASE
from mailtrace.paths import read_sql
from mailtrace.pipeline_warnings import UNMAPPED_NOTIFY_STATUS, record_check
from mailtrace.providers.gc_notify import (
    PROVIDER,
    MalformedNotification,
    NotifyClient,
    parse_timestamp,
    to_provider_event,
)
from mailtrace.settings import REGISTRY
from mailtrace.warehouse import drop_session_if_client_vanishes, get_state

log = logging.getLogger(__name__)

WATERMARK_STATE = "gc_notify_list_watermark"
SWEEP_STATE = "gc_notify_late_sweep_at"
# The defaults of the plain functions are the registered defaults of the Variables the DAG tasks read.
DEFAULT_OVERLAP = timedelta(minutes=REGISTRY["notify_list_overlap_minutes"].default)
DEFAULT_GRACE = timedelta(minutes=REGISTRY["not_at_provider_grace_minutes"].default)
DEFAULT_SWEEP_EVERY = timedelta(hours=REGISTRY["notify_late_sweep_every_hours"].default)
DEFAULT_SWEEP_WINDOW = timedelta(days=REGISTRY["notify_late_sweep_days"].default)
DEFAULT_INITIAL_LOOKBACK = timedelta(days=REGISTRY["notify_initial_lookback_days"].default)
DEFAULT_RETENTION = timedelta(days=7)


class Quarantine:
    """Notifications set aside during one extract, stored by `store` in the loader's last transaction."""

    def __init__(self, seen_at: datetime):
        self.seen_at = seen_at
        self.rows: list[dict[str, Any]] = []
        self.reasons: Counter[str] = Counter()
        self.new = 0

    def add(self, notification: Any, error: BaseException, source: str) -> None:
        reason = str(error) if isinstance(error, MalformedNotification) else storable_reason(error)
        try:
            raw_json = json.dumps(notification, sort_keys=True)  # ASCII: \u escapes keep NUL and surrogates
        except (RecursionError, TypeError, ValueError):
            raw_json = json.dumps(reprlib.repr(notification))
        notification_id = notification.get("id") if isinstance(notification, dict) else None
        self.rows.append(
            {
                "notification_id": None
                if notification_id is None
                else storable_text(notification_id, max_bytes=INDEXED_FIELD_MAX_BYTES),
                "source": source,
                "reason": storable_reason(reason),
                "raw_json": raw_json,
                "raw_sha256": hashlib.sha256(raw_json.encode("ascii")).hexdigest(),
                "seen_at": self.seen_at,
            }
        )
        self.reasons[reason.split(":", 1)[0]] += 1

    def refused(self, source: str) -> Callable[[ProviderEvent, BaseException], None]:
        """For the loader: set aside an observation the warehouse refused to store.

        Its notification's JSON is gone by then (pages stream), so the observation as mapped is kept.
        """

        def set_aside(event: ProviderEvent, error: BaseException) -> None:
            mapped = {
                name: str(value) for name, value in zip(PROVIDER_EVENT_COLUMNS, event.copy_row(), strict=True)
            }
            self.add(
                {"id": event.provider_reference, "mapped_observation": mapped},
                MalformedNotification(f"the warehouse refused it: {storable_reason(error)}"),
                source,
            )

        return set_aside

    def store(self, conn: psycopg.Connection) -> None:
        self.new = 0
        with conn.cursor() as cur:
            for row in self.rows:
                cur.execute(read_sql("notify_quarantine.sql"), row)
                (inserted,) = cur.fetchone()
                self.new += bool(inserted)

    def report(self, what: str) -> int:
        """Warn about what was set aside; return how many."""
        if self.rows:
            log.warning(
                "%s: %d Notify notifications set aside in mailtrace.notify_quarantine (%d new there): %s",
                what,
                len(self.rows),
                self.new,
                dict(self.reasons),
            )
        return len(self.rows)


class _ListWalk:
    """Iterates mapped events from the list pages; remembers the newest created_at it accepted."""

    def __init__(self, client: NotifyClient, stop_before: datetime, quarantine: Quarantine):
        self.client = client
        self.stop_before = stop_before
        self.quarantine = quarantine
        self.newest_created_at: datetime | None = None
        self.pages = 0
        self.notifications = 0
        self.unmapped: Counter[str] = Counter()

    def __iter__(self) -> Iterator[ProviderEvent]:
        for page in self.client.iter_pages():
            self.pages += 1
            reached_stop = False
            for notification in page:
                try:
                    event = to_provider_event(notification, source="notify_list")
                except Exception as error:  # noqa: BLE001 - whatever one notification raises is its own
                    self.quarantine.add(notification, error, "notify_list")
                    continue
                created_at = parse_timestamp(notification.get("created_at"))  # checked by the mapping
                if created_at is not None:
                    if self.newest_created_at is None or created_at > self.newest_created_at:
                        self.newest_created_at = created_at
                    if created_at < self.stop_before:
                        reached_stop = True
                        continue
                self.notifications += 1
                if event.delivery_status is None:
                    self.unmapped[event.raw_status] += 1
                yield event
            if reached_stop:
                return


def _report_unmapped(
    conn: psycopg.Connection, unmapped: Counter[str] | Iterable[ProviderEvent]
) -> dict[str, int]:
    """Count statuses mailtrace cannot map (stored raw, delivery_status NULL), warn about them and record
    them for the health panel. A recorded status is resolved only once no stored row of it still holds a
    notification back from its verdict (a walk sees only recent notifications, so not meeting a status
    again proves nothing).
    """
    if not isinstance(unmapped, Counter):
        unmapped = Counter(e.raw_status for e in unmapped if e.delivery_status is None)
    if unmapped:
        log.warning(
            "Notify reported statuses mailtrace does not map: %s; stored raw with delivery_status NULL "
            "and left out of verdicts until mapped in mailtrace.providers.gc_notify",
            dict(unmapped),
        )
    warnings = {
        status: (
            f"GC Notify reported the status {status!r} ({count} in the latest run), which mailtrace does not "
            "map: stored raw with no delivery status and left out of verdicts until it is mapped in "
            "mailtrace.providers.gc_notify"
        )
        for status, count in unmapped.items()
    }
    with conn.transaction():
        resolvable = conn.execute(
            read_sql("pipeline_warning/resolvable_unmapped_statuses.sql"), {"kind": UNMAPPED_NOTIFY_STATUS}
        ).fetchall()
        checked = [subject for (subject,) in resolvable if subject not in warnings]
        record_check(conn, UNMAPPED_NOTIFY_STATUS, warnings, checked=checked)
    return dict(unmapped)


def walk_start(
    now: datetime,
    watermark: datetime | None,
    last_sweep: datetime | None,
    *,
    overlap: timedelta,
    initial_lookback: timedelta,
    sweep_every: timedelta,
    sweep_window: timedelta,
) -> tuple[datetime, bool]:
    """The oldest created_at this walk reads, and whether it is a late-receipt sweep.

    A zero `sweep_every` turns sweeps off (only the overlap is re-read).
    """
    start = (watermark - overlap) if watermark else (now - initial_lookback)
    sweep = sweep_every > timedelta(0) and (last_sweep is None or now - last_sweep >= sweep_every)
    if sweep:
        start = min(start, now - sweep_window)
    return start, sweep


def _watermark_state(walk: _ListWalk, previous: datetime | None) -> dict[str, str]:
    """The watermark to commit once the walk is complete: the newest created_at ever seen."""
    candidates = [t for t in (walk.newest_created_at, previous) if t is not None]
    return {WATERMARK_STATE: max(candidates).isoformat()} if candidates else {}


def extract_list(
    conn: psycopg.Connection,
    client: NotifyClient,
    *,
    now: datetime | None = None,
    overlap: timedelta = DEFAULT_OVERLAP,
    initial_lookback: timedelta = DEFAULT_INITIAL_LOOKBACK,
    sweep_every: timedelta = DEFAULT_SWEEP_EVERY,
    sweep_window: timedelta = DEFAULT_SWEEP_WINDOW,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
) -> dict:
    """Walk the list endpoint back to (watermark - overlap), or `sweep_window` when a sweep is due, and
    load what it reports.

    The new watermark (newest created_at seen) commits with the last loaded chunk; if the walk
    fails part-way, chunks already committed stay (re-loading them later adds nothing) and the
    watermark stays where it was, so the next run walks the same ground again.
    """
    now = now or datetime.now(UTC)
    with conn.transaction():
        drop_session_if_client_vanishes(conn)  # a crashed worker must not keep the lock for hours
        # Two extract runs at once would only do the same work twice, but refuse it clearly.
        (locked,) = conn.execute("SELECT pg_try_advisory_lock(%s)", (EXTRACT_LOCK_BASE,)).fetchone()
    if not locked:
        raise RuntimeError("another Notify extract is running against this warehouse")
    try:
        watermark, last_sweep = (
            datetime.fromisoformat(value) if value else None
            for value in (get_state(conn, WATERMARK_STATE), get_state(conn, SWEEP_STATE))
        )
        conn.commit()
        stop_before, sweep = walk_start(
            now,
            watermark,
            last_sweep,
            overlap=overlap,
            initial_lookback=initial_lookback,
            sweep_every=sweep_every,
            sweep_window=sweep_window,
        )
        quarantine = Quarantine(now)
        walk = _ListWalk(client, stop_before, quarantine)
        swept = {SWEEP_STATE: now.isoformat()} if sweep else {}
        inserted = load_provider_events(
            conn,
            walk,
            state=lambda: {**_watermark_state(walk, watermark), **swept},
            chunk_rows=chunk_rows,
            before_commit=quarantine.store,
            on_refused=quarantine.refused("notify_list"),
        )
    finally:
        conn.execute("SELECT pg_advisory_unlock(%s)", (EXTRACT_LOCK_BASE,))
        conn.commit()
    new_watermark = _watermark_state(walk, watermark).get(WATERMARK_STATE)
    result = {
        "pages": walk.pages,
        "notifications": walk.notifications,
        "inserted": inserted,
        "stop_before": stop_before.isoformat(),
        "late_receipt_sweep": sweep,
        "watermark": new_watermark,
        "retries": client.retries,
        "unmapped_statuses": _report_unmapped(conn, walk.unmapped),
        "quarantined": quarantine.report("notify list extract"),
    }
    log.info("notify list extract: %s", result)
    return result


def lookup_open_events(
    conn: psycopg.Connection,
    client: NotifyClient,
    *,
    now: datetime | None = None,
    grace: timedelta = DEFAULT_GRACE,
    overlap: timedelta = DEFAULT_OVERLAP,
    retention: timedelta = DEFAULT_RETENTION,
    max_lookups: int = REGISTRY["notify_max_lookups_per_run"].default,
) -> dict:
    """Look up by id the events the list walk no longer covers and that still lack a final verdict.

    Oldest-checked first, so with more candidates than `max_lookups` every event gets its turn.
    """
    now = now or datetime.now(UTC)
    stored = get_state(conn, WATERMARK_STATE)
    list_covers_from = (datetime.fromisoformat(stored) - overlap) if stored else now
    candidates = conn.execute(
        read_sql("notify_lookup_candidates.sql"),
        {
            "provider": PROVIDER,
            "list_covers_from": list_covers_from,
            "unconfirmed_before": now - grace,
            "retained_since": now - retention,
            "limit": max_lookups,
        },
    ).fetchall()
    conn.commit()
    events: list[ProviderEvent] = []
    checked_ids: list[str] = []
    found_flags: list[bool] = []
    quarantine = Quarantine(now)
    for event_id, provider_reference, client_reference in candidates:
        if provider_reference:
            notification = client.get_notification(provider_reference)
            found = [notification] if notification else []
        else:
            found = client.find_by_reference(client_reference)
        for notification in found:
            try:
                events.append(to_provider_event(notification, source="notify_lookup"))
            except Exception as error:  # noqa: BLE001 - whatever one notification raises is its own
                quarantine.add(notification, error, "notify_lookup")
        checked_ids.append(event_id)
        found_flags.append(bool(found))
    inserted = load_provider_events(
        conn, events, before_commit=quarantine.store, on_refused=quarantine.refused("notify_lookup")
    )
    with conn.transaction():
        conn.execute(
            read_sql("notify_record_lookups.sql"),
            {"event_ids": checked_ids, "found": found_flags, "checked_at": now},
        )
    _report_unmapped(conn, events)
    result = {
        "checked": len(checked_ids),
        "missing": found_flags.count(False),
        "inserted": inserted,
        "quarantined": quarantine.report("notify id look-ups"),
    }
    log.info("notify id look-ups: %s", result)
    return result
