"""UCI Online Retail on this machine: find the file, or fetch it once into a user cache, verified.

- :func:`find_online_retail` looks, in this order, at an explicit ``path``, at
  ``$METAREC_DATA_DIR`` and at the cache (``$METAREC_CACHE_DIR``, by default the user cache folder
  ``metarec`` of :func:`pooch.os_cache`, e.g. ``~/.cache/metarec`` on Linux).
- :func:`fetch_online_retail` (``make data``) downloads the UCI zip with ``pooch`` into a
  temporary folder of the cache, converts its workbook once to Parquet and verifies the parsed
  table by content: its number of rows and a checksum (:func:`table_checksum`), not the bytes of
  the download, which UCI may re-package. Only a verified file is moved into place; a failed,
  corrupted or wrong download leaves nothing in the cache.
- ``$METAREC_DATA_URL`` replaces the base URL that holds ``online+retail.zip`` (a mirror, or a
  local server in tests).
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import os
import shutil
import sys
import tempfile
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
import pooch

from metarec_ref.runtime import progress_disabled

DATA_DIR_ENV = "METAREC_DATA_DIR"
CACHE_DIR_ENV = "METAREC_CACHE_DIR"
DATA_URL_ENV = "METAREC_DATA_URL"
ONLINE_RETAIL_BASE_URL = "https://archive.ics.uci.edu/static/public/352/"
ONLINE_RETAIL_ARCHIVE = "online+retail.zip"
ONLINE_RETAIL_FILES = ("online_retail.parquet", "Online Retail.xlsx", "online_retail.csv")
ONLINE_RETAIL_COLUMNS = ("InvoiceNo", "StockCode", "Description", "Quantity", "InvoiceDate",
                         "UnitPrice", "CustomerID", "Country")
# The parsed table of UCI's "Online Retail.xlsx" (dataset 352), measured on the Parquet conversion
# of that workbook (see data/README.md); tests/unit/test_fetch.py checks both on the real file.
ONLINE_RETAIL_ROWS = 541_909
ONLINE_RETAIL_CHECKSUM = "50f37394eecd56a4e69bdb71afb515f36d2291900f2d6b6c1f57f6f603fbdb86"
_TEXT_COLUMNS = ("InvoiceNo", "StockCode", "Description", "Country")
_MISSING_TEXT = ("nan", "None", "NaT")  # a missing value after a cast to str
_UNREADABLE = (zipfile.BadZipFile, zlib.error, EOFError, KeyError)


def cache_dir() -> Path:
    """The cache root: ``$METAREC_CACHE_DIR``, else the user cache folder ``metarec``."""
    return Path(os.environ.get(CACHE_DIR_ENV) or pooch.os_cache("metarec"))


def cached_online_retail(cache: str | os.PathLike | None = None) -> Path:
    """Where :func:`fetch_online_retail` keeps the verified Parquet file (it may not exist yet)."""
    return Path(cache or cache_dir()) / "online_retail" / "online_retail.parquet"


def online_retail_url(base_url: str | None = None) -> str:
    """The zip's URL under ``base_url``, else ``$METAREC_DATA_URL``, else UCI's download folder."""
    base = base_url or os.environ.get(DATA_URL_ENV) or ONLINE_RETAIL_BASE_URL
    return base.rstrip("/") + "/" + ONLINE_RETAIL_ARCHIVE


def find_online_retail(path: str | os.PathLike | None = None) -> Path:
    """The Online Retail file at ``path`` (a file or a folder); without ``path``, under
    ``$METAREC_DATA_DIR``, then in the cache that ``make data`` fills."""
    if path is not None:
        p = Path(path)
        if p.is_file():
            return p
        roots = [p / "online_retail", p]
    else:
        roots = []
        if os.environ.get(DATA_DIR_ENV):
            root = Path(os.environ[DATA_DIR_ENV])
            roots += [root / "online_retail", root]
        roots.append(cached_online_retail().parent)
    for root in roots:
        for name in ONLINE_RETAIL_FILES:
            if (root / name).is_file():
                return root / name
    env = f"${DATA_DIR_ENV}={os.environ[DATA_DIR_ENV]}" if os.environ.get(DATA_DIR_ENV) else f"${DATA_DIR_ENV} unset"
    where = f"at {path}" if path is not None else f"({env}, cache {cached_online_retail().parent})"
    raise FileNotFoundError(
        f"UCI Online Retail not found {where}; looked in {[str(r) for r in roots]}. Fix: run "
        f"`make data` (downloads it from the UCI ML repository, dataset 352, doi:10.24432/C5BW33, "
        f"into the cache and verifies it), or put 'Online Retail.xlsx' or online_retail.parquet into "
        f"<dir>/online_retail/ and set {DATA_DIR_ENV}=<dir>, or pass path=..."
    )


def canonical_online_retail(raw: pd.DataFrame, source: str = "Online Retail") -> pd.DataFrame:
    """The eight original columns in one form, whichever file they were read from: ids and text
    as str (a missing text is ``""``, also when a conversion wrote it as ``"nan"``), ``Quantity``
    int64, ``InvoiceDate`` rounded to the second, ``UnitPrice`` and ``CustomerID`` float64."""
    missing = [c for c in ONLINE_RETAIL_COLUMNS if c not in raw.columns]
    if missing:
        raise ValueError(f"{source}: column '{missing[0]}' is missing; found {list(raw.columns)}. "
                         f"Expected the original UCI columns {list(ONLINE_RETAIL_COLUMNS)}")
    table = {}
    for col in ONLINE_RETAIL_COLUMNS:
        values = raw[col].reset_index(drop=True)
        if col in _TEXT_COLUMNS:
            text = values.astype(object).where(values.notna(), "").map(str)
            table[col] = text.where(~text.isin(_MISSING_TEXT), "").astype(str)
        elif col == "InvoiceDate":
            dates = pd.to_datetime(values).astype("datetime64[ns]").dt.round("s")
            if dates.isna().any():
                raise ValueError(f"{source}: InvoiceDate is missing in {int(dates.isna().sum())} rows "
                                 f"(first at row {int(dates.isna().to_numpy().argmax())})")
            table[col] = dates
        else:
            table[col] = pd.to_numeric(values).astype(np.int64 if col == "Quantity" else np.float64)
    return pd.DataFrame(table)


def table_checksum(table: pd.DataFrame) -> str:
    """SHA-256 of a :func:`canonical_online_retail` table, column by column in row order: text as
    UTF-8 joined by a separator, dates in epoch seconds, prices in millionths, a missing
    ``CustomerID`` as -1. Independent of the file format, its compression and pandas' dtypes."""
    digest = hashlib.sha256()
    for col in ONLINE_RETAIL_COLUMNS:
        values = table[col]
        if col in _TEXT_COLUMNS:
            data = "\x1f".join(values.tolist()).encode("utf-8")
        elif col == "InvoiceDate":
            data = values.to_numpy("datetime64[s]").astype("<i8").tobytes()
        elif col == "Quantity":
            data = values.to_numpy(np.int64).astype("<i8").tobytes()
        else:
            data = np.rint(values.fillna(-1).to_numpy(np.float64) * 1e6).astype("<i8").tobytes()
        digest.update(f"{col}:{len(data)}:".encode())
        digest.update(data)
    return digest.hexdigest()


