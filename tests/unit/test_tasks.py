"""Task building, negatives, the temporal cold-start protocol and tensors: properties and examples."""

import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from metarec_ref.batch import UNKNOWN
from metarec_ref.data import NegativeSampling
from metarec_ref.data import Encoders, validate_events
from metarec_ref.data import temporal_cold_start_split
from metarec_ref.data.splits import CELLS
from metarec_ref.data import (
    build_item_tasks,
    build_scenario_tasks,
    build_tasks,
    build_user_tasks,
    build_window_tasks,
    ranking_targets,
    to_task_batch,
)
from metarec_ref.data.negatives import sample_negatives
from tests.unit.helpers import T0, make_log, small_log

FAST = settings(max_examples=40, deadline=None)

random_logs = st.lists(
    st.tuples(st.integers(0, 7), st.integers(0, 11), st.integers(0, 60), st.integers(0, 2)),
    min_size=5,
    max_size=120,
).map(make_log)


@FAST
@given(random_logs, st.integers(1, 4), st.integers(1, 4), st.sampled_from(["user", "item"]))
def test_query_is_strictly_later_than_support(log, k, q, kind):
    build = build_user_tasks if kind == "user" else build_item_tasks
    tasks = build(log, k, q, negatives=NegativeSampling(1) if log["item_id"].nunique() > 6 else None)
    if tasks.num_tasks == 0:
        return
    ev = tasks.events
    last_support = ev[~ev["is_query"]].groupby("task")["timestamp"].max()
    first_query = ev[ev["is_query"]].groupby("task")["timestamp"].min()
    assert (first_query > last_support.loc[first_query.index]).all()
    real = ev[~ev["is_negative"]]
    assert (real[~real["is_query"]].groupby("task").size() == k).all()
    assert (real[real["is_query"]].groupby("task").size() <= q).all()


@FAST
@given(random_logs, st.sampled_from(["past", "all"]), st.sampled_from(["uniform", "popularity"]))
def test_negatives_never_hit_the_users_positives(log, exclude, strategy):
    pool = list(range(30))  # larger than any user's history, so uniform negatives always exist
    try:
        neg = sample_negatives(log, NegativeSampling(2, strategy, exclude, history=log), pool=pool, seed=3)
    except ValueError as err:
        # Popularity draws only items of the history, in proportion to their counts: a user who
        # saw (nearly) all of them may have no negative within the sampler's 100 redraws, and
        # then it must say so.
        assert strategy == "popularity" and "could not find negatives" in str(err)
        counts = log["item_id"].value_counts()
        unseen_share = log.groupby("user_id")["item_id"].unique().map(
            lambda items: counts.drop(items).sum() / counts.sum())
        assert unseen_share.min() < 0.1
        return
    assert len(neg) == 2 * len(log) and (neg["y"] == 0).all()
    first = log.groupby(["user_id", "item_id"])["timestamp"].min()
    for row in neg.itertuples():
        seen = first.get((row.user_id, row.item_id))
        if exclude == "all":
            assert seen is None
        else:
            assert seen is None or seen > row.timestamp


@FAST
@given(random_logs, st.floats(0.3, 0.9))
def test_no_test_user_or_test_period_event_reaches_training_or_tuning(log, quantile):
    try:
        split = temporal_cold_start_split(log, quantile)
    except ValueError as err:  # too few new users in a tiny log
        assert "user" in str(err)
        return
    test_users = set(split.test_users)
    for part in (split.train, split.valid):
        assert not test_users & set(part["user_id"])
        assert (part["timestamp"] < split.test_start).all()
    assert (split.train["timestamp"] < split.cut_time).all()
    assert set(split.train["user_id"]) <= set(split.existing_users)
    assert not set(split.valid_users) & test_users
    assert split.test_start >= split.cut_time
    assert sum(len(split.cells[c]) for c in CELLS) == int((log["timestamp"] >= split.cut_time).sum())


