"""Reading a table from any reasonable file, with errors that name the file and the fix.

- CSV-like text (``.csv``, ``.tsv``, ``.txt``, ``.dat``, or an unknown extension holding text):
  the separator (comma, tab or semicolon) is detected from the first lines unless ``sep`` is given;
- JSON lines (``.json``, ``.jsonl``, ``.ndjson``; a file holding one JSON array is read too);
- Parquet; Excel (``.xlsx`` / ``.xls``, needs openpyxl);
- each text format compressed with gzip, bz2 or xz (``.csv.gz``, ``.tsv.gz``, ``.jsonl.gz``, ...);
  a gzip file without ``.gz`` in its name is recognised by its first bytes.

Text is read as UTF-8 (a byte-order mark is fine, UTF-16 with a byte-order mark is recognised);
anything else needs ``encoding``, e.g. ``'latin-1'``. Empty files, folders, broken JSON lines,
ragged CSV rows, repeated header names and binary files are reported with the file's name.

``text_columns`` (ids) are read as the file wrote them: ``007`` stays ``"007"`` and ``1`` and ``1.0``
stay two values, in delimited text and JSON alike; Parquet and Excel give their stored values as text.
"""

from __future__ import annotations

import bz2
import codecs
import csv
import difflib
import gzip
import importlib.util
import json
import lzma
import os
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

TEXT_SEPARATORS = (",", "\t", ";")
SEPARATOR_NAMES = {",": "comma", "\t": "tab", ";": "semicolon", "|": "pipe", "::": "'::'"}
_COMPRESSIONS = {".gz": "gzip", ".bz2": "bz2", ".xz": "xz"}
_OPENERS = {"gzip": gzip.open, "bz2": bz2.open, "xz": lzma.open}
_JSON_SUFFIXES = (".json", ".jsonl", ".ndjson")
_TEXT_SUFFIXES = (".csv", ".tsv", ".tab", ".txt", ".dat", ".log", "")
_EXCEL_SUFFIXES = (".xlsx", ".xls")
_SAMPLE_BYTES = 64 * 1024
# First bytes of binary formats a reader may point us at by mistake.
_MAGIC = {b"PAR1": "a Parquet file", b"PK\x03\x04": "a zip archive (an Excel .xlsx workbook?)",
          b"\x1f\x8b": "gzip-compressed", b"\xd0\xcf\x11\xe0": "an old Excel .xls workbook",
          b"BZh": "bz2-compressed", b"\xfd7zXZ": "xz-compressed", b"\x93NUMPY": "a NumPy .npy array",
          b"\x80": "a Python pickle"}
_UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")


def read_table(path: Path | str | os.PathLike, *, sep: str | None = None, encoding: str | None = None,
               text_columns: Sequence[str] = (), **kwargs) -> pd.DataFrame:
    """Read a raw table by its extension (and, for text, its content); ``kwargs`` go to pandas.

    sep: the separator of CSV-like text; detected from the first lines when not given.
    encoding: the text encoding; UTF-8 (or UTF-16 with a byte-order mark) when not given.
    text_columns: columns read as text, exactly as written (ids: leading zeros kept, ``1`` and
        ``1.0`` distinct); a name the file lacks is ignored; a ``dtype`` in ``kwargs`` wins.
    """
    asked = kwargs.get("dtype")
    if asked is not None and not isinstance(asked, dict):
        text_columns = ()  # one dtype for every column, as the caller says
    text_columns = [name for name in text_columns if name not in (asked or {})]
    table = _read_any(Path(path), sep, encoding, text_columns, kwargs)
    for name in text_columns:
        if name in table.columns:
            table[name] = _as_text(table[name])
    return table


def _as_text(col: pd.Series) -> pd.Series:
    """Values as text (pandas' string dtype, as delimited text reads them), missing values kept missing."""
    if pd.api.types.is_string_dtype(col) and not pd.api.types.is_object_dtype(col):
        return col
    if not all(v is None or isinstance(v, (str, int, float, np.generic)) for v in col):
        return col  # a list or an object is no id: validation says so
    return col.map(lambda v: v if v is None or (isinstance(v, float) and v != v) else str(v)).astype("str")


