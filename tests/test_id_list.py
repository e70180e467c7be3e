"""The ID list reader: forgiving about layout, strict about encoding and size; formula-safe CSV out."""

import csv
import io

import pytest

from mailtrace.id_list import (
    IdListError,
    decode_id_list,
    neutralise_cell,
    parse_id_list,
    parse_inline_ids,
    to_csv,
)


def ids(rows):
    return [(row.line, row.subject_id) for row in rows]


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


def test_ragged_csv_is_refused_clearly():
    with pytest.raises(IdListError, match="not a well-formed CSV"):
        read(b"STR-000001\nSTR-000002,extra,fields\n")


@pytest.mark.parametrize("data", [b"", b"\n\n  \n", "\ufeff".encode()])
def test_empty_lists_are_refused(data):
    with pytest.raises(IdListError, match="empty|no IDs"):
        read(data)


def test_binary_file_is_refused():
    with pytest.raises(IdListError, match="binary"):
        decode_id_list(b"PK\x03\x04\x00\x00binary zip")


def test_control_characters_are_refused():
    with pytest.raises(IdListError, match="control character on line 2"):
        decode_id_list(b"STR-000001\nSTR\x1b-000002\n")


def test_utf16_is_refused_with_advice():
    with pytest.raises(IdListError, match="UTF-16"):
        decode_id_list("id\nSTR-000001\n".encode("utf-16"))


def test_wrong_encoding_is_refused_with_advice():
    with pytest.raises(IdListError, match="not UTF-8.*CSV UTF-8"):
        decode_id_list("STR-000001 Québec\n".encode("latin-1"))


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


@pytest.mark.parametrize(
    ("value", "message"), [("", "no IDs"), (" ,; ", "no IDs"), ("STR\x00", "control"), ("x" * 50, "longer")]
)
def test_bad_inline_ids_are_refused(value, message):
    with pytest.raises(IdListError, match=message):
        parse_inline_ids(value, max_bytes=40)


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
    assert neutralise_cell(value) == shown


def test_outcome_csv_is_rfc4180_and_formula_safe():
    content = to_csv(["line", "input_value"], [[1, '=cmd|"/C calc"!A0'], [2, "a,b\nc"]])
    assert content.endswith(b"\r\n")
    rows = list(csv.reader(io.StringIO(content.decode("utf-8"))))
    assert rows == [["line", "input_value"], ["1", '\'=cmd|"/C calc"!A0'], ["2", "a,b\nc"]]


def test_long_cells_are_cut_short():
    assert len(neutralise_cell("A" * 5000)) == 201
