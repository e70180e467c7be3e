"""CSV downloads of the Delivery page's lists, safe to open in a spreadsheet.

A cell a spreadsheet would run as a formula (starting with =, +, -, @, tab or carriage return, after any
leading spaces, which some spreadsheets trim) is prefixed with `'`, the rule the failed-notification report
follows; the text stays readable and exact.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator
from datetime import datetime
from typing import Any

from mailtrace.csv_cells import neutralise_cell


def neutralise(value: Any) -> str:
    """A cell as text (times in ISO form), neutralised by the one rule in `mailtrace.csv_cells`."""
    return neutralise_cell(value.isoformat() if isinstance(value, datetime) else value)


def csv_lines(columns: list[str], rows: Iterable[dict[str, Any]]) -> Iterator[str]:
    """The header, then one line per row (only `columns`, in that order), each cell neutralised."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)

    def line(values: list[str]) -> str:
        buffer.seek(0)
        buffer.truncate()
        writer.writerow(values)
        return buffer.getvalue()

    yield line([neutralise(c) for c in columns])
    for row in rows:
        yield line([neutralise(row.get(c)) for c in columns])