def verify_online_retail(table: pd.DataFrame, source: str, expected_rows: int = ONLINE_RETAIL_ROWS,
                         expected_checksum: str = ONLINE_RETAIL_CHECKSUM) -> None:
    """Raise a ``ValueError`` naming the expected and found rows and checksum when they differ."""
    rows, checksum = len(table), table_checksum(table)
    if rows != expected_rows or checksum != expected_checksum:
        raise ValueError(
            f"{source} is not the expected UCI Online Retail table: found {rows:,} rows, checksum "
            f"{checksum}; expected {expected_rows:,} rows, checksum {expected_checksum}. If UCI "
            f"changed the file, download it by hand and set {DATA_DIR_ENV} (see data/README.md)"
        )


def read_online_retail_source(path: str | os.PathLike) -> pd.DataFrame:
    """The table in UCI's workbook (``.xlsx``) or in a CSV / Parquet file with its columns."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".xlsx":
        return pd.read_excel(path, engine="openpyxl")
    if suffix == ".parquet":
        return pd.read_parquet(path)
    if suffix == ".csv":
        text = {c: str for c in _TEXT_COLUMNS}
        return pd.read_csv(path, dtype=text, keep_default_na=False, na_values={"CustomerID": [""]})
    raise ValueError(f"{path}: expected an .xlsx, .csv or .parquet file with the Online Retail columns")


def convert_online_retail(source: str | os.PathLike, dest: str | os.PathLike) -> pd.DataFrame:
    """Read ``source`` once, write its canonical table to the Parquet file ``dest``, return it."""
    try:
        raw = read_online_retail_source(source)
    except _UNREADABLE as err:
        raise ValueError(f"{source}: cannot read the workbook ({type(err).__name__}: {err}); "
                         f"the download is corrupted") from err
    table = canonical_online_retail(raw, str(source))
    table.to_parquet(dest, index=False, compression="zstd")
    return table


def _download(url: str, folder: Path) -> Path:
    logger = pooch.get_logger()
    level = logger.level
    logger.setLevel(logging.WARNING)  # the hash pooch would log is not what we check
    try:
        return Path(pooch.retrieve(url, known_hash=None, fname=ONLINE_RETAIL_ARCHIVE, path=folder,
                                   progressbar=not progress_disabled()))
    except OSError as err:  # requests' errors are OSErrors: offline, refused, HTTP 404, cut short
        raise OSError(f"could not download {url} ({type(err).__name__}: {err}). Check the "
                      f"connection, or set {DATA_URL_ENV} to a mirror's base URL") from err
    finally:
        logger.setLevel(level)


def _unzip(archive: Path, folder: Path, url: str) -> Path:
    """The archive's workbook (or CSV), extracted into ``folder``."""
    try:
        with zipfile.ZipFile(archive) as zf:
            names = [n for n in zf.namelist()
                     if n.lower().endswith((".xlsx", ".csv")) and not n.startswith("__MACOSX")]
            if not names:
                raise ValueError(f"{url}: the archive holds {zf.namelist()}, no .xlsx or .csv file")
            target = folder / Path(names[0]).name
            with zf.open(names[0]) as src, open(target, "wb") as dst:
                shutil.copyfileobj(src, dst)
    except _UNREADABLE as err:
        raise ValueError(f"the download from {url} is not a readable zip archive "
                         f"({type(err).__name__}: {err}): it is corrupted or cut short") from err
    return target


