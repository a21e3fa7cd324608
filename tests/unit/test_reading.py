"""Reading logs of any reasonable shape, and a clear message for each malformed file.

Every file is written here, in the shape a reader's export might have: comma, semicolon or tab
separated, compressed, JSON lines, Parquet, another encoding, or broken in one way.
"""

import bz2
import gzip
import json
import lzma
import warnings

import numpy as np
import pandas as pd
import pytest

from metarec_ref.data import load_events, read_table, validate_events
from metarec_ref.data.reading import detect_separator

HEADER = ["user_id", "item_id", "timestamp"]
ROWS = [
    [1, "A", "2024-01-01 10:00"],
    [1, "B", "2024-01-02 10:00"],
    [2, "A", "2024-01-03 10:00"],
    [2, "C", "2024-01-04 10:00"],
    [3, "B", "2024-01-05 10:00"],
]


def delimited(sep: str = ",", header=HEADER, rows=ROWS) -> str:
    return "\n".join(sep.join(map(str, r)) for r in [header, *rows]) + "\n"


def json_lines(rows=ROWS, header=HEADER) -> str:
    return "".join(json.dumps(dict(zip(header, r))) + "\n" for r in rows)


COMPRESSORS = {".gz": gzip.compress, ".bz2": bz2.compress, ".xz": lzma.compress}


def write(path, content: str | bytes, encoding: str = "utf-8"):
    """Text is encoded and compressed as the name says; bytes are written as they are."""
    data = content
    if isinstance(content, str):
        data = content.encode(encoding)
        for suffix, compress in COMPRESSORS.items():
            if path.name.endswith(suffix):
                data = compress(data)
    path.write_bytes(data)
    return path


@pytest.fixture
def expected(tmp_path):
    return load_events(write(tmp_path / "reference.csv", delimited(",")))


# ------------------------------------------------------------------------ shapes that must work

SHAPES = [
    ("log.csv", lambda: delimited(";"), {}),
    ("log.csv", lambda: delimited("\t"), {}),
    ("log.tsv", lambda: delimited("\t"), {}),
    ("log.txt", lambda: delimited(";"), {}),
    ("log.dat", lambda: delimited("\t"), {}),
    ("log", lambda: delimited(","), {}),
    ("log.csv.gz", lambda: delimited(","), {}),
    ("log.tsv.gz", lambda: delimited("\t"), {}),
    ("log.csv.gz", lambda: delimited(";"), {}),
    ("log.csv.bz2", lambda: delimited(","), {}),
    ("log.tsv.xz", lambda: delimited("\t"), {}),
    ("log.csv", lambda: gzip.compress(delimited(",").encode()), {}),  # gzip without .gz
    ("log.csv", lambda: b"\xef\xbb\xbf" + delimited(",").encode(), {}),  # UTF-8 byte-order mark
    ("log.txt", lambda: delimited("\t").encode("utf-16"), {}),  # Excel's "Unicode text"
    ("log.csv", lambda: delimited("|"), {"sep": "|"}),
    ("log.csv", lambda: delimited(";"), {"sep": ";"}),
    ("log.jsonl", json_lines, {}),
    ("log.json", json_lines, {}),
    ("log.jsonl.gz", json_lines, {}),
    ("log.json.gz", json_lines, {}),
    ("log.ndjson", json_lines, {}),
    ("log.json", lambda: json.dumps([dict(zip(HEADER, r)) for r in ROWS]), {}),  # one JSON array
    ("log.txt", json_lines, {}),  # JSON lines under a text name
]


def test_utf16_without_byte_order_mark_with_encoding(tmp_path, expected):
    path = write(tmp_path / "log.txt", delimited("\t").encode("utf-16-le"))
    pd.testing.assert_frame_equal(load_events(path, encoding="utf-16-le"), expected)


@pytest.mark.parametrize("name, content, kwargs", SHAPES,
                         ids=[f"{s[0]}-{i}" for i, s in enumerate(SHAPES)])
