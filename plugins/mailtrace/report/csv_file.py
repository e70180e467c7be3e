"""The report CSV: contract columns, neutralised cells, streamed from a server-side cursor to a file."""

from __future__ import annotations

import csv
import hashlib
from dataclasses import dataclass
from typing import BinaryIO

import psycopg

from mailtrace.csv_cells import neutralise_cell
from mailtrace.events import FAILED_STATUSES
from mailtrace.paths import read_sql
from mailtrace.report.constants import CSV_COLUMNS, FETCH_ROWS, SUBJECT_ID_COLUMN
from mailtrace.report.periods import ReportPeriod, _zone

# CSV


def csv_header(subject_id_header: str = SUBJECT_ID_COLUMN) -> list[str]:
    """The header row, with the subject id column named for the deployment."""
    if not subject_id_header or "\n" in subject_id_header or "\r" in subject_id_header:
        raise ValueError("the subject id header (Variable mailtrace_subject_id_header) must be one line")
    return [neutralise_cell(subject_id_header if c == SUBJECT_ID_COLUMN else c) for c in CSV_COLUMNS]


class _DigestingSink:
    """Text sink for `csv.writer`: encodes to UTF-8 into a binary file, hashing and counting on the way."""

    def __init__(self, binary: BinaryIO):
        self._binary = binary
        self.sha256 = hashlib.sha256()
        self.byte_count = 0

    def write(self, text: str) -> int:
        data = text.encode("utf-8")
        self._binary.write(data)
        self.sha256.update(data)
        self.byte_count += len(data)
        return len(text)


@dataclass(frozen=True)
class CsvStats:
    row_count: int
    byte_count: int
    checksum_sha256: str


def _period_params(period: ReportPeriod) -> dict:
    return {"period_start": period.start, "period_end": period.end, "failed_statuses": list(FAILED_STATUSES)}


def write_report_csv(
    conn: psycopg.Connection,
    period: ReportPeriod,
    binary: BinaryIO,
    *,
    subject_id_header: str = SUBJECT_ID_COLUMN,
) -> CsvStats:
    """Write the period's CSV to `binary`, streaming rows from a server-side cursor.

    Must run inside a transaction (a named cursor lives in one). Dates are local to the period's time zone
    with their UTC offset, to the second, so the bytes depend only on the data.
    """
    zone = _zone(period.timezone)
    sink = _DigestingSink(binary)
    # RFC 4180: CRLF line ends; QUOTE_MINIMAL quotes any field holding a comma, quote, CR or LF.
    writer = csv.writer(sink, lineterminator="\r\n", quoting=csv.QUOTE_MINIMAL)
    writer.writerow(csv_header(subject_id_header))
    row_count = 0
    with conn.cursor(name="mailtrace_failed_report") as cursor:
        cursor.itersize = FETCH_ROWS
        cursor.execute(read_sql("report/failed_notifications.sql"), _period_params(period))
        for sent_at, *text_values in cursor:
            date_sent = sent_at.astimezone(zone).isoformat(timespec="seconds")
            writer.writerow([date_sent, *(neutralise_cell(value) for value in text_values)])
            row_count += 1
    return CsvStats(row_count, sink.byte_count, sink.sha256.hexdigest())