def _read_any(path: Path, sep: str | None, encoding: str | None, text_columns: list[str],
              kwargs: dict) -> pd.DataFrame:
    _check_path(path)
    suffixes = [s.lower() for s in path.suffixes[-2:]]
    compression = _COMPRESSIONS.get(suffixes[-1]) if suffixes else None
    head = _first_bytes(path, None)
    if compression is not None:
        if _magic_name(head) != f"{compression}-compressed":
            raise ValueError(
                f"{path.name}: the name ends in '{suffixes[-1]}' but the file is not "
                f"{compression}-compressed; rename it without '{suffixes[-1]}'"
            )
        suffixes = suffixes[:-1]
    elif head.startswith(b"\x1f\x8b"):
        compression = "gzip"  # compressed but named like plain text: read through it anyway
    suffix = suffixes[-1] if suffixes else ""
    if suffix == ".parquet" and compression is None:
        return _read_parquet(path, kwargs)
    if suffix in _EXCEL_SUFFIXES and compression is None:
        return _read_excel(path, kwargs)

    sample = _first_bytes(path, compression)
    if not sample.strip():
        raise ValueError(f"{path.name} is empty (no text); export the log again with a header line and rows")
    if encoding is None:
        encoding = ("utf-16" if sample.startswith(_UTF16_BOMS)
                    else "utf-8-sig" if sample.startswith(codecs.BOM_UTF8) else "utf-8")
    known = suffix in _JSON_SUFFIXES or suffix in _TEXT_SUFFIXES
    if not encoding.lower().startswith(("utf-16", "utf-32")) and b"\x00" in sample:
        what = _magic_name(sample)
        raise ValueError(
            f"{path.name} is not text but {what or 'binary data'}; save the log as CSV, Parquet or JSON lines"
            + ("" if known else f" (the extension '{suffix}' is not one read here)")
            + ("" if what else "; if it is UTF-16 text without a byte-order mark, pass encoding='utf-16-le'")
        )
    text = _decode_sample(path, sample, encoding)
    # A JSON file under a text name (.txt, .log, none) is still JSON; .csv / .tsv stay delimited.
    looks_json = text.lstrip().startswith(("{", "[")) and suffix not in (".csv", ".tsv", ".tab")
    if suffix in _JSON_SUFFIXES or looks_json:
        table = _read_json(path, text, encoding, compression, kwargs)
        return _with_json_text(table, path, text, encoding, compression, text_columns)
    if text_columns:
        kwargs["dtype"] = {**{name: str for name in text_columns}, **(kwargs.get("dtype") or {})}
    return _read_text(path, text, sep, encoding, compression, kwargs)


def detect_separator(text: str) -> str:
    """The separator of CSV-like ``text`` (its first lines): comma, tab or semicolon; comma if unclear.

    The header line decides (names rarely hold another candidate, while values may: decimal
    commas in a semicolon file); ties go to ``csv.Sniffer`` on the first lines.
    """
    lines = [line for line in text.splitlines() if line.strip()][:20]
    if not lines:
        return ","
    counts = {c: _count_unquoted(lines[0], c) for c in TEXT_SEPARATORS}
    best = max(counts.values())
    winners = [c for c, n in counts.items() if n == best]
    if best == 0:
        return ","
    if len(winners) == 1:
        return winners[0]
    try:
        return csv.Sniffer().sniff("\n".join(lines), delimiters="".join(winners)).delimiter
    except csv.Error:
        return winners[0]


def _count_unquoted(line: str, char: str) -> int:
    # Separators inside double quotes ("Smith, J") do not count.
    return sum(part.count(char) for part in line.split('"')[::2])


def _check_path(path: Path) -> None:
    if path.is_dir():
        inside = sorted(p.name for p in path.iterdir() if p.is_file())[:5]
        raise IsADirectoryError(
            f"{path} is a folder, not a file; pass the path of the log file inside it"
            + (f" (it holds {inside})" if inside else " (it holds no files)")
        )
    if not path.exists():
        where = "" if path.is_absolute() else f" (relative paths start from {Path.cwd()})"
        near = (difflib.get_close_matches(path.name, [p.name for p in path.parent.iterdir()], n=3)
                if path.parent.is_dir() else [])
        raise FileNotFoundError(f"no file at {path}{where}" + (f"; did you mean {near}?" if near else ""))
    if path.stat().st_size == 0:
        raise ValueError(f"{path.name} is empty (0 bytes); export the log again with a header line and rows")


