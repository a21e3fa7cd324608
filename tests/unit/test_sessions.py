"""Session-aware tasks: basket completion and next session, by hand and as properties."""

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from metarec_ref.data import NegativeSampling
from metarec_ref.data import Encoders
from metarec_ref.data import build_basket_tasks, build_next_session_tasks
from metarec_ref.data.sessions import (
    build_session_tasks,
    ranking_targets_with_repeats,
    session_task_coverage,
)
from metarec_ref.data import ranking_targets, to_task_batch

T0 = pd.Timestamp("2024-01-01")


def log(rows):
    """rows: (user, session, minute, item)."""
    df = pd.DataFrame(rows, columns=["user_id", "session_id", "minute", "item_id"])
    df["timestamp"] = T0 + pd.to_timedelta(df.pop("minute"), unit="min")
    return df.sort_values("timestamp", kind="stable").reset_index(drop=True)


# User 1: invoice A (items a, b, c at minute 0), invoice B (c, d at minute 60), invoice C (e at 120).
# User 2: a single invoice with two items.
EXAMPLE = log([(1, "A", 0, "a"), (1, "A", 0, "b"), (1, "A", 0, "c"),
               (1, "B", 60, "c"), (1, "B", 60, "d"), (1, "C", 120, "e"),
               (2, "D", 5, "a"), (2, "D", 5, "b")])


def parts(tasks, task=0):
    ev = tasks.events[(tasks.events["task"] == task) & ~tasks.events["is_negative"]]
    return list(ev.loc[~ev["is_query"], "item_id"]), list(ev.loc[ev["is_query"], "item_id"])


def test_basket_completion_by_hand():
    tasks = build_basket_tasks(EXAMPLE, k_support=2, n_query=5)
    assert tasks.num_tasks == 1  # user 2's basket has nothing after 2 items
    assert parts(tasks) == (["a", "b"], ["c"])
    assert tasks.keys.loc[0, "n_support"] == 2 and tasks.keys.loc[0, "n_query"] == 1


def test_next_session_by_hand():
    tasks = build_next_session_tasks(EXAMPLE, k_support=2, n_query=5)
    assert parts(tasks) == (["a", "b", "c"], ["c", "d"])  # the whole first invoice; the next one
    dropped = build_next_session_tasks(EXAMPLE, k_support=2, n_query=5, repeats="drop")
    assert parts(dropped) == (["a", "b", "c"], ["d"])
    later = build_next_session_tasks(EXAMPLE, k_support=4, n_query=5)
    assert parts(later) == (["a", "b", "c", "c", "d"], ["e"])
    anywhere = build_next_session_tasks(EXAMPLE, k_support=2, n_query=5, query_sessions=None)
    assert parts(anywhere)[1] == ["c", "d", "e"]


def test_tasks_work_with_to_task_batch_and_ranking_targets():
    enc = Encoders.fit(EXAMPLE)
    tasks = build_session_tasks(EXAMPLE, "next_session", 2, 5, negatives=NegativeSampling(1), seed=0)
    batch = to_task_batch(tasks, enc)
    assert batch.num_tasks == 1 and int(batch.support_mask.sum()) == 6  # 3 positives + 3 negatives
    assert float(batch.support_y.sum()) == 3
    targets = ranking_targets(tasks, enc)
    c, d = enc.encode_items(["c", "d"])
    assert not targets.positives[0, c] and targets.positives[0, d]  # c was already in the support
    repeats = ranking_targets_with_repeats(tasks, enc)
    assert repeats.positives[0, c] and not repeats.exclude[0, c] and repeats.exclude[0, enc.encode_items(["a"])[0]]


def test_coverage_counts_users_per_definition():
    table = session_task_coverage(EXAMPLE, ks=[1, 2], n_query=5).set_index(["definition", "K"])
    assert table.loc[("basket", 2), "users_kept"] == 1
    assert table.loc[("basket", 1), "users_kept"] == 2
    assert table.loc[("next_session", 1), "users_kept"] == 1  # user 2 has one session only
    assert (table["users"] == 2).all()


def test_errors_name_the_problem():
    with pytest.raises(ValueError, match="session_id"):
        build_basket_tasks(EXAMPLE.drop(columns="session_id"), 2, 5)
    with pytest.raises(ValueError, match="repeats"):
        build_basket_tasks(EXAMPLE, 2, 5, repeats="maybe")
    with pytest.raises(ValueError, match="definition"):
        build_session_tasks(EXAMPLE, "random", 2, 5)


@st.composite
def session_logs(draw):
    rows = []
    for user in range(draw(st.integers(1, 4))):
        for s in range(draw(st.integers(1, 4))):
            start = draw(st.integers(0, 50))
            for _ in range(draw(st.integers(1, 4))):
                rows.append((user, f"{user}-{s}", start + draw(st.integers(0, 3)), draw(st.integers(0, 5))))
    return log(rows)


def _check_common(events, tasks, k, n_query):
    real = tasks.events[~tasks.events["is_negative"]]
    for t, ev in real.groupby("task"):
        support, query = ev[~ev["is_query"]], ev[ev["is_query"]]
        assert len(support) >= k and 1 <= len(query) <= n_query
        assert query["timestamp"].min() >= support["timestamp"].max()  # time order
        assert ev["user_id"].nunique() == 1
    return real


@settings(max_examples=60, deadline=None)
@given(session_logs(), st.integers(1, 4), st.integers(1, 3), st.sampled_from(["keep", "drop"]))
def test_next_session_never_queries_a_support_session(events, k, n_query, repeats):
    tasks = build_next_session_tasks(events, k, n_query, repeats=repeats)
    real = _check_common(events, tasks, k, n_query)
    for t, ev in real.groupby("task"):
        support, query = ev[~ev["is_query"]], ev[ev["is_query"]]
        assert not set(query["session_id"]) & set(support["session_id"])
        assert query["timestamp"].min() > support["timestamp"].max()
        # Support sessions are whole: every event of the user in them is in the support.
        user_events = events[events["user_id"] == ev["user_id"].iloc[0]]
        assert len(user_events[user_events["session_id"].isin(support["session_id"])]) == len(support)
        if repeats == "drop":
            assert not set(query["item_id"]) & set(support["item_id"])


@settings(max_examples=60, deadline=None)
@given(session_logs(), st.integers(1, 4), st.integers(1, 3), st.sampled_from(["keep", "drop"]))
def test_basket_query_comes_from_the_last_support_basket(events, k, n_query, repeats):
    tasks = build_basket_tasks(events, k, n_query, repeats=repeats)
    real = _check_common(events, tasks, k, n_query)
    for t, ev in real.groupby("task"):
        support, query = ev[~ev["is_query"]], ev[ev["is_query"]]
        assert len(support) == k
        assert set(query["session_id"]) == {support["session_id"].iloc[-1]}
        if repeats == "drop":
            assert not set(query["item_id"]) & set(support["item_id"])
