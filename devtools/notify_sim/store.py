"""The simulator's notifications, kept in SQLite so a million seeded rows cost little memory.

Timestamps are stored as GC Notify prints them ("2026-11-20T10:15:30.123456Z", always UTC and fixed
width), so SQL compares them as text and reads need no conversion.

A notification whose final status lies ahead (`completed_at` in the future) is reported as
"sending" until then: that is how a POSTed email settles after `settle_seconds`, computed at read
time instead of by a background job.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from devtools.notify_sim.outcomes import FINAL_STATUSES, status_description

TIMESTAMP_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"
DEFAULT_TEMPLATE_ID = "6f1c6c38-8a5c-4a4e-9f76-4d2f3b0d9a11"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS notification (
    id                 TEXT PRIMARY KEY,
    reference          TEXT,
    email_address      TEXT NOT NULL,
    status             TEXT NOT NULL,
    status_description TEXT,
    provider_response  TEXT,
    feedback_subtype   TEXT,
    template_id        TEXT NOT NULL,
    subject            TEXT NOT NULL,
    body               TEXT NOT NULL,
    created_at         TEXT NOT NULL,
    sent_at            TEXT,
    completed_at       TEXT
);
CREATE INDEX IF NOT EXISTS notification_newest_first ON notification (created_at DESC, id DESC);
CREATE INDEX IF NOT EXISTS notification_reference ON notification (reference);
"""

_COLUMNS = (
    "id",
    "reference",
    "email_address",
    "status",
    "status_description",
    "provider_response",
    "feedback_subtype",
    "template_id",
    "subject",
    "body",
    "created_at",
    "sent_at",
    "completed_at",
)
_INSERT = f"INSERT INTO notification ({', '.join(_COLUMNS)}) VALUES ({', '.join('?' for _ in _COLUMNS)})"  # noqa: S608
# The status a reader sees right now (parameter :now).
_EFFECTIVE_STATUS = "CASE WHEN completed_at > :now THEN 'sending' ELSE status END"
_SELECT = f"SELECT {', '.join(_COLUMNS)}, {_EFFECTIVE_STATUS} AS effective_status FROM notification"  # noqa: S608


def format_timestamp(moment: datetime) -> str:
    if moment.tzinfo is None:
        raise ValueError(f"timestamps must be timezone-aware, got {moment!r}")
    return moment.astimezone(UTC).strftime(TIMESTAMP_FORMAT)


def _optional_timestamp(moment: datetime | None) -> str | None:
    return None if moment is None else format_timestamp(moment)


@dataclass(frozen=True)
class StoredNotification:
    id: str
    reference: str | None
    email_address: str
    status: str
    status_description: str
    provider_response: str | None
    template_id: str
    subject: str
    body: str
    created_at: str
    sent_at: str | None
    completed_at: str | None


@dataclass(frozen=True)
class ListQuery:
    """A page request of GET /v2/notifications, already validated."""

    statuses: list[str]
    email_only: bool
    reference: str | None
    older_than: str | None
    visible_since: str
    now: str
    limit: int


class NotificationStore:
    """Thread-safe access to the notification table (one connection behind a lock)."""

    def __init__(self, path: Path):
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._conn.execute("PRAGMA journal_mode = WAL")
        # A development simulator: losing the last writes on a machine crash is acceptable.
        self._conn.execute("PRAGMA synchronous = OFF")
        self._conn.executescript(_SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def insert_many(self, rows: Iterable[Mapping[str, Any]]) -> int:
        """Insert rows in one transaction; returns how many."""
        values = [_row_values(row) for row in rows]
        with self._lock:
            self._conn.execute("BEGIN")
            try:
                self._conn.executemany(_INSERT, values)
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")
        return len(values)

    def update_status(
        self,
        notification_id: str,
        status: str,
        *,
        provider_response: str | None,
        feedback_subtype: str | None,
        completed_at: str | None,
    ) -> bool:
        with self._lock:
            cursor = self._conn.execute(
                """UPDATE notification
                   SET status = ?, provider_response = ?, feedback_subtype = ?, completed_at = ?,
                       status_description = NULL
                   WHERE id = ?""",
                (status, provider_response, feedback_subtype, completed_at, notification_id),
            )
            return cursor.rowcount == 1

    def get(self, notification_id: str, *, visible_since: str, now: str) -> StoredNotification | None:
        with self._lock:
            row = self._conn.execute(
                f"{_SELECT} WHERE id = :id AND created_at >= :since",
                {"id": notification_id, "since": visible_since, "now": now},
            ).fetchone()
        return None if row is None else _from_row(row)

    def page(self, query: ListQuery) -> list[StoredNotification]:
        if not query.email_only:
            return []
        conditions = ["created_at >= :since"]
        params: dict[str, Any] = {"since": query.visible_since, "now": query.now, "limit": query.limit}
        if query.statuses:
            names = [f":status{index}" for index in range(len(query.statuses))]
            conditions.append(f"{_EFFECTIVE_STATUS} IN ({', '.join(names)})")
            params.update({name[1:]: status for name, status in zip(names, query.statuses, strict=True)})
        if query.reference is not None:
            conditions.append("reference = :reference")
            params["reference"] = query.reference
        if query.older_than is not None:
            # Notify pages by "created before that notification"; the id breaks ties between
            # notifications created in the same microsecond so none is skipped.
            conditions.append(
                "(created_at, id) < (SELECT created_at, id FROM notification WHERE id = :older_than)"
            )
            params["older_than"] = query.older_than
        sql = f"{_SELECT} WHERE {' AND '.join(conditions)} ORDER BY created_at DESC, id DESC LIMIT :limit"
        with self._lock:
            rows = self._conn.execute(sql, params).fetchall()
        return [_from_row(row) for row in rows]

    def delete_all(self) -> None:
        with self._lock:
            self._conn.execute("DELETE FROM notification")


def _row_values(row: Mapping[str, Any]) -> tuple:
    status = row["status"]
    created_at = format_timestamp(row["created_at"])
    completed_at = _optional_timestamp(row.get("completed_at"))
    if status in FINAL_STATUSES and completed_at is None:
        completed_at = _optional_timestamp(row.get("sent_at")) or created_at
    return (
        str(row["id"]),
        row.get("reference"),
        row["email_address"],
        status,
        row.get("status_description"),
        row.get("provider_response"),
        row.get("feedback_subtype"),
        str(row.get("template_id") or DEFAULT_TEMPLATE_ID),
        row.get("subject") or "Notification",
        row.get("body") or "",
        created_at,
        _optional_timestamp(row.get("sent_at")),
        completed_at,
    )


def _from_row(row: tuple) -> StoredNotification:
    values = dict(zip((*_COLUMNS, "effective_status"), row, strict=True))
    effective = values["effective_status"]
    settled = effective == values["status"]
    description = values["status_description"] if settled else None
    return StoredNotification(
        id=values["id"],
        reference=values["reference"],
        email_address=values["email_address"],
        status=effective,
        status_description=description or status_description(effective, values["feedback_subtype"]),
        provider_response=values["provider_response"] if settled else None,
        template_id=values["template_id"],
        subject=values["subject"],
        body=values["body"],
        created_at=values["created_at"],
        sent_at=values["sent_at"],
        completed_at=values["completed_at"] if effective in FINAL_STATUSES else None,
    )
