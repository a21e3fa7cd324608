"""The toy task family: shapes, determinism, shared world, oracle."""

from __future__ import annotations

import pytest
import torch

from metarec_ref.eval.metrics import per_task_auc
from metarec_ref.data import ToyConfig, ToyOracle, preference_tasks


def test_shapes_and_masks():
    batch = preference_tasks(6, 5, 7)
    assert batch.support_x.shape == (6, 5, 8) and batch.query_x.shape == (6, 7, 8)
    assert batch.support_y.shape == (6, 5) and batch.query_mask.all()
    assert set(batch.support_y.unique().tolist()) <= {0.0, 1.0}


def test_same_seed_same_tasks_other_seed_other_users():
    a, b, c = preference_tasks(4, 3, 3, seed=1), preference_tasks(4, 3, 3, seed=1), preference_tasks(4, 3, 3, seed=2)
    assert torch.equal(a.support_x, b.support_x) and torch.equal(a.query_y, b.query_y)
    assert not torch.equal(a.support_x, c.support_x)


def test_oracle_ranks_clicks_well():
    batch = preference_tasks(200, 1, 50, seed=3)
    oracle = ToyOracle(200, seed=3)
    scores = oracle.score(oracle.adapt(batch), batch.query_x)
    auc = torch.nanmean(per_task_auc(scores, batch.query_y, batch.query_mask))
    assert auc > 0.8
    # A sub-batch gets its own users' preferences.
    part = batch.select(slice(50, 60))
    assert torch.equal(oracle.score(oracle.adapt(part), part.query_x), scores[50:60])
    wrong = ToyOracle(200, seed=4)
    assert torch.nanmean(per_task_auc(wrong.score(wrong.adapt(batch), batch.query_x), batch.query_y)) < auc - 0.1


def test_rating_kind_is_real_valued_and_float64_works():
    batch = preference_tasks(3, 4, 4, kind="rating", dtype=torch.float64)
    assert batch.support_y.dtype == torch.float64
    assert not set(batch.support_y.flatten().tolist()) <= {0.0, 1.0}


@pytest.mark.parametrize(
    "kwargs, message",
    [({"kind": "stars"}, "kind must be"), ({"k_support": 0}, "k_support must be"), ({"n_tasks": 2.5}, "n_tasks must be")],
)
def test_bad_arguments(kwargs, message):
    args = {"n_tasks": 2, "k_support": 2, "n_query": 2, **kwargs}
    with pytest.raises(ValueError, match=message):
        preference_tasks(**args)


def test_bad_config():
    with pytest.raises(ValueError, match="user_noise must be >= 0"):
        ToyConfig(user_noise=-1)
