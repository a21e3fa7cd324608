"""profile_log on constructed logs whose statistics are known by construction."""

import numpy as np
import pandas as pd
import pytest

from metarec_ref.data import profile_log
from metarec_ref.data.log_profile import LogProfile, new_users_after_cuts

T0 = pd.Timestamp("2024-01-01")


def panel(households: int = 40, baskets: int = 6) -> pd.DataFrame:
    """Every household buys in its first week; each basket: milk plus two items bought once."""
    rows = []
    for h in range(households):
        for b in range(baskets):
            when = T0 + pd.Timedelta(days=h % 7 + 30 * b, hours=h % 5)
            for item in ("milk", f"h{h}b{b}x", f"h{h}b{b}y"):
                rows.append((f"hh{h}", item, when, f"inv{h}-{b}"))
    df = pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp", "session_id"])
    return df.sort_values("timestamp", kind="stable").reset_index(drop=True)


def test_panel_profile_from_construction():
    profile = profile_log(panel())
    assert isinstance(profile, LogProfile)
    assert (profile.events, profile.users) == (40 * 18, 40)
    assert profile.items == 1 + 40 * 6 * 2
    assert profile.first == T0
    assert profile.days == pytest.approx((pd.Timedelta(days=6 + 150, hours=4)) / pd.Timedelta(days=1))
    assert set(profile.events_per_user) == {18.0}
    # All households start within the first week; every cut quantile lies later.
    assert profile.new_users_after_cut["new_users"].tolist() == [0, 0, 0, 0, 0]
    assert profile.baskets == {"baskets": 240, "mean_items_per_basket": 3.0, "mean_baskets_per_user": 6.0,
                               "median_baskets_per_user": 6.0, "share_users_one_basket": 0.0}
    # Per household: 13 (user, item) pairs, milk repeated; 5 of 18 events re-buy milk.
    assert profile.repeat_pair_share == pytest.approx(1 / 13)
    assert profile.repeat_event_share == pytest.approx(5 / 18)
    assert profile.event_counts is None and profile.label_balance is None


def test_repeats_count_positive_events_only():
    log = pd.DataFrame({
        "user_id": ["a", "a", "a", "b", "b"],
        "item_id": ["x", "x", "x", "y", "z"],
        "timestamp": T0 + pd.to_timedelta([0, 1, 2, 0, 1], unit="h"),
        "label": [0, 1, 1, 1, 1],
        "event": ["view", "buy", "buy", "buy", "buy"],
    })
    profile = profile_log(log)
    # Positives: (a, x) twice, (b, y), (b, z): 1 of 3 pairs repeats, 1 of 4 positive events.
    assert profile.repeat_pair_share == pytest.approx(1 / 3)
    assert profile.repeat_event_share == pytest.approx(1 / 4)
    assert profile.label_balance == {"positives": 4, "negatives": 1, "positive_share": 0.8}
    assert profile.event_counts.to_dict() == {"buy": 4, "view": 1}
    summary = profile.summary()
    assert summary["event_buy"] == 4 and summary["positive_share"] == 0.8
    assert profile.baskets is None and "baskets" not in summary


def test_new_users_after_each_cut():
    # User i first appears at hour i (10 users, 10 events): the q-quantile cut is hour 9 q.
    log = pd.DataFrame({"user_id": np.arange(10), "item_id": 0,
                        "timestamp": T0 + pd.to_timedelta(np.arange(10), unit="h")})
    table = new_users_after_cuts(log, (0.5, 0.9))
    assert table["new_users"].tolist() == [5, 1]  # hours >= 4.5: 5..9; >= 8.1: 9
    assert table["share_of_users"].tolist() == [0.5, 0.1]
    summary = profile_log(log, cut_quantiles=(0.5, 0.9)).summary()
    assert summary["new_users_after_q50"] == 5 and summary["new_users_after_q90"] == 1
    assert summary["events_per_user_max"] == 1.0


def test_summary_is_flat_and_glue_safe():
    profile = profile_log(panel(households=5))
    summary = profile.summary()
    assert all(isinstance(v, (int, float, str)) for v in summary.values())
    assert all(key.replace("_", "").isalnum() for key in summary)
    frame = profile.to_frame()
    assert list(frame.index) == list(summary) and frame.index.name == "statistic"


def test_clear_errors():
    with pytest.raises(ValueError, match="missing"):
        profile_log(pd.DataFrame({"user_id": [1]}))
    with pytest.raises(ValueError, match="empty"):
        profile_log(panel().iloc[:0])
    with pytest.raises(ValueError, match=r"\(0, 1\)"):
        profile_log(panel(households=3), cut_quantiles=(0.5, 1.0))
