"""Normalisation and dropout inside the meta core: per-task batch statistics, running statistics untouched."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from metarec_ref.batch import TaskBatch
from metarec_ref.meta import MAML, Reptile
from tests.unit.helpers import adapted_with_graph


class Normalised(nn.Module):
    """Linear -> BatchNorm1d -> ReLU -> LayerNorm -> Dropout -> head, on events (n, 3)."""

    def __init__(self, p: float = 0.0):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(3, 6), nn.BatchNorm1d(6), nn.ReLU(), nn.LayerNorm(6), nn.Dropout(p))
        self.head = nn.Linear(6, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x)).squeeze(-1)


def make_batch(tasks: int = 4, k: int = 6, q: int = 5) -> TaskBatch:
    gen = torch.Generator().manual_seed(0)
    return TaskBatch(
        torch.randn(tasks, k, 3, generator=gen, dtype=torch.float64) * 3 + 1,
        (torch.rand(tasks, k, generator=gen) > 0.5).double(), torch.ones(tasks, k, dtype=torch.bool),
        torch.randn(tasks, q, 3, generator=gen, dtype=torch.float64) * 3 + 1,
        (torch.rand(tasks, q, generator=gen) > 0.5).double(), torch.ones(tasks, q, dtype=torch.bool),
    )


def model_of(p: float = 0.0) -> nn.Module:
    torch.manual_seed(0)
    return Normalised(p).double().train()


def meta_grads(learner: nn.Module, batch: TaskBatch) -> list[torch.Tensor]:
    return list(torch.autograd.grad(learner.meta_loss(batch), list(learner.parameters())))


@pytest.mark.parametrize("trace", [False, True])
def test_batch_norm_in_training_mode_gives_the_same_meta_gradient_batched_and_looped(trace):
    batch = make_batch()
    model = model_of()
    batched = meta_grads(MAML(model, inner_steps=2, trace=trace), batch)
    looped = meta_grads(MAML(model, inner_steps=2, batched=False), batch)
    for a, b in zip(batched, looped):
        torch.testing.assert_close(a, b, atol=1e-12, rtol=1e-10)


def test_each_task_is_normalised_with_its_own_statistics():
    """Task t's loss is the loss of task t alone: no statistic is shared across tasks."""
    batch = make_batch()
    learner = MAML(model_of(), inner_steps=1)
    _, together = adapted_with_graph(learner, batch)
    alone = torch.stack([adapted_with_graph(learner, batch.select([t]))[1][0] for t in range(batch.num_tasks)])
    torch.testing.assert_close(together, alone, atol=1e-12, rtol=0)


@pytest.mark.parametrize("batched", [True, False])
def test_meta_training_leaves_running_statistics_untouched(batched):
    model = model_of()
    norm = model.body[1]
    before = (norm.running_mean.clone(), norm.running_var.clone(), norm.num_batches_tracked.clone())
    learner = MAML(model, inner_steps=2, batched=batched)
    optimizer = torch.optim.SGD(learner.parameters(), lr=0.1)
    learner.outer_step(make_batch(), optimizer)
    state = learner.adapt(make_batch())
    learner.score(state, make_batch().query_x)
    Reptile(model, inner_steps=2, batched=batched).outer_step(make_batch())
    for old, new in zip(before, (norm.running_mean, norm.running_var, norm.num_batches_tracked)):
        assert torch.equal(old, new)


def test_eval_mode_uses_the_running_statistics():
    batch = make_batch()
    model = model_of()
    with torch.no_grad():
        model.body[1].running_mean.fill_(100.0)  # absurd statistics: visible in eval mode only
    train_loss = MAML(model).meta_loss(batch)
    model.eval()
    eval_loss = MAML(model).meta_loss(batch)
    assert not torch.isclose(train_loss, eval_loss)
    model.body[1].running_mean.fill_(0.0)
    looped = MAML(model, batched=False).meta_loss(batch)
    torch.testing.assert_close(MAML(model).meta_loss(batch), looped, atol=1e-12, rtol=0)


@pytest.mark.parametrize("trace", [False, True])
def test_dropout_draws_fresh_masks_per_task_and_per_call(trace):
    batch = make_batch()
    learner = MAML(model_of(p=0.5), inner_steps=1, trace=trace)
    torch.manual_seed(1)
    first = adapted_with_graph(learner, batch)[1]
    second = adapted_with_graph(learner, batch)[1]
    assert torch.isfinite(first).all() and not torch.equal(first, second)
    learner.model.eval()  # dropout off: deterministic, and the looped path agrees
    torch.testing.assert_close(MAML(learner.model).meta_loss(batch),
                               MAML(learner.model, batched=False).meta_loss(batch), atol=1e-12, rtol=0)
