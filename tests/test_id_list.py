"""The ID list reader: forgiving about layout, bad rows set aside one by one; formula-safe CSV out."""

import csv
import io
import random

import pytest

from mailtrace.id_list import (
    IdListError,
    decode_id_list,
    outcome_cell,
    parse_id_list,
    parse_inline_ids,
    to_csv,
)


def ids(rows):
    return [(row.line, row.subject_id) for row in rows]


def set_aside(rows):
    return [(row.line, row.problem[0]) for row in rows if row.problem]


def read(data: bytes, **kwargs):
    return parse_id_list(decode_id_list(data), id_type="registration", **kwargs)


def test_single_column_without_header():
    assert ids(read(b"STR-000001\nSTR-000002\n")) == [(1, "STR-000001"), (2, "STR-000002")]


@pytest.mark.parametrize("header", [b"id", b"ID", b"Registration Number", b"registration", b"subject_id"])
def test_header_row_is_recognised_and_dropped(header):
    assert ids(read(header + b"\nSTR-000001\n")) == [(2, "STR-000001")]


def test_bom_blank_lines_and_whitespace_are_tolerated():
    data = "\ufeffid\r\n\r\n  STR-000001  \r\n\u00a0STR-000002\u200b\r\n\r\n".encode()
    assert ids(read(data)) == [(3, "STR-000001"), (4, "STR-000002")]


def test_raw_value_is_kept_for_the_outcome_csv():
    (row,) = read(b"  STR-000001 \n")
    assert row.raw == "  STR-000001 "


def test_several_columns_with_a_header_use_the_id_column():
    data = b"name,registration_number,notes\nAna,STR-000001,x\nBo,STR-000002,\n"
    assert ids(read(data)) == [(2, "STR-000001"), (3, "STR-000002")]


def test_several_columns_without_header_are_refused():
    with pytest.raises(IdListError, match="no header naming the ID column"):
        read(b"STR-000001,Ana\nSTR-000002,Bo\n")


def test_a_row_with_extra_cells_is_set_aside_and_the_rest_read():
    rows = read(b"STR-000001\nSTR-000002,extra,fields\nSTR-000003\n")
    assert ids(rows) == [(1, "STR-000001"), (2, ""), (3, "STR-000003")]
    assert set_aside(rows) == [(2, "extra_columns")]


@pytest.mark.parametrize("bom", [b"", b"\xef\xbb\xbf"])
@pytest.mark.parametrize("header", [b"", b"id\r\n"])
@pytest.mark.parametrize("blank", [b"\n", b"\r\n\r\n", b"  \n"])
def test_leading_blank_lines_are_skipped_and_lines_still_counted(bom, header, blank):
    data = bom + blank + header + b"STR-000001\nSTR-000002\n"
    first = blank.count(b"\n") + header.count(b"\n") + 1
    assert ids(read(data)) == [(first, "STR-000001"), (first + 1, "STR-000002")]


def test_line_numbers_follow_the_file_after_a_value_spanning_two_lines():
    data = b'name,id\r\n"Ana\r\nMaria",STR-000001\r\nBo,STR-000002\r\n"x\ny\nz",bad\nCy,STR-000003\n'
    assert ids(read(data)) == [(2, "STR-000001"), (4, "STR-000002"), (5, "bad"), (8, "STR-000003")]


def test_bad_rows_are_set_aside_with_their_reason_and_the_rest_read():
    long_cell, huge_quoted = b"A" * 5_000, b'"' + b"A" * 300_000 + b'"'
    data = b"id\nSTR-000001\nSTR\x00-000002\nSTR-\xff\xfe0003\n" + long_cell + b"\n" + huge_quoted
    data += b"\nSTR-000004\n"
    rows = read(data)
    assert [row.subject_id for row in rows if not row.problem] == ["STR-000001", "STR-000004"]
    assert set_aside(rows) == [
        (3, "control_character"),
        (4, "not_utf8"),
        (5, "too_long"),
        (6, "unreadable_csv"),
    ]
    for row in rows:  # what the outcome CSV and the database get: storable, short
        assert "\x00" not in row.raw and len(row.raw) <= 201
        row.raw.encode("utf-8")


@pytest.mark.parametrize("data", [b"", b"\n\n  \n", "\ufeff".encode()])
def test_empty_lists_are_refused(data):
    with pytest.raises(IdListError, match="empty|no IDs"):
        read(data)


def test_binary_file_is_refused():
    with pytest.raises(IdListError, match="binary"):
        decode_id_list(b"PK\x03\x04\x00\x00binary zip")


def test_utf16_is_refused_with_advice():
    with pytest.raises(IdListError, match="UTF-16"):
        decode_id_list("id\nSTR-000001\n".encode("utf-16"))


def test_wrong_encoding_sets_the_row_aside_with_advice():
    (row,) = read("STR-000001 Québec\n".encode("latin-1"))
    assert row.problem == ("not_utf8", "bytes that are not UTF-8 text; export the list as 'CSV UTF-8'")
    assert row.raw == "STR-000001 Qu\ufffdbec"


