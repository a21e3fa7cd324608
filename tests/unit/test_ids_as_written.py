"""Ids as the log wrote them, and dates outside the plausible years refused however they are written."""

import json

import pandas as pd
import pytest

from metarec_ref.data import load_events, validate_events


def write(path, text: str):
    path.write_text(text)
    return path


def csv(rows, header=("user_id", "item_id", "timestamp")) -> str:
    return "\n".join(",".join(map(str, r)) for r in [header, *rows]) + "\n"


def test_leading_zeros_make_distinct_users(tmp_path):
    rows = [["007", "A", "2024-01-01"], ["07", "A", "2024-01-02"], ["7", "B", "2024-01-03"]]
    out = load_events(write(tmp_path / "log.csv", csv(rows)))
    assert out["user_id"].tolist() == ["007", "07", "7"]
    assert out["user_id"].nunique() == 3


def test_one_and_one_point_zero_are_two_items(tmp_path):
    rows = [[1, "1", "2024-01-01"], [1, "1.0", "2024-01-02"], [2, "1", "2024-01-03"]]
    out = load_events(write(tmp_path / "log.csv", csv(rows)))
    assert out["item_id"].tolist() == ["1", "1.0", "1"]
    assert out["item_id"].nunique() == 2


def test_mapped_id_columns_and_sessions_are_text_too(tmp_path):
    rows = [["0042", "00100", "001", "2024-01-01"], ["42", "100", "1", "2024-01-02"]]
    path = write(tmp_path / "log.tsv", csv(rows, header=("customer", "sku", "basket", "when")).replace(",", "\t"))
    out = load_events(path, columns={"customer": "user_id", "sku": "item_id", "basket": "session_id",
                                     "when": "timestamp"})
    assert out["user_id"].tolist() == ["0042", "42"]
    assert out["item_id"].tolist() == ["00100", "100"]
    assert out["session_id"].tolist() == ["001", "1"]


def test_json_numbers_keep_their_literal_text(tmp_path):
    records = ['{"user_id": "007", "item_id": 1, "timestamp": "2024-01-01"}',
               '{"user_id": 7, "item_id": 1.0, "timestamp": "2024-01-02"}',
               '{"user_id": 7, "item_id": 2, "timestamp": "2024-01-03"}']
    out = load_events(write(tmp_path / "log.jsonl", "\n".join(records) + "\n"))
    assert out["user_id"].tolist() == ["007", "7", "7"]
    assert out["item_id"].tolist() == ["1", "1.0", "2"]
    array = write(tmp_path / "log.json", "[" + ",".join(records) + "]")
    pd.testing.assert_frame_equal(load_events(array), out)


def test_parquet_ids_read_as_their_stored_values(tmp_path):
    path = tmp_path / "log.parquet"
    pd.DataFrame({"user_id": [7, 8], "item_id": ["001", "2"],
                  "timestamp": pd.to_datetime(["2024-01-01", "2024-01-02"])}).to_parquet(path)
    out = load_events(path)
    assert out["user_id"].tolist() == ["7", "8"] and out["item_id"].tolist() == ["001", "2"]


def test_a_missing_id_is_still_refused(tmp_path):
    rows = [["007", "A", "2024-01-01"], ["", "A", "2024-01-02"]]
    with pytest.raises(ValueError, match="column 'user_id' has 1 missing values"):
        load_events(write(tmp_path / "log.csv", csv(rows)))


def test_a_nested_json_id_is_refused(tmp_path):
    records = ['{"user_id": {"id": 1}, "item_id": 1, "timestamp": "2024-01-01"}',
               '{"user_id": {"id": 2}, "item_id": 2, "timestamp": "2024-01-02"}']
    with pytest.raises(ValueError, match="unhashable"):
        load_events(write(tmp_path / "log.jsonl", "\n".join(records) + "\n"))


def test_a_dtype_the_caller_gives_wins(tmp_path):
    rows = [["007", "A", "2024-01-01"], ["8", "B", "2024-01-02"]]
    out = load_events(write(tmp_path / "log.csv", csv(rows)), read_kwargs={"dtype": {"user_id": int}})
    assert out["user_id"].tolist() == [7, 8]


# ----------------------------------------------------------------- dates outside the plausible years


def frame(dates) -> pd.DataFrame:
    return pd.DataFrame({"user_id": range(len(dates)), "item_id": range(len(dates)), "timestamp": dates})


@pytest.mark.parametrize("date", ["1700-01-01", "1900-01-01 00:00", "2150-06-01", "1500-01-01", "9999-12-31"])
def test_iso_dates_outside_the_plausible_years_are_refused(date):
    with pytest.raises(ValueError, match=r"column 'timestamp' gives dates from .* to .*, outside 1980-2100; "
                                         r"1 of 3 dates lie outside .*fix or drop those rows"):
        validate_events(frame([date, "2024-01-01", "2024-02-01"]))


def test_iso_and_epoch_share_one_message():
    with pytest.raises(ValueError) as iso:
        validate_events(frame(["1700-01-01", "1700-01-02"]))
    with pytest.raises(ValueError) as epoch:
        validate_events(frame([1.7e12, 1.7e12 + 1e3]), timestamp_unit="us")
    pattern = r"column 'timestamp' .*gives dates from \S+ to \S+, outside 1980-2100; "
    assert pd.Series([str(iso.value), str(epoch.value)]).str.contains(pattern).all()


def test_a_log_file_with_a_placeholder_date_names_the_file(tmp_path):
    rows = [[1, "A", "1900-01-01"], [2, "B", "2024-01-02"]]
    with pytest.raises(ValueError, match=r"^log.csv: column 'timestamp' gives dates from 1900-01-01"):
        load_events(write(tmp_path / "log.csv", csv(rows)))


def test_plausible_iso_dates_still_pass():
    out = validate_events(frame(["1980-01-01", "2099-12-31 23:59", "2011-12-01 08:26"]))
    assert out["timestamp"].min() == pd.Timestamp("1980-01-01")
    assert json.dumps(str(out["timestamp"].dtype)) == '"datetime64[ns]"'
