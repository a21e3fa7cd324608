"""Protocol choice and evidence on constructed logs whose task counts are known by construction."""

from functools import lru_cache

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from metarec_ref.data import PROTOCOLS, ProtocolSplit, choose_protocol, protocol_parts, split_users
from metarec_ref.data.evidence import EVIDENCE_FILTERS, EvidenceNeeds, evidence_report

T0 = pd.Timestamp("2024-01-01")


def frame(rows, columns=("user_id", "item_id", "timestamp")) -> pd.DataFrame:
    df = pd.DataFrame(rows, columns=list(columns))
    return df.sort_values("timestamp", kind="stable").reset_index(drop=True)


@lru_cache(maxsize=None)
def panel() -> pd.DataFrame:
    """400 households, all present in the first week; 6 monthly baskets of 3 items at one time."""
    rows = [(f"hh{h}", item, T0 + pd.Timedelta(days=h % 7 + 30 * b, minutes=h), f"inv{h}-{b}")
            for h in range(400) for b in range(6) for item in ("milk", f"h{h}b{b}x", f"h{h}b{b}y")]
    return frame(rows, ("user_id", "item_id", "timestamp", "session_id"))


@lru_cache(maxsize=None)
def clickstream() -> pd.DataFrame:
    """400 old users (20 events, days 0-50) and 500 new users (12 events within 12 minutes).

    New user j arrives at day 60 + j * 1.92 h, so events never interleave. Sorted, new user j holds
    positions 8000 + 12 j .. 8000 + 12 j + 11 of 14,000; the 0.8 quantile is position 11,199, the
    8th event of new user 266. Users 267..499 (233) are new after the cut: the earlier
    int(233 / 2) = 116 validation users, the later 117 test users, all with 12 events.
    """
    rows = [(f"old{u}", f"i{(u + e) % 50}", T0 + pd.Timedelta(days=50 * e / 20, minutes=u))
            for u in range(400) for e in range(20)]
    rows += [(f"new{j}", f"i{(j + e) % 50}", T0 + pd.Timedelta(days=60) + pd.Timedelta(hours=1.92 * j)
              + pd.Timedelta(minutes=e)) for j in range(500) for e in range(12)]
    return frame(rows)


def reviews() -> pd.DataFrame:
    """300 reviewers all starting on day 0: 280 with 3 reviews, 8 with 7, 12 with 10 (distinct times)."""
    sizes = [3] * 280 + [7] * 8 + [10] * 12
    rows = [(f"r{u}", f"b{(u * 7 + e) % 90}", T0 + pd.Timedelta(days=e * 10, minutes=u))
            for u, n in enumerate(sizes) for e in range(n)]
    return frame(rows)


# --------------------------------------------------------------------------------------- auto


def test_panel_picks_held_out_users_with_the_reason():
    choice = choose_protocol(panel(), k_support=5, n_query=5, needs=EvidenceNeeds(min_val_tasks=30, min_test_tasks=30))
    assert choice.name == "held_out_users" and choice.enough
    # 400 users * 10% = 40 validation and 40 test users; each has 18 events (6 baskets), so support =
    # basket 1 and 2 items of basket 2, query = the 5 next strictly later events: all full.
    assert choice.evidence.tasks == {"train": 320, "valid": 40, "test": 40}
    assert choice.evidence.short_query == {"train": 0, "valid": 0, "test": 0}
    assert "only 0 user(s) first appear after the cut" in choice.reason
    assert "320 training, 40 validation and 40 test tasks" in choice.reason
    table = choice.candidates.set_index("protocol")
    assert table.loc["temporal_new_users", "test_tasks"] == 0
    assert not table.loc["temporal_new_users", "eligible"]
    assert table.loc["held_out_users", "eligible"]
    tasks = choice.build_tasks()
    assert {part: t.num_tasks for part, t in tasks.items()} == choice.evidence.tasks