def _first_bytes(path: Path, compression: str | None) -> bytes:
    opener = _OPENERS.get(compression, open)
    try:
        with opener(path, "rb") as f:
            return f.read(_SAMPLE_BYTES)
    except (OSError, EOFError, lzma.LZMAError) as err:
        raise ValueError(
            f"{path.name}: cannot decompress it as {compression} ({err}); is the file complete?"
        ) from None


def _magic_name(head: bytes) -> str | None:
    return next((name for magic, name in _MAGIC.items() if head.startswith(magic)), None)


def _encoding_error(path: Path, encoding: str, where: str) -> ValueError:
    fix = ("pass encoding='latin-1' (or the file's real encoding, e.g. 'cp1252')"
           if encoding.lower().replace("-", "") in ("utf8", "utf8sig") else "pass the file's real encoding")
    return ValueError(
        f"{path.name} is not {encoding} text ({where}); {fix}, e.g. load_events(path, encoding='latin-1')"
    )


def _late_byte(err: UnicodeDecodeError) -> str:
    return f"byte 0x{err.object[err.start]:02x} after the first lines"


def _decode_sample(path: Path, sample: bytes, encoding: str) -> str:
    try:
        decoder = codecs.getincrementaldecoder(encoding)()
    except LookupError:
        raise ValueError(
            f"{path.name}: unknown encoding {encoding!r}; use e.g. 'utf-8', 'latin-1', 'cp1252'"
        ) from None
    try:
        return decoder.decode(sample, final=len(sample) < _SAMPLE_BYTES)  # a cut sample may end mid-character
    except UnicodeDecodeError as err:
        line = sample[:err.start].count(b"\n") + 1
        raise _encoding_error(path, encoding, f"byte 0x{sample[err.start]:02x} on line {line}") from None


def _read_text(path: Path, text: str, sep: str | None, encoding: str, compression: str | None,
               kwargs: dict) -> pd.DataFrame:
    sep = sep if sep is not None else kwargs.pop("delimiter", None) or detect_separator(text)
    if len(sep) > 1 and "engine" not in kwargs:
        kwargs["engine"] = "python"  # pandas reads multi-character separators only with it
    if "header" not in kwargs and "names" not in kwargs and len(sep) == 1:
        _check_header(path, text, sep)
    try:
        return pd.read_csv(path, sep=sep, encoding=encoding, compression=compression, **kwargs)
    except pd.errors.EmptyDataError:
        raise ValueError(
            f"{path.name} has no header line (only blank lines); export it again with one"
        ) from None
    except pd.errors.ParserError as err:
        found = re.search(r"Expected (\d+) fields in line (\d+), saw (\d+)", str(err))
        if found is None:
            raise ValueError(
                f"{path.name}: cannot parse it as {SEPARATOR_NAMES.get(sep, repr(sep))}-separated "
                f"text ({err}); check sep= or the quoting"
            ) from None
        want, line, saw = found.groups()
        raise ValueError(
            f"{path.name}: line {line} has {saw} fields but the header has {want} (read as "
            f"{SEPARATOR_NAMES.get(sep, repr(sep))}-separated); quote values that contain the separator, "
            f"fix that line, or pass the right sep="
        ) from None
    except UnicodeDecodeError as err:
        raise _encoding_error(path, encoding, _late_byte(err)) from None


def _check_header(path: Path, text: str, sep: str) -> None:
    # pandas renames a repeated header name to 'name.1' without a word; say it instead.
    first = next((line for line in text.splitlines() if line.strip()), "")
    names = [n.strip() for n in next(csv.reader([first], delimiter=sep), [])]
    repeated = sorted({n for n in names if n and names.count(n) > 1})
    if repeated:
        raise ValueError(
            f"{path.name}: the header repeats column(s) {repeated}; rename them so each is unique"
        )


