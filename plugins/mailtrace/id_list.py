"""Reading the uploaded list of IDs for a resend: decoding, parsing, and the outcome CSV.

Ops produce these lists by hand (spreadsheet exports, copy-paste), so the reader is forgiving about
layout (header or not, BOM, blank lines, stray whitespace). A file that cannot be a list at all (too big,
UTF-16, a spreadsheet or other binary, no column that holds the IDs) is refused as a whole with a message
saying what to fix. A single bad row (bytes that are not UTF-8, a control character, a huge field, the
wrong number of columns) is set aside with its reason, and the other rows are read: one bad line in a
list of thousands never stops the resend, and the outcome CSV says what happened to every line.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass

from mailtrace.csv_cells import neutralise_cell

# What a subject ID looks like, per id_type (= the subject_type of mailtrace.contact). Overridable per
# deployment with the Variable `mailtrace_resend_id_patterns` (a JSON object of the same shape).
_UUID = r"[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}"
DEFAULT_ID_PATTERNS = {
    "registration": r"\ASTR-\d{6}\Z",
    "application": r"\AAPP-\d{8}\Z",
    # The tax service issues its tax return ids as UUIDs (written in either letter case); the older
    # "TR-<tax year>-<seven digits>" numbers are still accepted.
    "tax_return": rf"\A(?:{_UUID}|TR-\d{{4}}-\d{{7}})\Z",
}
_UUID_SHAPE = re.compile(_UUID)


def id_key(subject_id: str) -> str:
    """How two IDs compare: a UUID in either letter case is the same UUID (RFC 9562 reads them
    case-insensitively); any other ID exactly as written."""
    return subject_id.lower() if _UUID_SHAPE.fullmatch(subject_id) else subject_id


def id_spellings(subject_id: str) -> list[str]:
    """The spellings to look an ID up by: as written, and a UUID also in lower and upper case."""
    if not _UUID_SHAPE.fullmatch(subject_id):
        return [subject_id]
    return list(dict.fromkeys([subject_id, subject_id.lower(), subject_id.upper()]))


# Each built-in ID type in plain words, with examples (the trigger form shows them; tests check that every
# example matches its pattern).
ID_TYPE_DESCRIPTIONS = {
    "registration": ("a registration number: STR- and 6 digits", ["STR-004211"]),
    "application": ("an application number: APP- and 8 digits", ["APP-20260017"]),
    "tax_return": (
        "a tax return id as the tax service issues it: a UUID, in either letter case (the older "
        "TR-<tax year>-<7 digits> numbers are accepted too)",
        ["3f2b8c1e-9a4d-4e6b-8f21-6c0d2e9b7a15", "3F2B8C1E-9A4D-4E6B-8F21-6C0D2E9B7A15", "TR-2025-0001234"],
    ),
}
DEFAULT_MAX_BYTES = 5 * 1024 * 1024
DEFAULT_MAX_ROWS = 100_000
# Longest ID cell read as a value; a longer one is set aside (IDs are a few dozen characters at most).
MAX_FIELD_CHARS = 1_000

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
# How files that are not text begin: a spreadsheet (xlsx is a zip, xls an OLE file) or a PDF.
_BINARY_MAGIC = (b"PK\x03\x04", b"\xd0\xcf\x11\xe0", b"%PDF")
# Characters a spreadsheet reads as the start of a formula (OWASP "CSV injection").
_INVISIBLE = "\ufeff\u200b\u200c\u200d\u2060"
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
# Undecodable bytes (kept as surrogate escapes by decode_id_list) and lone surrogates from JSON input.
_SURROGATE = re.compile("[\ud800-\udfff]")
_INLINE_SEPARATORS = re.compile(r"[\s,;]+")
_RAW_SHOWN_CHARS = 200


class IdListError(ValueError):
    """The list as a whole cannot be used; the message says why and what to do."""


@dataclass(frozen=True)
class IdRow:
    """One non-blank input row: where it starts in the file, what it said, and the ID once trimmed.

    A row set aside has a `problem` (reason, detail), an empty `subject_id` and a `raw` made storable.
    """

    line: int
    raw: str
    subject_id: str
    problem: tuple[str, str] | None = None


def normalise_id(value: str) -> str:
    """Trim whitespace (Unicode included) and invisible characters spreadsheets leave behind."""
    return value.strip().strip(_INVISIBLE).strip()


def storable(value: str) -> str:
    """`value` as it can be written to Postgres and to a UTF-8 file: no NUL, no surrogate, not huge."""
    value = _SURROGATE.sub("\ufffd", value[: _RAW_SHOWN_CHARS + 1])
    return _CONTROL.sub("\ufffd", value)


def row_problem(value: str) -> tuple[str, str] | None:
    """Why one value cannot be read as an ID (reason, detail), or None."""
    if _SURROGATE.search(value):
        return "not_utf8", "bytes that are not UTF-8 text; export the list as 'CSV UTF-8'"
    if _CONTROL.search(value):
        return "control_character", "a control character (NUL, escape, …): not text from a spreadsheet"
    if len(value) > MAX_FIELD_CHARS:
        return "too_long", f"{len(value):,} characters; an ID is at most {MAX_FIELD_CHARS:,}"
    return None


def decode_id_list(data: bytes, *, max_bytes: int = DEFAULT_MAX_BYTES) -> str:
    """Text of an uploaded list (BOM removed), or IdListError for a file that cannot be a list.

    Bytes that are not UTF-8 are kept as surrogate escapes, so only the rows holding them are set aside.
    """
    if len(data) > max_bytes:
        raise IdListError(f"the ID list is {len(data):,} bytes; the limit is {max_bytes:,} (split it up)")
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise IdListError("the ID list is UTF-16; export it as 'CSV UTF-8' instead")
    if data.startswith(_BINARY_MAGIC):
        raise IdListError(
            "the ID list looks binary (a spreadsheet or PDF, not a CSV?); export it as 'CSV UTF-8'"
        )
    return data.removeprefix(b"\xef\xbb\xbf").decode("utf-8", errors="surrogateescape")


def _is_header(cell: str, id_type: str) -> bool:
    name = re.sub(r"[\s-]+", "_", normalise_id(cell).lower())
    return name in _ID_HEADERS or name == id_type


def _records(text: str):
    """(first physical line, cells, csv error or None) of every CSV record, blank lines included.

    Line numbers are the file's own lines as an editor shows them, also after a quoted value that spans
    several lines. A record the csv module cannot read is returned with its error, and reading goes on.
    """
    reader = csv.reader(io.StringIO(text, newline=""))
    next_line = 1
    while True:
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error as error:
            yield next_line, [], str(error)
        else:
            yield next_line, cells, None
        next_line = reader.line_num + 1


def parse_id_list(text: str, *, id_type: str, max_rows: int = DEFAULT_MAX_ROWS) -> list[IdRow]:
    """Rows of a CSV list: one column (header optional) or several with a header naming the ID column.

    Blank lines are dropped; every other record becomes a row, kept even when malformed or set aside, so
    the outcome CSV can say what happened to it.
    """
    records = [
        (line, cells, error)
        for line, cells, error in _records(text)
        if error or any(map(normalise_id, cells))
    ]
    if not records:
        raise IdListError("the ID list has no IDs (it is empty or only blank lines)")
    readable = [(line, cells) for line, cells, error in records if not error and not _cells_problem(cells)]
    if not readable:
        return [_set_aside(line, cells, error) for line, cells, error in records]
    first_line, first_cells = readable[0]
    header_columns = [index for index, cell in enumerate(first_cells) if _is_header(cell, id_type)]
    if header_columns:
        id_column, width, header_line = header_columns[0], len(first_cells), first_line
    elif len(first_cells) == 1:
        id_column, width, header_line = 0, 1, None
    else:
        raise IdListError(
            f"the ID list has {len(first_cells)} columns but no header naming the ID column "
            f"(use a single column, or a header such as 'id' or '{id_type}')"
        )
    rows = []
    for line, cells, error in records:
        if line == header_line:
            continue  # the header
        if error or _cells_problem(cells):
            rows.append(_set_aside(line, cells, error))
        elif id_column >= len(cells):
            rows.append(
                _set_aside(line, cells, None, ("missing_column", f"no ID column ({len(cells)} cells)"))
            )
        elif width == 1 and len(cells) > 1:
            rows.append(
                _set_aside(line, cells, None, ("extra_columns", f"{len(cells)} cells in a one-column list"))
            )
        else:
            rows.append(IdRow(line=line, raw=cells[id_column], subject_id=normalise_id(cells[id_column])))
    if len(rows) > max_rows:
        raise IdListError(f"the ID list has {len(rows):,} rows; the limit is {max_rows:,} (split it up)")
    return rows


def _cells_problem(cells: list[str]) -> tuple[str, str] | None:
    return next(filter(None, map(row_problem, cells)), None)


def _set_aside(line: int, cells: list[str], error: str | None, problem=None) -> IdRow:
    if problem is None:
        problem = ("unreadable_csv", f"not readable as CSV: {error}") if error else _cells_problem(cells)
    return IdRow(line=line, raw=storable(",".join(cells)), subject_id="", problem=problem)


def parse_inline_ids(value: str, *, max_bytes: int = DEFAULT_MAX_BYTES, max_rows: int = DEFAULT_MAX_ROWS):
    """Rows from IDs typed into the trigger form, separated by commas, semicolons, spaces or newlines."""
    if len(value.encode("utf-8", errors="surrogatepass")) > max_bytes:
        raise IdListError(f"inline_ids is longer than {max_bytes:,} bytes; upload a file instead")
    tokens = [token for token in _INLINE_SEPARATORS.split(value) if normalise_id(token)]
    if not tokens:
        raise IdListError("inline_ids has no IDs")
    if len(tokens) > max_rows:
        raise IdListError(f"inline_ids has {len(tokens):,} IDs; the limit is {max_rows:,}")
    rows = []
    for position, token in enumerate(tokens, 1):
        problem = row_problem(token)
        if problem:
            rows.append(IdRow(line=position, raw=storable(token), subject_id="", problem=problem))
        else:
            rows.append(IdRow(line=position, raw=token, subject_id=normalise_id(token)))
    return rows


def outcome_cell(value: object) -> str:
    """A cell of the outcome CSV: cut short when long, then neutralised like every CSV cell."""
    text = "" if value is None else str(value)
    if len(text) > _RAW_SHOWN_CHARS:
        text = text[:_RAW_SHOWN_CHARS] + "…"
    return neutralise_cell(text)


def to_csv(header: list[str], rows: list[list[object]]) -> bytes:
    """RFC 4180 CSV (UTF-8, CRLF) with every cell neutralised against formula injection."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(header)
    writer.writerows([outcome_cell(cell) for cell in row] for row in rows)
    return buffer.getvalue().encode("utf-8")
