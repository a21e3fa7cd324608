"""The one data-to-tasks pipeline: disjoint parts, shapes, the same tensors as the steps by hand."""

from __future__ import annotations

import warnings
from dataclasses import fields

import pytest
import torch

from metarec_ref.batch import TaskBatch
from metarec_ref.data import NegativeSampling
from metarec_ref.data import (
    Encoders,
    build_user_tasks,
    generate,
    temporal_cold_start_split,
    to_task_batch,
    validate_events,
)
from metarec_ref.eval import cold_start_eval_tasks
from metarec_ref.recipes import ColdStartCut, build_cold_start_tasks
from metarec_ref.recipes.pipeline import COLD_START_STAGES

K, Q = 3, 5
CELLS = ("new_user_existing_item", "new_user_new_item")


@pytest.fixture(scope="module")
def events():
    log = generate(n_users=300, n_items=80, n_interactions=6000, initial_users=0.3, seed=5)
    return validate_events(log.events)


@pytest.fixture(scope="module")
def tasks(events):
    return build_cold_start_tasks(events, ColdStartCut(K, Q, NegativeSampling(2), cut_quantile=0.7, cells=CELLS, seed=7))


def _equal(a: TaskBatch, b: TaskBatch) -> bool:
    """Every tensor of the two batches is equal (feature dicts key by key)."""
    for f in fields(TaskBatch):
        x, y = getattr(a, f.name), getattr(b, f.name)
        if isinstance(x, dict):
            if x.keys() != y.keys() or not all(torch.equal(x[k], y[k]) for k in x):
                return False
        elif (x is None) != (y is None) or (x is not None and not torch.equal(x, y)):
            return False
    return True


def test_parts_are_disjoint_in_users_and_time(tasks):
    split = tasks.split
    train_users = set(split.train["user_id"])
    val_users, test_users = set(split.valid_users), set(split.test_users)
    assert not (train_users & val_users) and not (train_users & test_users) and not (val_users & test_users)
    assert (split.train["timestamp"] < split.cut_time).all()
    assert (split.valid["timestamp"] < split.test_start).all()


def test_shapes_and_counts(tasks):
    spec = tasks.spec
    for batch in (tasks.train, tasks.val):
        n = batch.num_tasks
        assert batch.support_y.shape == (n, K * 3)  # each positive plus its 2 negatives
        assert batch.query_y.shape[0] == n and batch.query_y.shape[1] <= Q * 3
        assert int(batch.support_x["item"].max()) < spec.n_items
    assert set(tasks.test) <= set(CELLS) and tasks.test
    for cell, by_k in tasks.test.items():
        assert list(by_k) == [K]
        assert by_k[K].candidates.shape == (by_k[K].batch.num_tasks, spec.n_items)
        assert tasks.counts[f"test_tasks_{cell}"] == by_k[K].batch.num_tasks
    assert tasks.counts["train_tasks"] == tasks.train.num_tasks and tasks.counts["val_tasks"] == tasks.val.num_tasks


def test_same_batches_as_the_steps_by_hand(events, tasks):
    split = temporal_cold_start_split(events, cut_quantile=0.7)
    encoders = Encoders.fit(events)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        train = build_user_tasks(split.train, K, Q, negatives=NegativeSampling(2), seed=7)
        val = build_user_tasks(split.valid, K, Q, negatives=NegativeSampling(2, history=events), seed=8)
        cells = {c: split.cells[c][split.cells[c]["user_id"].isin(split.test_users)] for c in CELLS}
        test = cold_start_eval_tasks(cells, encoders, ks=[K], n_query=Q, negatives=NegativeSampling(2, history=events),
                                     seed=9)
    assert _equal(tasks.train, to_task_batch(train, encoders))
    assert _equal(tasks.val, to_task_batch(val, encoders))
    assert set(test) == set(tasks.test)
    for cell in test:
        mine, theirs = tasks.test[cell][K], test[cell][K]
        assert _equal(mine.batch, theirs.batch)
        assert torch.equal(mine.relevant, theirs.relevant) and torch.equal(mine.candidates, theirs.candidates)


def test_validation_stages_and_available_items(events):
    raw = generate(n_users=300, n_items=80, n_interactions=6000, initial_users=0.3, seed=5).events
    seen = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        out = build_cold_start_tasks(raw, ColdStartCut(K, Q, cut_quantile=0.7, cells=CELLS, available_items_only=True),
                                     validate=True, on_stage=seen.append)
    assert tuple(seen) == COLD_START_STAGES
    available = out.encoders.catalog().available(out.split.cut_time)
    for by_k in out.test.values():
        assert not (by_k[K].candidates & ~available).any()  # nothing new after the cut is ranked


def test_no_test_cells_and_errors(events):
    out = build_cold_start_tasks(events, ColdStartCut(K, Q, cut_quantile=0.7, cells=()))
    assert out.test == {} and "test_tasks_new_user_existing_item" not in out.counts
    with pytest.raises(ValueError, match="lower k_support"):
        build_cold_start_tasks(events, ColdStartCut(500, Q, cut_quantile=0.7))