def test_each_shape_reads_as_the_comma_version(tmp_path, expected, name, content, kwargs):
    out = load_events(write(tmp_path / name, content()), **kwargs)
    pd.testing.assert_frame_equal(out, expected)


def test_parquet_reads_as_the_comma_version(tmp_path, expected):
    path = tmp_path / "log.parquet"
    pd.DataFrame(ROWS, columns=HEADER).to_parquet(path)
    pd.testing.assert_frame_equal(load_events(path), expected)


def test_latin1_with_encoding(tmp_path):
    rows = [[1, "Café", "2024-01-01"], [2, "Crème", "2024-01-02"]]
    path = write(tmp_path / "log.csv", delimited(";", rows=rows), encoding="latin-1")
    out = load_events(path, encoding="latin-1")
    assert list(out["item_id"]) == ["Café", "Crème"]


def test_json_ids_keep_leading_zeros(tmp_path):
    rows = [["007", "0001", "2024-01-01"], ["008", "0002", "2024-01-02"]]
    out = load_events(write(tmp_path / "log.jsonl", json_lines(rows)))
    assert list(out["item_id"]) == ["0001", "0002"]


def test_quoted_separators_do_not_count(tmp_path):
    text = 'user_id;item_id;timestamp;title\n1;A;2024-01-01;"Smith, J, vol. 1"\n2;B;2024-01-02;"x, y"\n'
    out = load_events(write(tmp_path / "log.csv", text))
    assert list(out["title"]) == ["Smith, J, vol. 1", "x, y"]


@pytest.mark.parametrize("text, sep", [
    ("a,b,c\n1,2,3\n", ","),
    ("a\tb\tc\n1\t2\t3\n", "\t"),
    ("a;b;c\n1,5;2,5;3\n", ";"),  # decimal commas in the values
    ('"x;y",b,c\n1,2,3\n', ","),
    ("single\n1\n2\n", ","),
    ("", ","),
])
def test_detect_separator(text, sep):
    assert detect_separator(text) == sep


def test_epoch_milliseconds_with_the_right_unit(tmp_path):
    rows = [[1, "A", 1433221332117], [2, "B", 1433224214164]]
    out = load_events(write(tmp_path / "log.csv", delimited(",", rows=rows)), timestamp_unit="ms")
    assert out["timestamp"].iloc[0] == pd.Timestamp("2015-06-02 05:02:12.117")


def test_epoch_strings_in_json_with_a_unit(tmp_path):
    rows = [[1, "A", "1433221332"], [2, "B", "1433224214"]]
    out = load_events(write(tmp_path / "log.jsonl", json_lines(rows)), timestamp_unit="s")
    assert out["timestamp"].iloc[0] == pd.Timestamp("2015-06-02 05:02:12")


def test_nonpositive_quantities_dropped_on_request_with_a_count(tmp_path):
    rows = [[1, "A", "2024-01-01", 2], [1, "B", "2024-01-02", -1], [2, "A", "2024-01-03", 0],
            [2, "C", "2024-01-04", 1]]
    path = write(tmp_path / "log.csv", delimited(",", HEADER + ["quantity"], rows))
    with pytest.warns(UserWarning, match="dropped 2 rows with zero or negative quantity"):
        out = load_events(path, drop_nonpositive_quantity=True)
    assert list(out["quantity"]) == [2, 1]


def test_a_few_placeholder_timestamps_warn_with_a_count(tmp_path):
    rows = [[1, "A", 1433221332], [1, "B", 0], [2, "A", 1433224214]]
    path = write(tmp_path / "log.csv", delimited(",", rows=rows))
    with pytest.warns(UserWarning, match="1 of 3 timestamps fall outside 1980-2100"):
        load_events(path, timestamp_unit="s")


