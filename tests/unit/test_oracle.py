"""The synthetic oracle: true scores per task, protocol shape, and a ceiling no model beats."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from metarec_ref.data import NegativeSampling
from metarec_ref.data import Encoders, validate_events
from metarec_ref.eval import per_task_metrics
from metarec_ref.eval import SyntheticOracle
from metarec_ref.eval.oracle import UNKNOWN_SCORE
from metarec_ref.data import generate
from metarec_ref.data import build_item_tasks, build_user_tasks, to_task_batch


@pytest.fixture(scope="module")
def setup():
    log = generate(n_users=200, n_items=80, n_interactions=6000, seed=3)
    events = validate_events(log.events)
    encoders = Encoders.fit(events)
    tasks = build_user_tasks(events, 5, 5, negatives=NegativeSampling(1, "popularity"), seed=1)
    return log, events, encoders, tasks, to_task_batch(tasks, encoders)


def test_scores_equal_true_scores_of_the_world(setup):
    log, _, encoders, tasks, batch = setup
    oracle = SyntheticOracle.for_tasks(log, tasks, encoders, at="cut")
    scores = oracle.score(oracle.adapt(batch), batch.query_x)
    keys = tasks.keys.sort_values("task")
    t = 7
    real = batch.query_mask[t].numpy()
    raw_items = encoders.decode_items(batch.query_x["item"][t].numpy()[real]).astype(np.int64)
    raw_scen = np.asarray(encoders.scenarios)[batch.query_x["scenario"][t].numpy()[real] - 1]
    user = keys["user_id"].iloc[t]
    expected = log.true_scores(np.full(len(raw_items), user), raw_items,
                               np.full(len(raw_items), keys["cut_time"].iloc[t]), raw_scen)
    np.testing.assert_allclose(scores[t].numpy()[real], expected, rtol=1e-5, atol=1e-5)


def test_affinity_only_drops_the_popularity_term(setup):
    log, _, encoders, tasks, batch = setup
    with_pop = SyntheticOracle.for_tasks(log, tasks, encoders)
    without = SyntheticOracle.for_tasks(log, tasks, encoders, include_popularity=False)
    ids = with_pop.adapt(batch)
    diff = with_pop.score(ids, batch.query_x) - without.score(ids, batch.query_x)
    codes = batch.query_x["item"]
    real = batch.query_mask
    raw = encoders.decode_items(codes[real].numpy()).astype(np.int64)
    np.testing.assert_allclose(diff[real].numpy(), log.world.item_log_pop[raw], rtol=1e-4, atol=1e-4)


def test_padding_scores_lowest_and_chunks_follow_task_ids(setup):
    log, _, encoders, tasks, batch = setup
    oracle = SyntheticOracle.for_tasks(log, tasks, encoders)
    full = oracle.score(oracle.adapt(batch), batch.query_x)
    assert (full[~batch.query_mask] == UNKNOWN_SCORE).all()
    part = batch.select(slice(10, 20))
    np.testing.assert_array_equal(oracle.score(oracle.adapt(part), part.query_x).numpy(), full[10:20].numpy())


def test_oracle_beats_chance_and_is_deterministic(setup):
    log, _, encoders, tasks, batch = setup
    oracle = SyntheticOracle.for_tasks(log, tasks, encoders, include_popularity=False)
    auc = per_task_metrics(oracle, batch)["auc"]
    assert float(auc.nanmean()) > 0.7
    assert "log_loss" not in per_task_metrics(oracle, batch)  # a ranking score, not a probability
    again = SyntheticOracle.for_tasks(log, tasks, encoders, include_popularity=False)
    torch.testing.assert_close(per_task_metrics(again, batch)["auc"], auc, equal_nan=True)


def test_query_time_defaults_to_mean_query_time(setup):
    log, _, encoders, tasks, _ = setup
    oracle = SyntheticOracle.for_tasks(log, tasks, encoders)
    real = tasks.events[tasks.events["is_query"] & ~tasks.events["is_negative"]]
    first = real[real["task"] == 0]["timestamp"]
    expected = pd.Timestamp(int(first.astype("int64").mean()))
    assert abs(pd.Timestamp(oracle.times[0]) - expected) < pd.Timedelta(seconds=1)
    assert (oracle.times >= tasks.keys.sort_values("task")["cut_time"].to_numpy()).all()


def test_clear_errors(setup):
    log, events, encoders, tasks, batch = setup
    with pytest.raises(ValueError, match="user_id"):
        SyntheticOracle.for_tasks(log, build_item_tasks(events, 3, 2), encoders)
    with pytest.raises(ValueError, match="at must be"):
        SyntheticOracle.for_tasks(log, tasks, encoders, at="later")
    with pytest.raises(ValueError, match="SyntheticWorld"):
        SyntheticOracle(object(), encoders, [0], ["2024-01-01"])
    with pytest.raises(ValueError, match="one value per task"):
        SyntheticOracle(log, encoders, [0, 1], ["2024-01-01"])
    oracle = SyntheticOracle(log, encoders, [0, 1], ["2024-01-01", "2024-01-02"])
    with pytest.raises(ValueError, match="task_ids"):
        oracle.adapt(batch)
    no_ids = batch.select(slice(0, 2))
    no_ids.task_ids = None
    with pytest.raises(ValueError, match="task_ids"):
        oracle.adapt(no_ids)
    strings = validate_events(log.events.assign(item_id=lambda d: "i" + d["item_id"].astype(str)))
    with pytest.raises(ValueError, match="non-integer"):
        SyntheticOracle(log, Encoders.fit(strings), [0], ["2024-01-01"])


def test_item_tasks_are_scored_with_each_events_own_user(setup):
    log, events, encoders, _, _ = setup
    with_users = encoders.with_users(events)
    tasks = build_item_tasks(events, 3, 4, negatives=NegativeSampling(1, "popularity"), seed=2)
    batch = to_task_batch(tasks, with_users)
    oracle = SyntheticOracle.for_tasks(log, tasks, with_users, include_popularity=False)
    scores = oracle.score(oracle.adapt(batch), batch.query_x).numpy()
    t, slot = 0, 0
    code = {k: int(batch.query_x[k][t, slot]) for k in ("user", "item", "scenario")}
    user = int(with_users.users[code["user"] - 1])
    item = int(with_users.items[code["item"] - 1])
    scenario = int(with_users.scenarios[code["scenario"] - 1])
    tau = log.world.tau(oracle.times[[t]])
    expected = log.world.affinity_at(np.array([user]), np.array([item]), tau, np.array([scenario]))
    np.testing.assert_allclose(scores[t, slot], expected[0], rtol=1e-5)
    assert (scores[~batch.query_mask.numpy()] == UNKNOWN_SCORE).all()
    # The true preference separates buyers from popularity-drawn non-buyers of each new item.
    assert float(per_task_metrics(oracle, batch)["auc"].nanmean()) > 0.6
    with pytest.raises(ValueError, match="x needs 'user'"):
        oracle.score(oracle.adapt(batch), {k: v for k, v in batch.query_x.items() if k != "user"})
