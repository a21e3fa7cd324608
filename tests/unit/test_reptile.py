"""Reptile trains on all of a task's events (support and query), as published; an option keeps support only."""

from __future__ import annotations

import copy

import pytest
import torch

from metarec_ref.meta import Reptile, masked_bce_loss
from tests.unit.helpers import EmbeddingModel, make_batch, make_dict_batch, tiny_model


def _adapted_on_all_events(model, batch, t, lr, steps):
    """Plain SGD on the task's support and query events together (the padding masked out)."""
    clone = copy.deepcopy(model)
    sgd = torch.optim.SGD(clone.parameters(), lr=lr)
    x = torch.cat([batch.support_x[t], batch.query_x[t]])
    y = torch.cat([batch.support_y[t], batch.query_y[t]])
    mask = torch.cat([batch.support_mask[t], batch.query_mask[t]])
    for _ in range(steps):
        sgd.zero_grad()
        masked_bce_loss(clone(x), y, mask).backward()
        sgd.step()
    return [p.detach() for p in clone.parameters()]


@pytest.mark.parametrize("batched", [True, False])
def test_reptile_adapts_on_support_and_query_by_default(batched):
    model = tiny_model()
    batch = make_batch(ragged=True)
    lr, steps, outer_lr = 0.2, 3, 0.5
    initial = [p.detach().clone() for p in model.parameters()]
    expected = [torch.zeros_like(p) for p in initial]
    for t in range(batch.num_tasks):
        for d, a, p in zip(expected, _adapted_on_all_events(model, batch, t, lr, steps), initial):
            d += (a - p) / batch.num_tasks

    learner = Reptile(model, inner_steps=steps, inner_lr=lr, outer_lr=outer_lr, batched=batched)
    assert learner.train_on == "support+query"
    learner.outer_step(batch)
    for p, p0, d in zip(model.parameters(), initial, expected):
        torch.testing.assert_close(p.detach(), p0 + outer_lr * d, rtol=1e-9, atol=1e-12)


def test_support_only_option_sees_less_data_and_moves_differently():
    batch = make_batch(ragged=True)
    moved = {}
    for train_on in ("support+query", "support"):
        model = tiny_model()
        start = [p.detach().clone() for p in model.parameters()]
        Reptile(model, inner_steps=2, inner_lr=0.3, outer_lr=1.0, train_on=train_on).outer_step(batch)
        moved[train_on] = torch.cat([(p.detach() - p0).flatten() for p, p0 in zip(model.parameters(), start)])
    assert (moved["support+query"] - moved["support"]).abs().max() > 1e-4


def test_dict_features_are_concatenated_per_key():
    batch = make_dict_batch()
    merged = batch.with_query_in_support()
    k, q = batch.support_y.shape[1], batch.query_y.shape[1]
    assert merged.support_y.shape[1] == k + q
    for key, value in merged.support_x.items():
        assert value.shape[1] == k + q
        torch.testing.assert_close(value[:, k:], batch.query_x[key])
    assert merged.query_x is batch.query_x
    Reptile(EmbeddingModel(), inner_steps=1, inner_lr=0.1, batched=False).outer_step(batch)  # runs end to end


def test_unknown_train_on_raises():
    with pytest.raises(ValueError, match="train_on must be one of"):
        Reptile(tiny_model(), train_on="query")