def fetch_online_retail(base_url: str | None = None, cache: str | os.PathLike | None = None, *,
                        force: bool = False, expected_rows: int = ONLINE_RETAIL_ROWS,
                        expected_checksum: str = ONLINE_RETAIL_CHECKSUM) -> Path:
    """Download, convert and verify UCI Online Retail into the cache; return the Parquet file.

    Nothing is downloaded when the cache already holds it (``force=True`` downloads again).
    Errors: ``OSError`` when the download fails, ``ValueError`` when the archive is corrupted or
    its table is not the expected one (the message names the expected rows and checksum). Either
    way the cache keeps nothing of the attempt."""
    final = cached_online_retail(cache)
    if final.is_file() and not force:
        return final
    url = online_retail_url(base_url)
    final.parent.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".fetch-", dir=final.parent.parent))
    try:
        source = _unzip(_download(url, work), work, url)
        staged = work / final.name
        convert_online_retail(source, staged)
        verify_online_retail(canonical_online_retail(pd.read_parquet(staged)), f"the download from {url}",
                             expected_rows, expected_checksum)
        final.parent.mkdir(exist_ok=True)
        os.replace(staged, final)
    except ValueError as err:
        raise ValueError(f"{err}. Nothing was kept in {final.parent.parent}.") from err
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return final


def main(argv: list[str] | None = None) -> int:
    """``make data``: make sure a verified Online Retail file is here; exit status 1 if not.
    ``--best-effort`` (``make book``) reports a failure and exits 0: the chapters that need the
    file then keep their committed outputs."""
    parser = argparse.ArgumentParser(description="Fetch and verify UCI Online Retail (make data).")
    parser.add_argument("--force", action="store_true", help="download again, even if cached")
    parser.add_argument("--best-effort", action="store_true", help="on failure, report and exit 0")
    args = parser.parse_args(argv)
    try:
        found = None if args.force else _found_file()
        if found is not None and found.suffix == ".parquet":
            verify_online_retail(canonical_online_retail(pd.read_parquet(found), str(found)), str(found))
        path = found or fetch_online_retail(force=args.force)
    except (OSError, ValueError) as err:
        print(f"make data: {err}", file=sys.stderr)
        if args.best_effort:
            print("make data: continuing without it; chapters 1 and 7 keep their committed outputs.",
                  file=sys.stderr)
            return 0
        return 1
    print(f"UCI Online Retail: {'found' if found else 'downloaded and verified'}: {path}")
    return 0


def _found_file() -> Path | None:
    try:
        return find_online_retail()
    except FileNotFoundError:
        return None


__all__ = [
    "CACHE_DIR_ENV",
    "DATA_DIR_ENV",
    "DATA_URL_ENV",
    "ONLINE_RETAIL_BASE_URL",
    "ONLINE_RETAIL_CHECKSUM",
    "ONLINE_RETAIL_COLUMNS",
    "ONLINE_RETAIL_ROWS",
    "cache_dir",
    "cached_online_retail",
    "canonical_online_retail",
    "convert_online_retail",
    "fetch_online_retail",
    "find_online_retail",
    "main",
    "online_retail_url",
    "read_online_retail_source",
    "table_checksum",
    "verify_online_retail",
]