def _read_json(path: Path, text: str, encoding: str, compression: str | None, kwargs: dict) -> pd.DataFrame:
    # Keep JSON's own types: no guessing that "0001" is a number or that a 'timestamp' of
    # epoch numbers is in some unit (validation's timestamp_unit decides that).
    kwargs.setdefault("dtype", False)  # also keeps pandas from converting date-like columns
    lines = not text.lstrip().startswith("[")
    try:
        return pd.read_json(path, lines=lines, encoding=encoding, compression=compression, **kwargs)
    except UnicodeDecodeError as err:
        raise _encoding_error(path, encoding, _late_byte(err)) from None
    except ValueError as err:
        first = text.lstrip().split("\n", 1)[0]
        if lines or (_is_json(first) and len(text.strip().splitlines()) > 1):  # lines, the first a list
            _raise_bad_json_line(path, encoding, compression)
        raise ValueError(
            f"{path.name}: cannot read it as JSON ({err}); write one JSON object per line"
        ) from None


def _with_json_text(table: pd.DataFrame, path: Path, text: str, encoding: str, compression: str | None,
                    names: list[str]) -> pd.DataFrame:
    """``table`` with the columns ``names`` replaced by the JSON values as written (numbers as their literal text)."""
    names = [name for name in names if name in table.columns]
    if not names:
        return table
    literal = dict(parse_int=str, parse_float=str, parse_constant=str)
    opener = _OPENERS.get(compression, open)
    with opener(path, "rt", encoding=encoding) as f:
        if text.lstrip().startswith("["):
            records = json.load(f, **literal)
        else:
            records = [json.loads(line, **literal) for line in f if line.strip()]
    if len(records) != len(table) or not all(isinstance(r, dict) for r in records):
        return table  # a layout pandas read differently: keep its values
    return table.assign(**{name: pd.Series([r.get(name) for r in records], index=table.index, dtype=object)
                           for name in names})  # read_table's _as_text then makes them text


def _is_json(text: str) -> bool:
    try:
        json.loads(text)
    except json.JSONDecodeError:
        return False
    return True


def _raise_bad_json_line(path: Path, encoding: str, compression: str | None) -> None:
    opener = _OPENERS.get(compression, open)
    with opener(path, "rt", encoding=encoding) as f:
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                value = json.loads(line)
            except json.JSONDecodeError as err:
                raise ValueError(
                    f"{path.name}: line {number} is not valid JSON ({err.msg} at column {err.colno}); "
                    f"fix or remove that line (each line must be one JSON object)"
                ) from None
            if not isinstance(value, dict):
                raise ValueError(
                    f"{path.name}: line {number} holds a JSON {type(value).__name__}, not an object; "
                    f"each line must be one object like {{\"user_id\": 1, \"item_id\": 2, ...}}"
                )
    raise ValueError(
        f"{path.name}: pandas cannot read these JSON lines; check that every line has the same fields"
    )


def _read_parquet(path: Path, kwargs: dict) -> pd.DataFrame:
    try:
        return pd.read_parquet(path, **kwargs)
    except (OSError, ValueError) as err:  # pyarrow's ArrowInvalid is a ValueError
        head = _first_bytes(path, None)
        looks = _magic_name(head) or "text or other data"
        what = "" if head.startswith(b"PAR1") else f" (it starts like {looks})"
        raise ValueError(
            f"{path.name} is not a readable Parquet file{what}: {str(err).splitlines()[0]}; "
            f"write it again with DataFrame.to_parquet or give it its real extension"
        ) from None


def _read_excel(path: Path, kwargs: dict) -> pd.DataFrame:
    if importlib.util.find_spec("openpyxl") is None:
        raise ImportError(
            f"reading {path.name} needs openpyxl: `pip install openpyxl`, or convert the file "
            f"once to Parquet (pd.read_excel(...).to_parquet('online_retail.parquet')) "
            f"and pass that path"
        )
    return pd.read_excel(path, **kwargs)


__all__ = [
    "detect_separator",
    "read_table",
    "SEPARATOR_NAMES",
    "TEXT_SEPARATORS",
]
