"""Each loader on a small file written here in the dataset's real format."""

import gzip
import json

import pandas as pd
import pytest

from metarec_ref.data import load_events
from metarec_ref.data.loaders import (
    RETAILROCKET_EVENT_MAP,
    TAOBAO_EVENT_MAP,
    load_amazon_reviews,
    load_movielens,
    load_retailrocket,
    load_taobao,
)


def test_generic_csv_with_mapping(tmp_path):
    path = tmp_path / "log.csv"
    path.write_text("cust,sku,at,ctx\n1,A,2024-01-02,web\n1,B,2024-01-01,app\n2,A,2024-01-03,web\n")
    out = load_events(path, {"cust": "user_id", "sku": "item_id", "at": "timestamp", "ctx": "scenario"})
    assert list(out["item_id"]) == ["B", "A", "A"]
    assert list(out["scenario"]) == ["app", "web", "web"]


def test_generic_parquet(tmp_path):
    path = tmp_path / "log.parquet"
    pd.DataFrame({"user_id": [1, 2], "item_id": [5, 6],
                  "timestamp": pd.to_datetime(["2024-01-01", "2024-01-02"])}).to_parquet(path)
    out = load_events(path)
    assert out["timestamp"].dtype == "datetime64[ns]" and len(out) == 2


def test_missing_file_is_reported(tmp_path):
    with pytest.raises(FileNotFoundError, match="no file at"):
        load_events(tmp_path / "nope.csv")


def test_retailrocket_events_csv(tmp_path):
    path = tmp_path / "events.csv"
    path.write_text(
        "timestamp,visitorid,event,itemid,transactionid\n"
        "1433221332117,257597,view,355908,\n"
        "1433224214164,992329,view,248676,\n"
        "1433221999827,257597,addtocart,355908,\n"
        "1433222276276,992329,transaction,248676,4000\n"
    )
    out = load_retailrocket(path, event_map=RETAILROCKET_EVENT_MAP)
    assert out["timestamp"].iloc[0] == pd.Timestamp("2015-06-02 05:02:12.117")
    assert list(out["label"]) == [0, 1, 1, 0]
    assert set(out["user_id"]) == {257597, 992329}


def test_taobao_user_behavior_without_header(tmp_path):
    path = tmp_path / "UserBehavior.csv"
    path.write_text("1,2268318,2520377,pv,1511544070\n1,2333346,2520771,buy,1511561733\n"
                    "2,2576651,149192,cart,1511572885\n")
    out = load_taobao(path, event_map=TAOBAO_EVENT_MAP)
    assert list(out["event"]) == ["pv", "buy", "cart"]
    assert list(out["label"]) == [0, 1, 1]
    assert out["timestamp"].iloc[0] == pd.Timestamp("2017-11-24 17:21:10")
    assert "category" in out


def test_taobao_wrong_width_is_explained(tmp_path):
    path = tmp_path / "UserBehavior.csv"
    path.write_text("1,2,pv,1511544070\n2,3,pv,1511544071\n")
    with pytest.raises(ValueError, match="must have 5 columns"):
        load_taobao(path)


def amazon_rows():
    return [
        {"reviewerID": "A2SUAM1J3GNN3B", "asin": "0000013714", "overall": 5.0,
         "unixReviewTime": 1393545600, "reviewText": "great"},
        {"reviewerID": "A2SUAM1J3GNN3B", "asin": "0000031887", "overall": 3.0,
         "unixReviewTime": 1363392000, "reviewText": "ok"},
        {"reviewerID": "A14VAT5EAX3D9S", "asin": "0000013714", "overall": 4.0,
         "unixReviewTime": 1381622400, "reviewText": "fine"},
    ]


@pytest.mark.parametrize("name", ["reviews.json", "reviews.jsonl", "reviews.json.gz"])
def test_amazon_reviews_json_lines(tmp_path, name):
    text = "\n".join(json.dumps(r) for r in amazon_rows()) + "\n"
    path = tmp_path / name
    if name.endswith(".gz"):
        with gzip.open(path, "wt") as f:
            f.write(text)
    else:
        path.write_text(text)
    out = load_amazon_reviews(path)
    assert list(out["rating"]) == [3.0, 4.0, 5.0]
    assert out["item_id"].iloc[0] == "0000031887"  # leading zeros kept


def test_amazon_missing_field(tmp_path):
    path = tmp_path / "reviews.json"
    path.write_text(json.dumps({"reviewerID": "x", "asin": "y", "overall": 5}) + "\n")
    with pytest.raises(ValueError, match="column 'unixReviewTime' is missing"):
        load_amazon_reviews(path, min_users=1)


def test_movielens_dat(tmp_path):
    path = tmp_path / "ratings.dat"
    path.write_text("1::1193::5::978300760\n1::661::3::978302109\n2::1357::5::978298709\n")
    out = load_movielens(path)
    assert list(out["item_id"]) == [1357, 1193, 661]
    assert out["rating"].dtype == "float64"


def test_movielens_csv(tmp_path):
    path = tmp_path / "ratings.csv"
    path.write_text("userId,movieId,rating,timestamp\n1,1,4.0,964982703\n2,3,4.5,964981247\n")
    out = load_movielens(path)
    assert list(out["rating"]) == [4.5, 4.0]
