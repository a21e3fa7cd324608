"""Malformed event logs: each is rejected with a message that names the problem and the fix."""

import warnings

import numpy as np
import pandas as pd
import pytest

from metarec_ref.data import validate_events


def good(n_users: int = 3, per_user: int = 4) -> pd.DataFrame:
    rows = [
        {"user_id": u, "item_id": f"i{(u + j) % 5}",
         "timestamp": pd.Timestamp("2024-01-01") + pd.Timedelta(hours=u * per_user + j)}
        for u in range(n_users)
        for j in range(per_user)
    ]
    return pd.DataFrame(rows)


def with_col(name, values):
    def make():
        df = good()
        df[name] = values(len(df)) if callable(values) else values
        return df
    return make


def drop(name):
    return lambda: good().drop(columns=[name])


def set_first(name, value):
    def make():
        df = good().astype({name: object})
        df.loc[0, name] = value
        return df
    return make


MALFORMED = [
    ("not a frame", lambda: [{"user_id": 1}], {}, "must be a pandas DataFrame"),
    ("empty", lambda: good().iloc[:0], {}, "events is empty"),
    ("no user_id", drop("user_id"), {}, "column 'user_id' is missing.*columns="),
    ("no item_id", drop("item_id"), {}, "column 'item_id' is missing"),
    ("no timestamp", drop("timestamp"), {}, "column 'timestamp' is missing"),
    ("mapping names absent column", good, {"columns": {"CustomerID": "user_id"}},
     r"columns mapping names \['CustomerID'\]"),
    ("mapping clash", lambda: good().assign(a=1, b=2), {"columns": {"a": "label", "b": "label"}},
     "sends two columns to"),
    ("mapping onto existing", lambda: good().assign(cust=1), {"columns": {"cust": "user_id"}},
     "renames onto"),
    ("mapping not a dict", good, {"columns": ["user_id"]}, "columns must be a mapping"),
    ("duplicate column names",
     lambda: pd.concat([good(), good()[["item_id"]]], axis=1), {}, "duplicate column names"),
    ("NaN user", set_first("user_id", None), {}, "column 'user_id' has 1 missing"),
    ("NaN item", set_first("item_id", np.nan), {}, "column 'item_id' has 1 missing"),
    ("unhashable item", set_first("item_id", ["a", "b"]), {}, "unhashable"),
    ("unparseable timestamp", set_first("timestamp", "not a date"), {},
     "column 'timestamp' has 1 unparseable values, e.g. 'not a date'"),
    ("missing timestamp", set_first("timestamp", None), {}, "column 'timestamp' has 1 missing"),
    ("numeric timestamp without unit", with_col("timestamp", lambda n: np.arange(n) * 1000), {},
     "timestamp_unit='s'"),
    ("boolean timestamp", with_col("timestamp", lambda n: np.ones(n, bool)), {},
     "column 'timestamp' is boolean"),
    ("label outside 0/1", with_col("label", lambda n: np.arange(n) % 3), {},
     r"column 'label' must be 0 or 1; found values \[2\]"),
    ("label text", with_col("label", lambda n: ["yes"] * n), {}, "column 'label' must be numeric"),
    ("label NaN", with_col("label", lambda n: [1.0] * (n - 1) + [np.nan]), {},
     "column 'label' has 1 missing"),
    ("zero quantity", with_col("quantity", lambda n: [0] + [1] * (n - 1)), {},
     "column 'quantity' has 1 zero or negative"),
    ("negative quantity", with_col("quantity", lambda n: [-3] * n), {},
     "column 'quantity' has 12 zero or negative"),
    ("negative price", with_col("price", lambda n: [-1.0] + [2.0] * (n - 1)), {},
     "column 'price' has 1 negative"),
    ("text price", with_col("price", lambda n: ["cheap"] * n), {}, "column 'price' must be numeric"),
    ("text rating", with_col("rating", lambda n: ["five"] * n), {}, "column 'rating' must be numeric"),
    ("missing scenario", with_col("scenario", lambda n: [None] + ["UK"] * (n - 1)), {},
     "column 'scenario' has 1 missing"),
    ("missing session", with_col("session_id", lambda n: [np.nan] * n), {},
     "column 'session_id' has 12 missing"),
    ("single user", lambda: good(n_users=1), {}, "only 1 user"),
    ("too few users for K", good, {"k_support": 4, "n_query": 1},
     "only 0 users have at least k_support \\+ n_query = 5 events"),
    ("bad k_support", good, {"k_support": 0}, "k_support and n_query must be >= 1"),
    ("bad min_users", good, {"min_users": 0}, "min_users must be >= 1"),
    ("event_map without event", good, {"event_map": {"view": 0}}, "no 'event' column"),
    ("unknown event", with_col("event", lambda n: ["view"] * (n - 1) + ["wishlist"]),
     {"event_map": {"view": 0, "buy": 1}}, r"not in event_map: \['wishlist'\]"),
    ("event_map and label", lambda: good().assign(event="view", label=1),
     {"event_map": {"view": 0}}, "both a 'label' column and event_map"),
    ("negative event weight", lambda: good().assign(event="view"),
     {"event_map": {"view": -1}}, "weights must be >= 0"),
    ("infinite rating", with_col("rating", lambda n: [np.inf] + [1.0] * (n - 1)), {},
     "column 'rating' has 1 infinite values"),
    ("infinite quantity", with_col("quantity", lambda n: [-np.inf] * 2 + [1.0] * (n - 2)), {},
     "column 'quantity' has 2 infinite values"),
    ("quantity hint", with_col("quantity", lambda n: [-1] + [1] * (n - 1)), {},
     "pass drop_nonpositive_quantity=True"),
    ("unknown timestamp unit", with_col("timestamp", lambda n: 1_700_000_000 + np.arange(n)),
     {"timestamp_unit": "seconds"}, "timestamp_unit must be one of"),
    ("seconds read as ms", with_col("timestamp", lambda n: 1_700_000_000 + np.arange(n)),
     {"timestamp_unit": "ms"}, "look like epoch seconds: pass timestamp_unit='s'"),
    ("ms read as seconds", with_col("timestamp", lambda n: 1_700_000_000_000 + np.arange(n)),
     {"timestamp_unit": "s"}, "look like epoch milliseconds: pass timestamp_unit='ms'"),
    ("ms without unit", with_col("timestamp", lambda n: 1_700_000_000_000 + np.arange(n)), {},
     r"pass timestamp_unit='ms' \(they look like epoch milliseconds\)"),
    ("separator in the only column", lambda: pd.DataFrame({"user_id;item_id;timestamp": ["1;A;2024"]}), {},
     "looks semicolon-separated: pass sep=';'"),
]