def test_huge_file_is_refused():
    with pytest.raises(IdListError, match="limit is 1,000"):
        decode_id_list(b"STR-000001\n" * 200, max_bytes=1000)


def test_too_many_rows_are_refused():
    with pytest.raises(IdListError, match="limit is 10"):
        read(b"STR-000001\n" * 11, max_rows=10)


def test_formula_strings_are_kept_as_rows():
    rows = read(b"=cmd|' /C calc'!A0\n@SUM(A1)\n")
    assert [row.subject_id for row in rows] == ["=cmd|' /C calc'!A0", "@SUM(A1)"]


def test_inline_ids_split_on_commas_spaces_and_newlines():
    rows = parse_inline_ids("STR-000001, STR-000002;STR-000003\n STR-000004  ")
    assert ids(rows) == [(1, "STR-000001"), (2, "STR-000002"), (3, "STR-000003"), (4, "STR-000004")]


@pytest.mark.parametrize(("value", "message"), [("", "no IDs"), (" ,; ", "no IDs"), ("x" * 50, "longer")])
def test_bad_inline_ids_are_refused(value, message):
    with pytest.raises(IdListError, match=message):
        parse_inline_ids(value, max_bytes=40)


def test_bad_inline_ids_are_set_aside_one_by_one():
    rows = parse_inline_ids("STR-000001 STR\x00 \ud800STR-000002 STR-000003")
    assert ids(rows) == [(1, "STR-000001"), (2, ""), (3, ""), (4, "STR-000003")]
    assert set_aside(rows) == [(2, "control_character"), (3, "not_utf8")]
    assert rows[2].raw == "\ufffdSTR-000002"


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        ("=cmd|' /C calc'!A0", "'=cmd|' /C calc'!A0"),
        ("+1+1", "'+1+1"),
        ("-2+3", "'-2+3"),
        ("@SUM(A1:A2)", "'@SUM(A1:A2)"),
        ("\t=1", "'\t=1"),
        ('  =HYPERLINK("http://x")', '\'  =HYPERLINK("http://x")'),
        ("STR-000001", "STR-000001"),
        (12, "12"),
        (None, ""),
    ],
)
def test_formula_cells_are_neutralised(value, shown):
    assert outcome_cell(value) == shown


def test_outcome_csv_is_rfc4180_and_formula_safe():
    content = to_csv(["line", "input_value"], [[1, '=cmd|"/C calc"!A0'], [2, "a,b\nc"]])
    assert content.endswith(b"\r\n")
    rows = list(csv.reader(io.StringIO(content.decode("utf-8"))))
    assert rows == [["line", "input_value"], ["1", '\'=cmd|"/C calc"!A0'], ["2", "a,b\nc"]]


def test_long_cells_are_cut_short():
    assert len(outcome_cell("A" * 5000)) == 201
    assert outcome_cell("=" + "A" * 5000) == "'=" + "A" * 199 + "…"


# --------------------------------------------------------------------------------------------- fuzz

_ODD_TEXT = [
    "\x00",
    "\ud800",
    "\udfff",
    "\ufeff",
    "\u2028",
    "\r",
    "\n",
    '"',
    ",",
    "\u0301",
    "😀",
    "\x1b",
    "é",
]


def _fuzz_input(rng: random.Random) -> bytes:
    """Random bytes, odd Unicode, huge fields, deep quoting, or a mix of those with good IDs."""
    parts = []
    for _ in range(rng.randint(0, 30)):
        kind = rng.randrange(6)
        if kind == 0:
            parts.append(rng.randbytes(rng.randint(0, 40)))
        elif kind == 1:
            text = "".join(rng.choice(_ODD_TEXT) for _ in range(rng.randint(1, 12)))
            parts.append(text.encode("utf-8", errors="surrogatepass"))
        elif kind == 2:
            parts.append(b"X" * rng.choice([1_000, 140_000, 300_000]))
        elif kind == 3:
            depth = rng.randint(1, 5_000)
            parts.append(b'"' * depth + b"STR-000001" + b'"' * rng.randint(0, depth))
        else:
            parts.append(f"STR-{rng.randint(0, 999_999):06d}".encode())
        parts.append(rng.choice([b"\n", b"\r\n", b"\r", b",", b""]))
    return b"".join(parts)


def test_fuzzed_lists_never_escape_and_every_row_is_read_or_set_aside():
    rng = random.Random(20261202)
    for case in range(300):
        data = _fuzz_input(rng)
        try:
            rows = read(data)
        except IdListError:
            continue  # refused as a whole, with a message (empty, no ID column)
        physical_lines = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n").count(b"\n") + 1
        lines = [row.line for row in rows]
        assert lines == sorted(set(lines)), case
        assert all(1 <= line <= physical_lines for line in lines), case
        for row in rows:
            if row.problem:
                assert row.subject_id == "" and len(row.raw) <= 201, case
            # Whatever is kept goes to Postgres and to a UTF-8 file: no NUL, no surrogate.
            for text in (row.raw, row.subject_id):
                assert "\x00" not in text, case
                text.encode("utf-8")
        to_csv(["line", "input_value"], [[row.line, row.raw] for row in rows])  # the outcome is writable