def test_good_file_reads_without_warnings(tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_events(write(tmp_path / "log.tsv.gz", delimited("\t")))


# ------------------------------------------------------------------------ malformed files


def file(name, content, encoding="utf-8"):
    return lambda tmp_path: write(tmp_path / name, content() if callable(content) else content, encoding)


def folder(tmp_path):
    (tmp_path / "logs").mkdir()
    write(tmp_path / "logs" / "a.csv", delimited())
    return tmp_path / "logs"


def parquet(frame):
    def make(tmp_path):
        frame.to_parquet(tmp_path / "log.parquet")
        return tmp_path / "log.parquet"
    return make


def truncated_gzip(tmp_path):
    data = gzip.compress(delimited(rows=ROWS * 200).encode())
    return write(tmp_path / "log.csv.gz", data[: len(data) // 2])


SECONDS_ROWS = [[1, "A", 1433221332], [2, "B", 1433224214]]
MS_ROWS = [[1, "A", 1433221332117], [2, "B", 1433224214164]]
LATIN1 = delimited(";", rows=[[1, "Café", "2024-01-01"], [2, "Crème", "2024-01-02"]])
QUANTITY = HEADER + ["quantity"]
PRICE = HEADER + ["price"]


def rows_with(column, values):
    return [r + [v] for r, v in zip(ROWS, values)]


MALFORMED = [
    ("missing file", lambda p: p / "nope.csv", {}, FileNotFoundError, "no file at .*nope.csv"),
    ("misspelt file", lambda p: write(p / "events.csv", delimited()).with_name("event.csv"), {},
     FileNotFoundError, r"no file at .*event.csv; did you mean \['events.csv'\]"),
    ("UTF-16 without byte-order mark", file("log.txt", delimited("\t").encode("utf-16-le")), {}, ValueError,
     "log.txt is not text but binary data; .*pass encoding='utf-16-le'"),
    ("folder", folder, {}, IsADirectoryError, r"logs is a folder, not a file.*\['a.csv'\]"),
    ("empty file", file("log.csv", ""), {}, ValueError, r"log.csv is empty \(0 bytes\)"),
    ("blank lines", file("log.csv", "\n\n  \n"), {}, ValueError, r"log.csv is empty \(no text\)"),
    ("empty gzip", file("log.csv.gz", ""), {}, ValueError, r"log.csv.gz is empty \(no text\)"),
    ("header only", file("log.csv", "user_id,item_id,timestamp\n"), {}, ValueError,
     r"log.csv has a header \['user_id', 'item_id', 'timestamp'\] but no rows"),
    ("header only tsv.gz", file("log.tsv.gz", "user_id\titem_id\ttimestamp\n"), {}, ValueError,
     "log.tsv.gz has a header .* but no rows"),
    ("latin-1 csv", file("log.csv", LATIN1, "latin-1"), {}, ValueError,
     r"log.csv is not utf-8 text \(byte 0xe9 on line 2\); pass encoding='latin-1'"),
    ("latin-1 csv.gz", file("log.csv.gz", LATIN1, "latin-1"), {}, ValueError,
     "log.csv.gz is not utf-8 text .*encoding='latin-1'"),
    ("latin-1 jsonl", file("log.jsonl", '{"user_id": 1, "item_id": "Café", "timestamp": "2024-01-01"}\n',
                           "latin-1"), {}, ValueError, "log.jsonl is not utf-8 text .*line 1"),
    ("unknown encoding", file("log.csv", delimited()), {"encoding": "klingon"}, ValueError,
     "unknown encoding 'klingon'"),
    ("broken JSON line", file("log.jsonl", lambda: json_lines().replace('"B"', '"B', 1)), {}, ValueError,
     "log.jsonl: line 2 is not valid JSON"),
    ("broken JSON line gz", file("log.jsonl.gz", lambda: json_lines() + '{"user_id": 4,\n'), {}, ValueError,
     "log.jsonl.gz: line 6 is not valid JSON"),
    ("JSON line not an object", file("log.jsonl", lambda: "[1, 2]\n" + json_lines()), {}, ValueError,
     "line 1 holds a JSON list, not an object"),
    ("broken JSON array", file("log.json", '[{"user_id": 1}, {"user_id": '), {}, ValueError,
     "log.json: cannot read it as JSON"),
    ("tab file read as comma", file("log.csv", lambda: delimited("\t")), {"sep": ","}, ValueError,
     r"log.csv: column 'user_id' is missing; found .*looks tab-separated: pass sep='\\t'"),
    ("semicolon file read as comma", file("log.txt", lambda: delimited(";")), {"sep": ","}, ValueError,
     "column 'user_id' is missing.*looks semicolon-separated: pass sep=';'"),
    ("mapping on a tab file read as comma", file("log.csv", lambda: delimited("\t", ["cust", "sku", "at"])),
     {"sep": ",", "columns": {"cust": "user_id", "sku": "item_id", "at": "timestamp"}}, ValueError,
     r"columns mapping names \['cust', 'sku', 'at'\].*tab-separated"),
    ("ragged line", file("log.csv", lambda: delimited() + "4,D,2024-01-06,extra\n"), {}, ValueError,
     "log.csv: line 7 has 4 fields but the header has 3"),
    ("repeated header", file("log.csv", lambda: delimited(",", ["user_id", "item_id", "item_id"])), {},
     ValueError, r"log.csv: the header repeats column\(s\) \['item_id'\]"),
    ("binary, unknown extension", file("log.bin", b"\x00\x01\x02binary\x00" * 50), {}, ValueError,
     "log.bin is not text but binary data.*extension '.bin'"),
    ("xlsx renamed csv", file("log.csv", b"PK\x03\x04\x14\x00\x00\x00" + b"\x00" * 100), {}, ValueError,
     r"log.csv is not text but a zip archive \(an Excel .xlsx workbook\?\)"),
    ("not really gzip", file("log.csv.gz", b"user_id,item_id\n"), {}, ValueError,
     "log.csv.gz: the name ends in '.gz' but the file is not gzip-compressed"),
    ("truncated gzip", truncated_gzip, {}, ValueError, "log.csv.gz: cannot decompress it as gzip"),
    ("text named parquet", file("log.parquet", lambda: delimited()), {}, ValueError,
     "log.parquet is not a readable Parquet file"),
    ("parquet without timestamp", parquet(pd.DataFrame({"user_id": [1, 2], "item_id": [3, 4]})), {},
     ValueError, "log.parquet: column 'timestamp' is missing"),
    ("inf price", file("log.csv", lambda: delimited(",", HEADER + ["price"], rows_with("price", [1, "inf", 2,
                                                                                              "-inf", 3]))),
     {}, ValueError, r"log.csv: column 'price' has 2 infinite values"),
    ("inf epoch timestamp", file("log.csv", lambda: delimited(rows=[[1, "A", 1.7e9], [2, "B", "inf"]])),
     {"timestamp_unit": "s"}, ValueError, "column 'timestamp' has 1 infinite values"),
    ("NaN user id", file("log.csv", lambda: delimited() + ",D,2024-01-06\n"), {}, ValueError,
     "log.csv: column 'user_id' has 1 missing values"),
    ("null item id in JSON", file("log.jsonl", lambda: json_lines(ROWS + [[4, None, "2024-01-06"]])), {},
     ValueError, "log.jsonl: column 'item_id' has 1 missing values"),
    ("seconds read as ms", file("log.csv", lambda: delimited(rows=SECONDS_ROWS)),
     {"timestamp_unit": "ms"}, ValueError,
     "timestamp_unit='ms' gives dates from 1970-01-17 .*look like epoch seconds: pass timestamp_unit='s'"),
    ("ms read as seconds", file("log.csv", lambda: delimited(rows=MS_ROWS)),
     {"timestamp_unit": "s"}, ValueError,
     "timestamp_unit='s' gives dates out of range.*epoch milliseconds: pass timestamp_unit='ms'"),
    ("ms read as ns", file("log.csv", lambda: delimited(rows=MS_ROWS)),
     {"timestamp_unit": "ns"}, ValueError, "from 1970-01-01 to 1970-01-01.*pass timestamp_unit='ms'"),
    ("ms without unit", file("log.csv", lambda: delimited(rows=MS_ROWS)),
     {}, ValueError, r"numeric \(e.g. 1433221332117\); pass timestamp_unit='ms' \(.*epoch milliseconds"),
    ("seconds without unit", file("log.jsonl", lambda: json_lines(SECONDS_ROWS)),
     {}, ValueError, r"pass timestamp_unit='s' \(they look like epoch seconds\)"),
    ("unknown unit", file("log.csv", lambda: delimited(rows=SECONDS_ROWS)),
     {"timestamp_unit": "sec"}, ValueError, "timestamp_unit must be one of"),
    ("unparseable date in tsv", file("log.tsv", lambda: delimited("\t") + "4\tD\tyesterday\n"), {},
     ValueError, "log.tsv: column 'timestamp' has 1 unparseable values, e.g. 'yesterday'"),
    ("negative quantity", file("log.csv", lambda: delimited(",", QUANTITY, rows_with("q", [1, -2, 1, 0, 3]))),
     {}, ValueError, "log.csv: column 'quantity' has 2 zero or negative.*drop_nonpositive_quantity=True"),
    ("only returns", file("log.csv", lambda: delimited(",", QUANTITY, rows_with("q", [-1] * 5))),
     {"drop_nonpositive_quantity": True}, ValueError, "all 5 rows have zero or negative quantity"),
    ("decimal comma", file("log.csv", lambda: delimited(";", PRICE, rows_with("p", ["1,5"] * 5))),
     {}, ValueError, r"column 'price' must be numeric; found '1,5'.*decimal comma.*read_kwargs"),
    ("mapping onto an existing column", file("log.csv", lambda: delimited(",", ["user_id", "cust", "item_id",
                                                                                 "timestamp"],
                                                                          [[1] + r for r in ROWS])),
     {"columns": {"cust": "user_id"}}, ValueError, r"log.csv: columns mapping renames onto \['user_id'\]"),
    ("two columns mapped to one", file("log.csv", lambda: delimited(",", ["a", "b", "item_id", "timestamp"],
                                                                     [[1] + r for r in ROWS])),
     {"columns": {"a": "user_id", "b": "user_id"}}, ValueError, r"sends two columns to \['user_id'\]"),
    ("reader option given to validation", file("log.csv", lambda: delimited()), {"decimal": ","}, TypeError,
     r"unknown option\(s\) \['decimal'\].*read_kwargs"),
    ("single user", file("log.csv", lambda: delimited(rows=ROWS[:2])), {}, ValueError,
     "log.csv: events has only 1 user"),
]


@pytest.mark.parametrize("name, make, kwargs, error, message", MALFORMED, ids=[m[0] for m in MALFORMED])
def test_malformed_file_gets_a_clear_message(tmp_path, name, make, kwargs, error, message):
    with pytest.raises(error, match=message):
        load_events(make(tmp_path), **kwargs)


def test_at_least_thirty_malformed_files():
    assert len({m[4] for m in MALFORMED}) >= 30


def test_read_table_alone_reports_the_file(tmp_path):
    with pytest.raises(ValueError, match="log.jsonl: line 1 is not valid JSON"):
        read_table(write(tmp_path / "log.jsonl", "{oops}\n"))


def test_validate_events_hints_the_separator_of_a_frame():
    frame = pd.DataFrame({"user_id\titem_id\ttimestamp": ["1\tA\t2024-01-01"]})
    with pytest.raises(ValueError, match=r"looks tab-separated: pass sep='\\t'"):
        validate_events(frame)


def test_inf_in_a_frame_names_the_column_and_count():
    frame = pd.DataFrame({"user_id": [1, 2, 3], "item_id": [1, 2, 3], "rating": [1.0, np.inf, np.inf],
                          "timestamp": pd.to_datetime(["2024-01-01"] * 3)})
    with pytest.raises(ValueError, match="column 'rating' has 2 infinite values"):
        validate_events(frame)