@pytest.mark.parametrize("name, make, kwargs, message", MALFORMED, ids=[m[0] for m in MALFORMED])
def test_malformed_input_is_rejected_with_a_clear_message(name, make, kwargs, message):
    with pytest.raises(ValueError, match=message):
        validate_events(make(), **kwargs)


def test_at_least_twenty_distinct_malformed_inputs():
    assert len({m[3] for m in MALFORMED}) >= 20


def test_duplicates_are_dropped_with_a_warning_saying_how_many():
    df = pd.concat([good(), good().iloc[:3]], ignore_index=True)
    with pytest.warns(UserWarning, match="dropped 3 duplicate rows"):
        out = validate_events(df)
    assert len(out) == len(good())


def test_duplicates_kept_on_request():
    df = pd.concat([good(), good().iloc[:3]], ignore_index=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = validate_events(df, drop_duplicates=False)
    assert len(out) == len(df)


def test_nonpositive_quantity_dropped_on_request_with_a_count():
    df = good().assign(quantity=[1, -1, 0] + [2] * 9)
    with pytest.warns(UserWarning, match="dropped 2 rows with zero or negative quantity"):
        out = validate_events(df, drop_nonpositive_quantity=True)
    assert len(out) == 10 and (out["quantity"] > 0).all()


def test_epoch_digits_as_text_read_with_a_unit():
    df = good().assign(timestamp=[str(1_700_000_000 + i) for i in range(12)])
    out = validate_events(df, timestamp_unit="s")
    assert out["timestamp"].iloc[0] == pd.Timestamp("2023-11-14 22:13:20")


def test_relative_seconds_warn_but_are_kept():
    df = good().assign(timestamp=np.arange(12) * 60)
    with pytest.warns(UserWarning, match="12 of 12 timestamps fall outside 1980-2100"):
        out = validate_events(df, timestamp_unit="s")
    assert out["timestamp"].iloc[-1] == pd.Timestamp("1970-01-01 00:11")
