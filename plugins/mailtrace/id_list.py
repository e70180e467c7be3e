"""Reading the uploaded list of IDs for a resend: decoding, parsing, and the outcome CSV.

Ops produce these lists by hand (spreadsheet exports, copy-paste), so the reader is forgiving about
layout (header or not, BOM, blank lines, stray whitespace) and strict about everything else: a file
that is not UTF-8 text, too big, or ambiguous about which column holds the IDs is refused as a whole
with a message saying what to fix, instead of being half-read.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass

# What a subject ID looks like, per id_type (= the subject_type of mailtrace.contact). Overridable per
# deployment with the Variable `mailtrace_resend_id_patterns` (a JSON object of the same shape).
#   registration: "STR-" and six digits, e.g. STR-004211
#   application:  "APP-" and eight digits, e.g. APP-20260017
#   tax_return:   "TR-", the four-digit tax year, "-", seven digits, e.g. TR-2025-0001234
DEFAULT_ID_PATTERNS = {
    "registration": r"^STR-\d{6}$",
    "application": r"^APP-\d{8}$",
    "tax_return": r"^TR-\d{4}-\d{7}$",
}
DEFAULT_MAX_BYTES = 5 * 1024 * 1024
DEFAULT_MAX_ROWS = 100_000

# Column names accepted as "this column holds the IDs" (compared lower-case, spaces and hyphens as _).
_ID_HEADERS = frozenset(
    {
        "id",
        "ids",
        "subject_id",
        "identifier",
        "number",
        "registration",
        "registration_number",
        "registration_id",
        "application",
        "application_id",
        "application_number",
        "tax_return",
        "tax_return_id",
        "tax_return_number",
    }
)
# Characters a spreadsheet reads as the start of a formula (OWASP "CSV injection").
_FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r", "\n")
_INVISIBLE = "\ufeff\u200b\u200c\u200d\u2060"
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_INLINE_SEPARATORS = re.compile(r"[\s,;]+")
_RAW_SHOWN_CHARS = 200


class IdListError(ValueError):
    """The list as a whole cannot be used; the message says why and what to do."""


@dataclass(frozen=True)
class IdRow:
    """One non-blank input row: where it was, what it said, and the ID once trimmed."""

    line: int
    raw: str
    subject_id: str


def normalise_id(value: str) -> str:
    """Trim whitespace (Unicode included) and invisible characters spreadsheets leave behind."""
    return value.strip().strip(_INVISIBLE).strip()


def decode_id_list(data: bytes, *, max_bytes: int = DEFAULT_MAX_BYTES) -> str:
    """UTF-8 text of an uploaded list (BOM removed), or IdListError for anything that is not."""
    if len(data) > max_bytes:
        raise IdListError(f"the ID list is {len(data):,} bytes; the limit is {max_bytes:,} (split it up)")
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise IdListError("the ID list is UTF-16; export it as 'CSV UTF-8' instead")
    if b"\x00" in data:
        raise IdListError("the ID list contains NUL bytes: it looks binary (a spreadsheet, not a CSV?)")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise IdListError(
            f"the ID list is not UTF-8 (invalid byte at offset {error.start}); export it as 'CSV UTF-8'"
        ) from None
    control = _CONTROL.search(text)
    if control:
        line = text.count("\n", 0, control.start()) + 1
        raise IdListError(f"the ID list contains a control character on line {line}: it looks binary")
    return text


def _is_header(cell: str, id_type: str) -> bool:
    name = re.sub(r"[\s-]+", "_", normalise_id(cell).lower())
    return name in _ID_HEADERS or name == id_type


def parse_id_list(text: str, *, id_type: str, max_rows: int = DEFAULT_MAX_ROWS) -> list[IdRow]:
    """Rows of a CSV list: one column (header optional) or several with a header naming the ID column.

    Blank lines are dropped; every other line becomes a row, kept even when malformed, so the
    outcome CSV can say what happened to it.
    """
    import pandas as pd

    try:
        frame = pd.read_csv(
            io.StringIO(text),
            header=None,
            dtype=str,
            keep_default_na=False,
            na_filter=False,
            skip_blank_lines=False,
        )
    except pd.errors.EmptyDataError:
        raise IdListError("the ID list is empty") from None
    except pd.errors.ParserError as error:
        raise IdListError(f"the ID list is not a well-formed CSV: {error}") from None
    # Line numbers as ops see them in an editor (no multi-line quoted fields in an ID list).
    frame.index = range(1, len(frame) + 1)
    frame = frame[frame.apply(lambda row: any(normalise_id(cell) for cell in row), axis=1)]
    if frame.empty:
        raise IdListError("the ID list has no IDs (only blank lines)")

    first_row = frame.iloc[0]
    header_columns = [column for column in frame.columns if _is_header(first_row[column], id_type)]
    if header_columns:
        id_column = header_columns[0]
        frame = frame.iloc[1:]
    elif len(frame.columns) == 1:
        id_column = frame.columns[0]
    else:
        raise IdListError(
            f"the ID list has {len(frame.columns)} columns but no header naming the ID column "
            f"(use a single column, or a header such as 'id' or '{id_type}')"
        )
    if len(frame) > max_rows:
        raise IdListError(f"the ID list has {len(frame):,} rows; the limit is {max_rows:,} (split it up)")
    values = frame[id_column]
    return [IdRow(line=int(line), raw=raw, subject_id=normalise_id(raw)) for line, raw in values.items()]


def parse_inline_ids(value: str, *, max_bytes: int = DEFAULT_MAX_BYTES, max_rows: int = DEFAULT_MAX_ROWS):
    """Rows from IDs typed into the trigger form, separated by commas, semicolons, spaces or newlines."""
    if len(value.encode("utf-8")) > max_bytes:
        raise IdListError(f"inline_ids is longer than {max_bytes:,} bytes; upload a file instead")
    control = _CONTROL.search(value)
    if control:
        raise IdListError("inline_ids contains control characters")
    tokens = [token for token in _INLINE_SEPARATORS.split(value) if normalise_id(token)]
    if not tokens:
        raise IdListError("inline_ids has no IDs")
    if len(tokens) > max_rows:
        raise IdListError(f"inline_ids has {len(tokens):,} IDs; the limit is {max_rows:,}")
    return [
        IdRow(line=position, raw=token, subject_id=normalise_id(token))
        for position, token in enumerate(tokens, 1)
    ]


def neutralise_cell(value: object) -> str:
    """A cell value that a spreadsheet shows as text, never evaluates as a formula.

    Values starting with a formula character (after any leading spaces) get a leading apostrophe,
    the form Excel and LibreOffice treat as "literal text"; long values are cut short.
    """
    text = "" if value is None else str(value)
    if len(text) > _RAW_SHOWN_CHARS:
        text = text[:_RAW_SHOWN_CHARS] + "…"
    if text.lstrip(" ").startswith(_FORMULA_PREFIXES):
        return "'" + text
    return text


def to_csv(header: list[str], rows: list[list[object]]) -> bytes:
    """RFC 4180 CSV (UTF-8, CRLF) with every cell neutralised against formula injection."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(header)
    writer.writerows([neutralise_cell(cell) for cell in row] for row in rows)
    return buffer.getvalue().encode("utf-8")
