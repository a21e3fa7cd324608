"""Fetching UCI Online Retail: a zip served on the loopback address, in UCI's format, stands in for
the UCI repository; corrupted and wrong downloads fail clearly and leave nothing in the cache. The
verification constants are checked on the real file (marked ``data``): no test reaches the internet."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from metarec_ref.book.build import notebooks_missing_data
from metarec_ref.data import fetch_online_retail, find_online_retail
from metarec_ref.data.fetch import (
    CACHE_DIR_ENV,
    DATA_DIR_ENV,
    DATA_URL_ENV,
    ONLINE_RETAIL_CHECKSUM,
    ONLINE_RETAIL_ROWS,
    cache_dir,
    cached_online_retail,
    canonical_online_retail,
    convert_online_retail,
    online_retail_url,
    table_checksum,
    verify_online_retail,
)
from metarec_ref.data.fetch import main
from tests.readme import NO_PROXY, loopback_server, zip_one
from tests.unit.helpers import raw_rows

UCI_URL = "https://archive.ics.uci.edu/static/public/352/online+retail.zip"
WORKBOOK = "Online Retail.xlsx"  # the member of UCI's zip


def as_in_workbook(raw: pd.DataFrame) -> pd.DataFrame:
    """Rows as UCI's workbook stores them: numeric invoice and stock codes as numbers, a missing
    description as an empty cell."""
    out = raw.copy()
    for col in ("InvoiceNo", "StockCode"):
        out[col] = pd.Series([int(v) if v.isdigit() else v for v in raw[col]], dtype=object)
    out["Description"] = raw["Description"].astype(object).where(raw["Description"] != "nan", None)
    return out


def as_in_shared_parquet(raw: pd.DataFrame) -> pd.DataFrame:
    """Rows as the Parquet conversion stores them: text columns cast to str, missing as "nan"."""
    out = as_in_workbook(raw)
    for col in ("InvoiceNo", "StockCode", "Description", "Country"):
        out[col] = [str(v) if v is not None else "nan" for v in out[col]]
    return out


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """An empty cache folder, named by $METAREC_CACHE_DIR, and no $METAREC_DATA_DIR."""
    folder = tmp_path / "cache"
    monkeypatch.setenv(CACHE_DIR_ENV, str(folder))
    monkeypatch.delenv(DATA_DIR_ENV, raising=False)
    monkeypatch.delenv(DATA_URL_ENV, raising=False)
    for name, value in NO_PROXY.items():
        monkeypatch.setenv(name, value)
    return folder


@pytest.fixture
def site(tmp_path):
    """(folder, base URL) of a web server on 127.0.0.1 serving ``folder``."""
    folder = tmp_path / "site"
    folder.mkdir()
    with loopback_server(folder) as url:
        yield folder, url


def serve_workbook(site, raw: pd.DataFrame) -> bytes:
    """Put UCI's zip of ``raw`` on the site; return the zip's bytes."""
    folder, _ = site
    book = folder.parent / WORKBOOK
    as_in_workbook(raw).to_excel(book, index=False, sheet_name="Online Retail")
    return zip_one(book, folder / "online+retail.zip", WORKBOOK).read_bytes()


def files_in(folder) -> list:
    return sorted(p for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


def expected_of(raw: pd.DataFrame) -> dict:
    table = canonical_online_retail(raw)
    return {"expected_rows": len(table), "expected_checksum": table_checksum(table)}


# ------------------------------------------------------------------------------ the happy path


def test_defaults_and_overrides(monkeypatch, tmp_path):
    monkeypatch.delenv(DATA_URL_ENV, raising=False)
    assert online_retail_url() == UCI_URL
    monkeypatch.setenv(DATA_URL_ENV, "http://127.0.0.1:9/mirror")
    assert online_retail_url() == "http://127.0.0.1:9/mirror/online+retail.zip"
    assert online_retail_url("http://example.org/x/") == "http://example.org/x/online+retail.zip"
    monkeypatch.delenv(CACHE_DIR_ENV, raising=False)
    assert cache_dir().name == "metarec"
    monkeypatch.setenv(CACHE_DIR_ENV, str(tmp_path))
    assert cached_online_retail() == tmp_path / "online_retail" / "online_retail.parquet"


def test_fetch_converts_verifies_and_caches(cache, site):
    raw = raw_rows()
    serve_workbook(site, raw)
    path = fetch_online_retail(site[1], **expected_of(raw))
    assert path == cache / "online_retail" / "online_retail.parquet"
    assert files_in(cache) == [path]  # the zip, the workbook and the work folder are gone
    table = pd.read_parquet(path)
    assert len(table) == len(raw) == 11
    assert table["InvoiceNo"].tolist()[:4] == ["536365", "536365", "536365", "C536379"]
    assert table["StockCode"].iloc[1] == "71053"  # a number in the workbook, a string here
    assert table["Description"].iloc[5] == ""  # an empty cell
    assert np.isnan(table["CustomerID"].iloc[5]) and table["CustomerID"].iloc[0] == 17850.0
    assert table["InvoiceDate"].iloc[0] == pd.Timestamp("2010-12-01 08:26")
    assert table["UnitPrice"].tolist()[:2] == [2.55, 3.39]
    # Chapters 1 and 7 find it with no path and no $METAREC_DATA_DIR.
    assert find_online_retail() == path


def test_make_book_executes_the_real_data_chapters_once_fetched(cache, site):
    """`make book` excludes from execution the chapters whose data is missing; after a fetch, none."""
    folder = (Path(__file__).resolve().parents[2] / "notebooks").as_posix()
    needs_data = [f"{folder}/{name}.ipynb" for name in
                  ("01_why_fast_optimisation", "07_online_retail", "07b_residual_meta_learner", "07c_new_products")]
    assert notebooks_missing_data(folder) == needs_data
    raw = raw_rows()
    serve_workbook(site, raw)
    fetch_online_retail(site[1], **expected_of(raw))
    assert notebooks_missing_data(folder) == []


def test_a_cached_file_is_not_downloaded_again(cache, site):
    raw = raw_rows()
    serve_workbook(site, raw)
    path = fetch_online_retail(site[1], **expected_of(raw))
    (site[0] / "online+retail.zip").unlink()  # the site is empty now
    assert fetch_online_retail(site[1], **expected_of(raw)) == path
    with pytest.raises(OSError, match="404"):
        fetch_online_retail(site[1], force=True, **expected_of(raw))
    assert files_in(cache) == [path]  # the failed forced download kept the verified file


def test_workbook_and_parquet_conversion_agree():
    """The checksum constant comes from a Parquet conversion of UCI's workbook (text cast to
    str): the same rows read from the workbook must give the same table and checksum."""
    raw = raw_rows()
    from_parquet = canonical_online_retail(as_in_shared_parquet(raw))
    assert table_checksum(from_parquet) == table_checksum(canonical_online_retail(raw))
    assert (from_parquet["Description"] == "").sum() == 2


def test_workbook_file_gives_the_parquet_checksum(tmp_path):
    raw = raw_rows()
    as_in_workbook(raw).to_excel(tmp_path / WORKBOOK, index=False)
    as_in_shared_parquet(raw).to_parquet(tmp_path / "shared.parquet")
    from_book = convert_online_retail(tmp_path / WORKBOOK, tmp_path / "a.parquet")
    from_parquet = convert_online_retail(tmp_path / "shared.parquet", tmp_path / "b.parquet")
    pd.testing.assert_frame_equal(from_book, from_parquet)
    assert table_checksum(from_book) == table_checksum(from_parquet)


def test_checksum_sees_every_column_and_the_row_order():
    table = canonical_online_retail(raw_rows())
    base = table_checksum(table)
    changes = {
        "InvoiceNo": "536366", "StockCode": "85123B", "Description": "WHITE", "Quantity": 7,
        "InvoiceDate": pd.Timestamp("2010-12-01 08:27"), "UnitPrice": 2.56, "CustomerID": 17851.0,
        "Country": "France",
    }
    for col, value in changes.items():
        changed = table.copy()
        changed.loc[0, col] = value
        assert table_checksum(changed) != base, col
    assert table_checksum(table.iloc[::-1].reset_index(drop=True)) != base
    # A second's float error in a workbook date, "nan" for a missing text: the same table.
    noisy = raw_rows()
    noisy["InvoiceDate"] += pd.Timedelta("3ms")
    assert table_checksum(canonical_online_retail(noisy)) == base


# ------------------------------------------------------------------------- what goes wrong


def corrupt_flip(data: bytes) -> bytes:
    middle = len(data) // 2
    return data[:middle] + bytes([data[middle] ^ 0xFF]) + data[middle + 1:]


CORRUPTIONS = {
    "not a zip": lambda data: b"<html>Service unavailable</html>",
    "cut short": lambda data: data[: len(data) // 2],
    "a flipped byte": corrupt_flip,
}


@pytest.mark.parametrize("how", list(CORRUPTIONS))
def test_corrupted_download_is_reported_and_not_kept(cache, site, how):
    raw = raw_rows()
    data = serve_workbook(site, raw)
    (site[0] / "online+retail.zip").write_bytes(CORRUPTIONS[how](data))
    with pytest.raises(ValueError, match="not a readable zip archive.*corrupted or cut short") as err:
        fetch_online_retail(site[1], **expected_of(raw))
    assert "online+retail.zip" in str(err.value) and "Nothing was kept" in str(err.value)
    assert files_in(cache) == []
    with pytest.raises(FileNotFoundError, match="make data"):
        find_online_retail()


def test_corrupted_workbook_inside_a_good_zip(cache, site):
    folder, url = site
    book = folder.parent / WORKBOOK
    book.write_bytes(b"PK\x03\x04 not a workbook")
    zip_one(book, folder / "online+retail.zip", WORKBOOK)
    with pytest.raises(ValueError, match="cannot read the workbook.*corrupted"):
        fetch_online_retail(url)
    assert files_in(cache) == []


def test_archive_without_a_workbook(cache, site):
    folder, url = site
    (folder.parent / "README.txt").write_text("nothing here")
    zip_one(folder.parent / "README.txt", folder / "online+retail.zip", "README.txt")
    with pytest.raises(ValueError, match=r"holds \['README.txt'\], no .xlsx or .csv"):
        fetch_online_retail(url)
    assert files_in(cache) == []


def test_wrong_content_names_the_expected_rows_and_checksum(cache, site):
    serve_workbook(site, raw_rows())  # a valid workbook of 11 rows, not the real 541,909
    with pytest.raises(ValueError) as err:
        fetch_online_retail(site[1])
    message = str(err.value)
    assert "found 11 rows" in message and f"expected {ONLINE_RETAIL_ROWS:,} rows" in message
    assert ONLINE_RETAIL_CHECKSUM in message and "541,909" in message
    assert files_in(cache) == []


def test_same_rows_other_content_fails_on_the_checksum(cache, site):
    raw = raw_rows()
    expected = expected_of(raw)
    changed = raw.copy()
    changed.loc[6, "UnitPrice"] = 3.76
    serve_workbook(site, changed)
    with pytest.raises(ValueError, match=f"found 11 rows, checksum [0-9a-f]{{64}}; expected 11 rows, "
                                         f"checksum {expected['expected_checksum']}"):
        fetch_online_retail(site[1], **expected)
    assert files_in(cache) == []


def test_unreachable_server_names_the_url_and_the_override(cache, site):
    with pytest.raises(OSError, match=f"could not download {site[1]}online\\+retail.zip.*{DATA_URL_ENV}"):
        fetch_online_retail(site[1])  # nothing served: HTTP 404
    assert files_in(cache) == []


def test_missing_columns_are_named():
    with pytest.raises(ValueError, match="column 'UnitPrice' is missing"):
        canonical_online_retail(raw_rows().drop(columns=["UnitPrice"]))


# ------------------------------------------------------------------ finding and `make data`


def test_find_order_path_then_data_dir_then_cache(cache, tmp_path, monkeypatch):
    def put(folder):
        (folder / "online_retail").mkdir(parents=True)
        raw_rows().to_parquet(folder / "online_retail" / "online_retail.parquet")
        return folder / "online_retail" / "online_retail.parquet"

    in_cache = put(cache)
    assert find_online_retail() == in_cache
    in_data_dir = put(tmp_path / "data")
    monkeypatch.setenv(DATA_DIR_ENV, str(tmp_path / "data"))
    assert find_online_retail() == in_data_dir
    explicit = put(tmp_path / "mine")
    assert find_online_retail(tmp_path / "mine") == explicit
    # An explicit path that holds nothing is an error, not a fall-back to another copy.
    with pytest.raises(FileNotFoundError, match="make data"):
        find_online_retail(tmp_path / "nowhere")


def test_not_found_names_make_data_and_every_place(cache, monkeypatch, tmp_path):
    monkeypatch.setenv(DATA_DIR_ENV, str(tmp_path / "data"))
    with pytest.raises(FileNotFoundError) as err:
        find_online_retail()
    message = str(err.value)
    assert "`make data`" in message and str(cache / "online_retail") in message
    assert str(tmp_path / "data" / "online_retail") in message and "dataset 352" in message


def test_main_fetches_once_then_finds(cache, site, monkeypatch, capsys):
    raw = raw_rows()
    serve_workbook(site, raw)
    monkeypatch.setenv(DATA_URL_ENV, site[1])
    assert main([]) == 1  # the 11 rows are not the real table
    assert "expected 541,909 rows" in capsys.readouterr().err
    fetch_online_retail(**expected_of(raw))
    checked = []  # a found Parquet file is verified, here against the small table's values
    monkeypatch.setattr("metarec_ref.data.fetch.verify_online_retail",
                        lambda table, source: checked.append((table_checksum(table), source)))
    assert main([]) == 0
    assert checked == [(expected_of(raw)["expected_checksum"], str(cached_online_retail()))]
    assert f"found: {cached_online_retail()}" in capsys.readouterr().out


def test_main_best_effort_keeps_going_offline(cache, site, monkeypatch, capsys):
    monkeypatch.setenv(DATA_URL_ENV, site[1])  # serves nothing
    assert main([]) == 1
    assert main(["--best-effort"]) == 0
    err = capsys.readouterr().err
    assert "could not download" in err and "keep their committed outputs" in err
    assert files_in(cache) == []


# ------------------------------------------------------------------------------ the real file


@pytest.fixture(scope="module")
def real_file():
    try:
        path = find_online_retail()
    except FileNotFoundError as err:
        pytest.skip(f"real Online Retail file not available: {err}")
    if path.suffix != ".parquet":
        pytest.skip("the constants are checked on a Parquet conversion")
    return path


@pytest.mark.data
@pytest.mark.slow
def test_real_file_has_the_verified_rows_and_checksum(real_file, tmp_path):
    table = convert_online_retail(real_file, tmp_path / "online_retail.parquet")
    assert len(table) == ONLINE_RETAIL_ROWS == 541_909  # data/README.md, SOURCE.md of the file
    assert table_checksum(table) == ONLINE_RETAIL_CHECKSUM
    verify_online_retail(canonical_online_retail(pd.read_parquet(tmp_path / "online_retail.parquet")),
                         "the converted file")
    assert (table["Description"] == "").sum() == 1_454  # missing, "nan" in the conversion
    assert table["InvoiceNo"].str.startswith("C").sum() == 9_288
    assert table["CustomerID"].isna().sum() == 135_080


@pytest.mark.data
@pytest.mark.slow
def test_fetch_of_the_real_table_from_a_served_zip(real_file, cache, site, tmp_path):
    """The whole path with the real constants: the real table as the CSV member of a zip."""
    folder, url = site
    csv = tmp_path / "Online Retail.csv"
    pd.read_parquet(real_file).to_csv(csv, index=False)
    zip_one(csv, folder / "online+retail.zip", csv.name)
    path = fetch_online_retail(url)
    assert files_in(cache) == [path] and len(pd.read_parquet(path)) == 541_909
