"""Schema, column mapping, encoders and the item catalog."""

import numpy as np
import pandas as pd
import pytest
import torch

from metarec_ref.batch import FeatureSpec
from metarec_ref.batch import UNKNOWN
from metarec_ref.data import Encoders, validate_events


def shop_log() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "CustomerID": [7, 7, 8, 8, 9, 9],
            "StockCode": ["b", "a", "a", "c", "b", "c"],
            "When": ["2024-01-03", "2024-01-01", "2024-01-02", "2024-01-02", "2024-01-05", "2024-01-04"],
            "Country": ["UK", "UK", "FR", "FR", "UK", "UK"],
            "UnitPrice": [1.0, 10.0, 10.0, 100.0, 1.0, 100.0],
            "Invoice": ["x1", "x0", "y0", "y0", "z1", "z0"],
            "category": ["toy", "pen", "pen", "lamp", "toy", "lamp"],
        }
    )


MAPPING = {"CustomerID": "user_id", "StockCode": "item_id", "When": "timestamp",
           "Country": "scenario", "UnitPrice": "price", "Invoice": "session_id"}


def test_mapping_renames_and_keeps_optional_columns():
    out = validate_events(shop_log(), MAPPING)
    assert {"user_id", "item_id", "timestamp", "scenario", "price", "session_id", "category"} <= set(out)
    assert out["timestamp"].dtype == "datetime64[ns]"
    assert list(out["session_id"]) == ["x0", "y0", "y0", "x1", "z0", "z1"]


def test_output_is_sorted_by_time_and_stable_on_ties():
    out = validate_events(shop_log(), MAPPING)
    assert out["timestamp"].is_monotonic_increasing
    # Two events at 2024-01-02 keep their input order (a before c).
    tied = out[out["timestamp"] == pd.Timestamp("2024-01-02")]
    assert list(tied["item_id"]) == ["a", "c"]


def test_input_is_not_modified():
    raw = shop_log()
    before = raw.copy()
    validate_events(raw, MAPPING)
    pd.testing.assert_frame_equal(raw, before)


def test_timezones_become_naive_utc():
    df = shop_log().rename(columns=MAPPING)
    df["timestamp"] = pd.to_datetime(df["timestamp"]).dt.tz_localize("Europe/Paris")
    out = validate_events(df)
    assert out["timestamp"].dt.tz is None
    assert out["timestamp"].iloc[0] == pd.Timestamp("2023-12-31 23:00")


def test_epoch_seconds_with_unit():
    df = shop_log().rename(columns=MAPPING)
    df["timestamp"] = 1_700_000_000 + np.arange(6) * 86_400
    out = validate_events(df, timestamp_unit="s")
    assert out["timestamp"].iloc[-1] == pd.Timestamp("2023-11-19 22:13:20")


def test_relative_seconds_warn_about_the_unit():
    df = shop_log().rename(columns=MAPPING)
    df["timestamp"] = np.arange(6) * 86_400
    with pytest.warns(UserWarning, match="timestamp_unit"):
        out = validate_events(df, timestamp_unit="s")
    assert out["timestamp"].iloc[-1] == pd.Timestamp("1970-01-06")


def test_event_map_gives_labels_and_weights():
    df = shop_log().rename(columns=MAPPING).assign(event=["view", "buy", "view", "cart", "buy", "view"])
    out = validate_events(df, event_map={"view": 0, "cart": 0.5, "buy": 1})
    assert set(out["label"]) == {0, 1}
    by_event = out.groupby("event")[["label", "weight"]].first()
    assert by_event.loc["cart", "label"] == 1 and by_event.loc["cart", "weight"] == 0.5
    assert by_event.loc["view", "label"] == 0


def test_ids_are_kept_as_given():
    out = validate_events(shop_log(), MAPPING)
    assert set(out["item_id"]) == {"a", "b", "c"}
    assert set(out["user_id"]) == {7, 8, 9}


def test_encoders_reserve_code_zero_for_unknown():
    enc = Encoders.fit(validate_events(shop_log(), MAPPING))
    assert list(enc.encode_items(["a", "b", "c", "zzz"])) == [1, 2, 3, UNKNOWN]
    assert list(enc.encode_scenarios(["FR", "UK", "DE"])) == [1, 2, UNKNOWN]
    assert list(enc.decode_items([0, 1, 3])) == [None, "a", "c"]
    assert enc.spec == FeatureSpec(n_items=4, n_categories=4, n_scenarios=3, n_dense=1)


def test_item_features_are_standardised_log_prices_and_categories():
    enc = Encoders.fit(validate_events(shop_log(), MAPPING))
    dense = enc.item_dense[1:, 0]  # a=10, b=1, c=100
    assert dense.mean() == pytest.approx(0.0, abs=1e-6)
    assert dense.std() == pytest.approx(1.0, abs=1e-5)
    assert dense[1] < dense[0] < dense[2]
    assert enc.item_dense[UNKNOWN, 0] == 0.0
    cats = enc.categories
    assert cats[enc.item_category[1] - 1] == "pen" and cats[enc.item_category[3] - 1] == "lamp"


def test_extra_item_feature_columns_become_dense():
    df = shop_log().assign(weight_kg=[1, 2, 2, 3, 1, 3])
    enc = Encoders.fit(validate_events(df, MAPPING), item_feature_columns=["weight_kg"])
    assert enc.dense_names == ("log_price", "weight_kg")
    assert enc.spec.n_dense == 2


def test_log_without_price_or_category_still_has_one_dense_column():
    df = shop_log().rename(columns=MAPPING)[["user_id", "item_id", "timestamp"]]
    enc = Encoders.fit(validate_events(df))
    assert enc.spec.n_dense == 1 and np.all(enc.item_dense == 0)
    assert enc.spec.n_categories == 1 and np.all(enc.item_category == UNKNOWN)


def test_catalog_features_shapes_and_availability():
    events = validate_events(shop_log(), MAPPING)
    enc = Encoders.fit(events)
    catalog = enc.catalog()
    x = catalog.features(torch.tensor([1, 2]))
    assert x["item"].shape == (2, 4) and x["dense"].shape == (2, 4, 1)
    assert torch.equal(x["item"][1], torch.arange(4))
    assert torch.equal(x["scenario"][0], torch.ones(4, dtype=torch.int64))
    assert x["item"].dtype == torch.int64 and x["dense"].dtype == torch.float32
    # a first seen 01-01, c 01-02, b 01-03; code 0 never available.
    assert catalog.available("2024-01-02").tolist() == [False, True, False, False]
    assert catalog.available().tolist() == [False, True, True, True]
    with pytest.raises(ValueError, match="shape \\(tasks,\\)"):
        catalog.features(torch.zeros(2, 2, dtype=torch.int64))
