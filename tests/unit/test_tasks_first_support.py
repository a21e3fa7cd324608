"""Shrinking a task's support set keeps the tasks, the query and the negatives: support sizes compared on the same tasks."""

import numpy as np
import pandas as pd
import pytest

from metarec_ref.data import NegativeSampling
from metarec_ref.data import Encoders, build_user_tasks, generate, to_task_batch


@pytest.fixture(scope="module")
def log():
    return generate(n_users=80, n_items=60, n_interactions=3000, seed=1)


def test_first_support_keeps_query_and_negatives(log):
    tasks = build_user_tasks(log.events, 8, 4, negatives=NegativeSampling(1, "popularity"), seed=3)
    small = tasks.first_support(3)
    assert small.num_tasks == tasks.num_tasks
    pd.testing.assert_frame_equal(small.query.reset_index(drop=True), tasks.query.reset_index(drop=True))
    support = small.support
    assert (support[~support["is_negative"]].groupby("task").size() == 3).all()
    assert (support[support["is_negative"]].groupby("task").size() == 3).all()  # one negative each
    assert (small.keys["n_support"] == 3).all()
    # The kept support events are the first three of the full support, in time order.
    full = tasks.support[~tasks.support["is_negative"]].groupby("task").head(3)
    kept = support[~support["is_negative"]]
    assert full["item_id"].tolist() == kept["item_id"].tolist()
    assert (small.keys["cut_time"] <= tasks.keys["cut_time"]).all()
    # Each negative still follows its own positive (same user and time).
    rows = support.reset_index(drop=True)
    negative = rows.index[rows["is_negative"]]
    assert (rows.loc[negative, "timestamp"].to_numpy() == rows.loc[negative - 1, "timestamp"].to_numpy()).all()


def test_first_support_batches_and_bounds(log):
    tasks = build_user_tasks(log.events, 6, 3, negatives=NegativeSampling(1), seed=0)
    encoders = Encoders.fit(log.events)
    batch = to_task_batch(tasks.first_support(2), encoders)
    assert int(batch.support_mask.sum(1).max()) == 4
    assert tasks.first_support(6).events.equals(tasks.events)
    with pytest.raises(ValueError, match="k must be >= 1"):
        tasks.first_support(0)
    assert np.array_equal(tasks.first_support(2).keys["user_id"], tasks.keys["user_id"])
