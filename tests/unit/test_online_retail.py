"""UCI Online Retail: cleaning rules on a small file in the real format, and counts on the real file."""

import importlib.util
import warnings

import pandas as pd
import pytest

from metarec_ref.data import find_online_retail, load_online_retail
from metarec_ref.data.loaders import clean_online_retail, product_noun


def clean(raw, **kwargs):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = clean_online_retail(raw, **kwargs)
    return out, [str(w.message) for w in caught]


def test_cleaning_rules_on_a_small_file(raw_rows):
    out, messages = clean(raw_rows)
    assert any("dropped 1 duplicate rows" in m for m in messages)
    # Kept: 85123A, 71053 (once), 22728, 22086, 21730; dropped: duplicate, 2 cancellations,
    # missing customer, postage, zero quantity.
    assert list(out["item_id"]) == ["85123A", "71053", "22728", "22086", "21730"]
    assert out["user_id"].dtype == "int64" and set(out["user_id"]) == {17850, 12583, 13748}
    assert list(out["session_id"].unique()) == ["536365", "536370", "536371", "536373"]
    assert set(out["scenario"]) == {"United Kingdom", "France"}
    assert out["price"].tolist() == [2.55, 3.39, 3.75, 2.55, 4.25]
    assert out.loc[out["item_id"] == "22086", "description"].item() == ""
    assert out.loc[out["item_id"] == "22086", "category"].item() == "UNKNOWN"
    assert out.loc[out["item_id"] == "85123A", "category"].item() == "HOLDER"
    assert out.loc[out["item_id"] == "22728", "desc_words"].item() == 4


def test_non_products_can_be_kept(raw_rows):
    out, _ = clean(raw_rows, drop_non_products=False)
    assert "POST" in set(out["item_id"])


def test_product_noun_skips_colours_sizes_and_patterns():
    desc = pd.Series(["LUNCH BAG RED RETROSPOT", "JUMBO BAG PINK POLKADOT", "", "nan"])
    assert product_noun(desc.replace("nan", "")).tolist() == ["BAG", "BAG", "UNKNOWN", "UNKNOWN"]


@pytest.mark.parametrize("suffix", ["parquet", "csv"])
def test_load_from_a_folder_in_each_format(tmp_path, suffix, raw_rows):
    folder = tmp_path / "online_retail"
    folder.mkdir()
    raw = raw_rows
    if suffix == "parquet":
        raw.astype({"Description": str}).to_parquet(folder / "online_retail.parquet")
    else:
        raw.to_csv(folder / "online_retail.csv", index=False)
    with pytest.warns(UserWarning, match="duplicate"):
        out = load_online_retail(folder)
    assert len(out) == 5 and out["item_id"].iloc[0] == "85123A"


def test_data_dir_environment_variable(tmp_path, monkeypatch, raw_rows):
    (tmp_path / "online_retail").mkdir()
    raw_rows.to_parquet(tmp_path / "online_retail" / "online_retail.parquet")
    monkeypatch.setenv("METAREC_DATA_DIR", str(tmp_path))
    assert find_online_retail().name == "online_retail.parquet"


def test_missing_file_explains_where_to_get_it(tmp_path, monkeypatch):
    monkeypatch.delenv("METAREC_DATA_DIR", raising=False)
    monkeypatch.setenv("METAREC_CACHE_DIR", str(tmp_path / "empty_cache"))
    with pytest.raises(FileNotFoundError, match="run `make data`.*dataset 352.*METAREC_DATA_DIR"):
        find_online_retail()
    with pytest.raises(FileNotFoundError, match="10.24432/C5BW33"):
        find_online_retail(tmp_path)


@pytest.mark.skipif(importlib.util.find_spec("openpyxl") is not None, reason="openpyxl installed")
def test_xlsx_without_openpyxl_says_what_to_install(tmp_path):
    path = tmp_path / "Online Retail.xlsx"
    path.write_bytes(b"PK\x03\x04 not really a workbook")
    with pytest.raises(ImportError, match="pip install openpyxl.*Parquet"):
        load_online_retail(path)


def test_wrong_columns_are_named(raw_rows):
    with pytest.raises(ValueError, match="column 'CustomerID' is missing"):
        clean_online_retail(raw_rows.drop(columns=["CustomerID"]))


@pytest.fixture(scope="module")
def real_raw():
    try:
        path = find_online_retail()
    except FileNotFoundError as err:
        pytest.skip(f"real Online Retail file not available: {err}")
    return pd.read_parquet(path) if path.suffix == ".parquet" else None


@pytest.mark.data
def test_real_file_counts_after_cleaning(real_raw):
    if real_raw is None:
        pytest.skip("counts are checked on the Parquet conversion")
    assert len(real_raw) == 541_909
    out, messages = clean(real_raw)
    assert any("dropped 5187 duplicate rows" in m for m in messages)
    assert len(out) == 391_183
    assert out["user_id"].nunique() == 4_335
    assert out["item_id"].nunique() == 3_659
    assert out["session_id"].nunique() == 18_405
    assert out["scenario"].nunique() == 37
    assert out["timestamp"].min() == pd.Timestamp("2010-12-01 08:26")
    assert out["timestamp"].max() == pd.Timestamp("2011-12-09 12:50")
    assert (out["quantity"] > 0).all() and not out["session_id"].str.startswith("C").any()
    kept, messages = clean(real_raw, drop_non_products=False)
    assert any("dropped 5192 duplicate rows" in m for m in messages)
    assert len(kept) == 392_732 and kept["user_id"].nunique() == 4_339
    assert kept["item_id"].nunique() == 3_665
