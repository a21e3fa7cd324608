"""The meta core on CUDA: results follow the device, match the CPU, paths agree, nothing mutates."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from metarec_ref.batch import TaskBatch
from metarec_ref.meta import MAML, MatchingNet, MetaSGD, ProtoNet, Reptile

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA"),
]


def make_model(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(3, 8), nn.Tanh(), nn.Linear(8, 1), nn.Flatten(-2))


def make_batch(tasks: int = 6, k: int = 5, q: int = 7, dtype=torch.float64) -> TaskBatch:
    gen = torch.Generator().manual_seed(0)
    support_mask = torch.ones(tasks, k, dtype=torch.bool)
    support_mask[1, 3:] = False  # a ragged task
    return TaskBatch(
        torch.randn(tasks, k, 3, generator=gen, dtype=dtype), (torch.rand(tasks, k, generator=gen) > 0.5).to(dtype),
        support_mask,
        torch.randn(tasks, q, 3, generator=gen, dtype=dtype), (torch.rand(tasks, q, generator=gen) > 0.5).to(dtype),
        torch.ones(tasks, q, dtype=torch.bool),
    )


def grads(learner: nn.Module, batch: TaskBatch) -> torch.Tensor:
    params = list(learner.parameters())
    return torch.cat([g.reshape(-1) for g in torch.autograd.grad(learner.meta_loss(batch), params)])


@pytest.mark.parametrize("cls, first_order", [(MAML, False), (MAML, True), (MetaSGD, False)])
def test_cuda_meta_gradient_matches_cpu_and_loop(cls, first_order):
    batch = make_batch()
    cpu = grads(cls(make_model().double(), inner_steps=2, inner_lr=0.3, first_order=first_order), batch)
    gpu_learner = cls(make_model().double(), inner_steps=2, inner_lr=0.3, first_order=first_order).cuda()
    gpu_loop = cls(make_model().double(), inner_steps=2, inner_lr=0.3, first_order=first_order, batched=False).cuda()
    cuda_batch = batch.to("cuda")
    got = grads(gpu_learner, cuda_batch)
    assert got.device.type == "cuda"
    torch.testing.assert_close(got.cpu(), cpu, rtol=1e-9, atol=1e-10)
    torch.testing.assert_close(grads(gpu_loop, cuda_batch), got, rtol=0, atol=1e-6)


def test_cuda_adapt_score_and_no_mutation():
    model = make_model().cuda()
    batch = make_batch(dtype=torch.float32).to("cuda")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    learner = MAML(model, inner_steps=3, inner_lr=0.3)
    learner.meta_loss(batch).backward()
    logits = learner.score(learner.adapt(batch), batch.query_x)
    assert logits.device.type == "cuda" and logits.shape == batch.query_y.shape
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k


def test_cuda_reptile_and_metric_learners_step():
    batch = make_batch(dtype=torch.float32).to("cuda")
    reptile = Reptile(make_model().cuda(), inner_steps=2)
    assert reptile.outer_step(batch) > 0
    for cls in (ProtoNet, MatchingNet):
        learner = cls(nn.Linear(3, 4)).cuda()
        optimizer = torch.optim.Adam(learner.parameters(), lr=1e-2)
        assert learner.outer_step(batch, optimizer) > 0
        assert learner.score(learner.adapt(batch), batch.query_x).device.type == "cuda"


def test_cuda_nan_is_reported_with_step_and_task():
    batch = make_batch(dtype=torch.float32)
    support_x = batch.support_x.clone()
    support_x[4, 0, 0] = float("nan")
    bad = TaskBatch(support_x, batch.support_y, batch.support_mask,
                    batch.query_x, batch.query_y, batch.query_mask).to("cuda")
    with pytest.raises(ValueError, match="step 1 of 2 for task 4"):
        MAML(make_model().cuda(), inner_steps=2).meta_loss(bad)


def test_cuda_traced_meta_gradient_matches_untraced():
    batch = make_batch().to("cuda")
    plain = grads(MAML(make_model().double(), inner_steps=2, inner_lr=0.3).cuda(), batch)
    traced = grads(MAML(make_model().double(), inner_steps=2, inner_lr=0.3, trace=True).cuda(), batch)
    assert traced.device.type == "cuda"
    torch.testing.assert_close(traced, plain, rtol=0, atol=1e-12)