def test_clickstream_picks_temporal_new_users():
    choice = choose_protocol(clickstream(), k_support=5, n_query=5)
    assert choice.name == "temporal_new_users" and choice.enough
    # Training: 400 old users, new users 0..265 whole, user 266 with 7 events (>= K + 1).
    assert choice.evidence.tasks == {"train": 667, "valid": 116, "test": 117}
    assert choice.evidence.counts.loc["in_part", "test"] == 117
    assert "233 users first appear after the cut" in choice.reason
    assert "116 validation and 117 test tasks" in choice.reason


def test_short_log_stops_and_names_the_filter():
    choice = choose_protocol(reviews(), k_support=5, n_query=5, needs=EvidenceNeeds(min_val_tasks=10, min_test_tasks=10))
    evidence = choice.evidence
    assert choice.name == "held_out_users" and not choice.enough  # nobody arrives after the cut
    assert evidence.bottleneck == "k_plus_1_events"
    counts = evidence.counts
    # Counted, not dropped: 300 users in the parts, 20 with 6+ events, 8 of them with a short query.
    assert counts.loc["in_part"].sum() == 300 and (counts.loc["all"] == 300).all()
    assert counts.loc["k_plus_1_events"].sum() == 20 and counts.loc["has_query"].sum() == 20
    assert counts.loc["full_query"].sum() == 12
    assert "Not enough evidence" in choice.reason
    assert "'at least K_SUPPORT + 1 = 6 events'" in choice.reason and "lower K_SUPPORT" in choice.reason
    with pytest.raises(ValueError, match="lower K_SUPPORT"):
        choice.require_enough()


def test_too_few_new_users_points_to_held_out_users():
    choice = choose_protocol(clickstream(), k_support=5, n_query=5, protocol="temporal_new_users",
                             needs=EvidenceNeeds(min_test_tasks=200))
    assert not choice.enough
    assert (choice.evidence.short_part, choice.evidence.bottleneck) == ("test", "in_part")
    assert "left 117 of 900 users" in choice.reason and "PROTOCOL='held_out_users'" in choice.reason


# ----------------------------------------------------------------------------------- forced


def test_forced_session_protocols_cut_known_queries():
    basket = choose_protocol(panel(), k_support=5, n_query=5, protocol="basket_completion")
    # The 5th event is the 2nd item of basket 2: one item of that basket is left.
    assert basket.name == "basket_completion"
    assert set(basket.build_tasks()["test"].keys["n_query"]) == {1}
    assert basket.evidence.short_query["test"] == 40
    nxt = choose_protocol(panel(), k_support=5, n_query=5, protocol="next_session")
    tasks = nxt.build_tasks()["test"]
    # Whole baskets 1 and 2 (6 events) support; basket 3 (3 events) is the query.
    assert set(tasks.keys["n_support"]) == {6} and set(tasks.keys["n_query"]) == {3}


def test_forced_new_items():
    choice = choose_protocol(panel(), k_support=2, n_query=2, protocol="new_items",
                             needs=EvidenceNeeds(min_val_tasks=0, min_test_tasks=0))
    parts = choice.parts
    assert choice.name == "new_items" and parts.entity == "item_id"
    first = panel().groupby("item_id")["timestamp"].min()
    assert (first[parts.test["item_id"].unique()] >= parts.cut_time).all()
    assert (parts.train["timestamp"] < parts.cut_time).all()
    assert not set(parts.valid["item_id"]) & set(parts.test["item_id"])


def test_forced_protocol_errors_name_the_fix():
    with pytest.raises(ValueError, match="first appear after the cut"):
        choose_protocol(panel(), k_support=5, n_query=5, protocol="temporal_new_users")
    with pytest.raises(ValueError, match="session_id"):
        choose_protocol(reviews(), k_support=2, n_query=1, protocol="next_session")
    with pytest.raises(ValueError, match="held_out_users") as err:
        choose_protocol(reviews(), k_support=2, n_query=1, protocol="held_out")
    assert all(name in str(err.value) for name in ("auto", *PROTOCOLS))
    with pytest.raises(ValueError, match="val_fraction"):
        protocol_parts(reviews(), "held_out_users", ProtocolSplit(val_fraction=0.5, test_fraction=0.5))