@FAST
@given(random_logs, st.integers(0, 5), st.sampled_from(["temporal", "random"]))
def test_same_seed_same_tasks(log, seed, split):
    negatives = NegativeSampling(1) if log["item_id"].nunique() > 6 else None
    a = build_user_tasks(log, 2, 3, negatives=negatives, split=split, seed=seed)
    b = build_user_tasks(log, 2, 3, negatives=negatives, split=split, seed=seed)
    pd.testing.assert_frame_equal(a.events, b.events)
    pd.testing.assert_frame_equal(a.keys, b.keys)


def test_support_is_first_k_and_query_next_q():
    tasks = build_user_tasks(small_log(), 2, 3)
    user0 = tasks.events[tasks.events["user_id"] == 0]
    assert list(user0.loc[~user0["is_query"], "item_id"]) == [0, 1]
    assert list(user0.loc[user0["is_query"], "item_id"]) == [2, 3, 4]
    assert list(tasks.keys["user_id"]) == [0, 1, 2]
    assert list(tasks.keys["n_query"]) == [3, 1, 1]


def test_strict_query_drops_events_tied_with_the_last_support_event():
    tasks = build_user_tasks(small_log(), 2, 3)
    user2 = tasks.events[tasks.events["user_id"] == 2]
    assert list(user2.loc[user2["is_query"], "item_id"]) == [9]  # 7 and 8 tie with support item 6


def test_order_mode_allows_ties_for_basket_completion():
    tasks = build_user_tasks(small_log(), 2, 3, query_after="order")
    user2 = tasks.events[tasks.events["user_id"] == 2]
    assert list(user2.loc[user2["is_query"], "item_id"]) == [7, 8, 9]


def test_users_without_enough_events_are_dropped():
    tasks = build_user_tasks(small_log(), 3, 2, min_query=2)
    assert list(tasks.keys["user_id"]) == [0]


def test_random_split_is_a_permutation_of_the_first_k_plus_q():
    tasks = build_user_tasks(small_log(), 2, 4, split="random", seed=1)
    user0 = tasks.events[tasks.events["user_id"] == 0]
    assert len(user0) == 6 and set(user0["item_id"]) == set(range(6))


def test_negatives_follow_their_positive_with_the_same_context():
    log = small_log()
    tasks = build_user_tasks(log, 2, 3, negatives=NegativeSampling(2), seed=0)
    ev = tasks.events
    pos = np.flatnonzero(~ev["is_negative"].to_numpy())
    for p in pos[:5]:
        after = ev.iloc[p + 1:p + 3]
        assert after["is_negative"].all() and (after["y"] == 0).all()
        assert (after["timestamp"] == ev.iloc[p]["timestamp"]).all()
        assert (after["is_query"] == ev.iloc[p]["is_query"]).all()
        assert (after["user_id"] == ev.iloc[p]["user_id"]).all()


def test_item_tasks_resample_users_and_keep_the_item():
    tasks = build_item_tasks(small_log(), 1, 1, negatives=NegativeSampling(1))
    neg = tasks.events[tasks.events["is_negative"]]
    pos = tasks.events[~tasks.events["is_negative"]]
    assert len(neg) == len(pos)
    by_task = tasks.events.groupby("task")["item_id"].nunique()
    assert (by_task == 1).all()


def test_popularity_negatives_prefer_popular_items():
    rows = [(u, 0, u, 0) for u in range(1, 60)] + [(u, 1 + u % 20, u, 0) for u in range(1, 60)]
    rows += [(0, 50, 100, 0)]
    log = make_log(rows)
    target = log[log["user_id"] == 0]
    neg = sample_negatives(pd.concat([target] * 400), NegativeSampling(1, "popularity", history=log), seed=0)
    share_of_item0 = (neg["item_id"] == 0).mean()
    assert 0.4 < share_of_item0 < 0.6  # item 0 holds 59 of 119 history events


def test_negative_sampling_fails_clearly_when_everything_was_seen():
    log = make_log([(0, 0, 0, 0), (0, 1, 1, 0), (1, 0, 2, 0)])
    with pytest.raises(ValueError, match="could not find negatives"):
        sample_negatives(log[log["user_id"] == 0], NegativeSampling(1, exclude="all", history=log))


