"""Log statistics on tiny hand-checked logs."""

from __future__ import annotations

import pandas as pd
import pytest

from metarec_ref.data import activity_summary, arrivals, events_per_user, popularity_curve, top_share


@pytest.fixture
def log() -> pd.DataFrame:
    rows = [
        ("a", "x", "2024-01-03"), ("a", "y", "2024-01-04"), ("a", "x", "2024-02-01"),
        ("b", "x", "2024-01-05"),
        ("c", "z", "2024-02-10"), ("c", "x", "2024-02-11"),
    ]
    df = pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp"])
    df["timestamp"] = pd.to_datetime(df["timestamp"])
    return df


def test_events_per_user_and_summary(log):
    assert events_per_user(log).to_dict() == {"a": 3, "c": 2, "b": 1}
    summary = activity_summary(log, thresholds=(1, 2))
    assert summary["users"] == 3 and summary["items"] == 3 and summary["events"] == 6
    assert summary["median_events_per_user"] == 2.0
    assert summary["share_users_le_1"] == pytest.approx(1 / 3)
    assert summary["share_users_le_2"] == pytest.approx(2 / 3)


def test_arrivals_by_month(log):
    table = arrivals(log, "MS")
    jan, feb = table.iloc[0], table.iloc[1]
    assert (jan["events"], jan["new_users"], jan["new_items"]) == (3, 2, 2)
    assert (feb["events"], feb["new_users"], feb["new_items"]) == (3, 1, 1)
    # February: c's two events are by a new user, a's is not.
    assert feb["share_events_by_new_users"] == pytest.approx(2 / 3)


def test_popularity_curve_and_top_share(log):
    curve = popularity_curve(log)
    assert curve["events"].tolist() == [4, 1, 1]
    assert curve["cumulative_event_share"].iloc[-1] == pytest.approx(1.0)
    assert top_share(log, 1 / 3) == pytest.approx(4 / 6)


def test_errors_name_the_problem(log):
    with pytest.raises(ValueError, match="columns \\['timestamp'\\] are missing"):
        events_per_user(log.drop(columns="timestamp"))
    with pytest.raises(ValueError, match="empty"):
        popularity_curve(log.iloc[:0])
    with pytest.raises(ValueError, match="top_fraction"):
        top_share(log, 0)
    with pytest.raises(ValueError, match="freq="):
        arrivals(log, "fortnight")