# ------------------------------------------------------------------------- split properties


def test_same_seed_same_split_and_other_seed_other_split():
    a = split_users(reviews(), (0.1, 0.1), seed=3)
    b = split_users(reviews(), (0.1, 0.1), seed=3)
    c = split_users(reviews(), (0.1, 0.1), seed=4)
    assert all(x.equals(y) for x, y in zip(a, b))
    assert not set(a[2]["user_id"]) == set(c[2]["user_id"])
    first = choose_protocol(panel(), k_support=5, n_query=5, needs=EvidenceNeeds(min_val_tasks=30, min_test_tasks=30), split=ProtocolSplit(seed=1))
    again = choose_protocol(panel(), k_support=5, n_query=5, needs=EvidenceNeeds(min_val_tasks=30, min_test_tasks=30), split=ProtocolSplit(seed=1))
    pd.testing.assert_frame_equal(first.parts.test, again.parts.test)
    assert first.reason == again.reason


def test_held_out_users_are_disjoint_and_cover_the_log():
    train, valid, test = (set(part["user_id"]) for part in split_users(reviews(), (0.2, 0.1), seed=0))
    assert (len(train), len(valid), len(test)) == (210, 60, 30)
    assert not (set(train) & set(valid) or set(train) & set(test) or set(valid) & set(test))
    assert set(train) | set(valid) | set(test) == set(reviews()["user_id"])
    parts = protocol_parts(reviews(), "held_out_users", ProtocolSplit(val_fraction=0.2, test_fraction=0.1))
    assert set(parts.test["user_id"]) == set(test)
    assert len(parts.train) + len(parts.valid) + len(parts.test) == len(reviews())


logs = st.lists(
    st.tuples(st.integers(0, 7), st.integers(0, 5), st.integers(0, 15)), min_size=3, max_size=80
)


@settings(max_examples=60, deadline=None)
@given(rows=logs, k=st.integers(1, 4), n=st.integers(1, 4), seed=st.integers(0, 3))
def test_query_never_earlier_than_support(rows, k, n, seed):
    events = frame([(f"u{u}", f"i{i}", T0 + pd.Timedelta(minutes=m)) for u, i, m in rows])
    if events["user_id"].nunique() < 3:
        return
    parts = protocol_parts(events, "held_out_users", ProtocolSplit(val_fraction=0.3, test_fraction=0.3, seed=seed))
    evidence = evidence_report(parts, k, n, EvidenceNeeds(min_train_tasks=0, min_val_tasks=0, min_test_tasks=0))
    for part, tasks in parts.build_all(k, n).items():
        own = getattr(parts, part)
        expected = 0
        for user, history in own.groupby("user_id"):
            times = np.sort(history["timestamp"].to_numpy())
            expected += len(times) >= k and bool((times > times[min(k, len(times)) - 1]).any())
        assert tasks.num_tasks == expected == evidence.counts.loc["has_query", part]
        for _, task in tasks.events.groupby("task"):
            support, query = task[~task["is_query"]], task[task["is_query"]]
            assert len(support) == k and 1 <= len(query) <= n
            assert support["timestamp"].max() < query["timestamp"].min()
            history = own[own["user_id"] == task["user_id"].iloc[0]]
            # The support is the user's earliest K events.
            assert support["timestamp"].max() <= np.sort(history["timestamp"].to_numpy())[k - 1]
    assert list(evidence.counts.index) == list(EVIDENCE_FILTERS)
    assert (evidence.counts.diff().iloc[1:] <= 0).all().all()  # each filter nests in the one above