def test_scenario_and_window_tasks():
    log = small_log()
    per_scenario = build_scenario_tasks(log, 1, 2, per_user=False)
    assert list(per_scenario.keys["scenario"]) == [0, 1]
    windows = build_window_tasks(log, 1, 1, freq="5min", per_user=False)
    assert windows.keys["window"].is_monotonic_increasing and windows.num_tasks >= 2


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"k_support": 0}, "k_support and n_query must be >= 1"),
        ({"split": "shuffled"}, "split must be 'temporal' or 'random'"),
        ({"query_after": "later"}, "query_after must be 'strict' or 'order'"),
        ({"target": "rating"}, "column 'rating' is missing"),
        ({"min_query": 9}, "min_query must be in 1..n_query"),
    ],
)
def test_bad_task_arguments(kwargs, message):
    args = {"k_support": 2, "n_query": 3, **kwargs}
    with pytest.raises(ValueError, match=message):
        build_tasks(small_log(), "user_id", **args)


def test_to_task_batch_pads_and_masks():
    log = small_log()
    enc = Encoders.fit(log)
    tasks = build_user_tasks(log, 2, 3, negatives=NegativeSampling(1))
    batch = to_task_batch(tasks, enc, "cpu")
    assert batch.num_tasks == 3
    assert batch.support_x["item"].shape == (3, 4) and batch.query_x["item"].shape == (3, 6)
    assert batch.support_x["dense"].shape == (3, 4, 1)
    assert batch.query_mask.sum(1).tolist() == [6, 2, 2]
    assert (batch.query_x["item"][~batch.query_mask] == UNKNOWN).all()
    assert (batch.query_y[~batch.query_mask] == 0).all()
    assert batch.support_y[0].tolist() == [1.0, 0.0, 1.0, 0.0]
    first_items = enc.decode_items(batch.support_x["item"][0, ::2].numpy())
    assert list(first_items) == [0, 1]
    assert batch.support_y.dtype == torch.float32 and batch.support_mask.dtype == torch.bool
    assert batch.query_x["scenario"][1, 0] == enc.encode_scenarios([1])[0]


def test_ranking_targets_mark_query_positives_and_exclude_support():
    log = small_log()
    enc = Encoders.fit(log)
    tasks = build_user_tasks(log, 2, 3, negatives=NegativeSampling(1))
    targets = ranking_targets(tasks, enc)
    codes = enc.encode_items
    assert targets.positives[0].nonzero().flatten().tolist() == list(codes([2, 3, 4]))
    assert targets.exclude[0].nonzero().flatten().tolist() == [UNKNOWN, *codes([0, 1])]
    assert targets.scenario.tolist() == list(enc.encode_scenarios([0, 1, 0]))
    catalog = enc.catalog()
    x = catalog.features(targets.scenario)
    assert x["item"].shape == targets.positives.shape
    only_old = catalog.available(T0 + pd.Timedelta(minutes=3))
    restricted = ranking_targets(tasks, enc, candidates=only_old)
    assert restricted.positives[0].nonzero().flatten().tolist() == list(codes([2]))


def test_cold_start_split_on_synthetic_log():
    from metarec_ref.data import generate

    log = validate_events(generate(n_users=300, n_items=200, n_interactions=12_000).events)
    split = temporal_cold_start_split(log, 0.7)
    table = split.summary()
    assert set(CELLS) <= set(table.index)
    assert table.loc["train", "events"] == int((log["timestamp"] < split.cut_time).sum())
    first = log.groupby("user_id")["timestamp"].min()
    assert (first[split.valid_users] < first[split.test_users].min()).all()
    assert abs(len(split.valid_users) - len(split.test_users)) <= len(split.new_users) // 2 + 1
    with pytest.raises(ValueError, match="cut_quantile must be in"):
        temporal_cold_start_split(log, 1.5)
