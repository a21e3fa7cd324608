"""The article's sketch fails in exactly the three documented ways; the gradient checker works."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from metarec_ref.book import (
    ArticleMAML,
    DeepCopyPatch,
    ShallowCopyPatch,
    article_outer_step,
    max_change,
    parameter_grads,
    snapshot,
)
from metarec_ref.meta import check_meta_gradient


def tiny_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 8), nn.Tanh(), nn.Linear(8, 1))


def task(seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(10, 3, generator=g)
    return x, x.sum(dim=1, keepdim=True)


def test_bug1_clone_raises_attribute_error():
    with pytest.raises(AttributeError, match="clone"):
        ArticleMAML(tiny_model())(*task())


def test_bug2_deepcopy_leaves_meta_parameters_without_gradient():
    maml = DeepCopyPatch(tiny_model(), inner_lr=0.1)
    before = snapshot(maml.model)
    optimizer = torch.optim.Adam(maml.parameters(), lr=0.1)
    article_outer_step(maml, [task()], optimizer)
    assert all(g is None for g in parameter_grads(maml.model).values())
    assert max_change(before, maml.model) == 0.0  # the optimizer had nothing to apply


def test_bug2_shallow_copy_overwrites_meta_parameters_during_adaptation():
    maml = ShallowCopyPatch(tiny_model(), inner_lr=0.1)
    before = snapshot(maml.model)
    maml(*task())  # adaptation only, no outer step
    assert max_change(before, maml.model) > 1e-3


def test_bug3_support_equals_query_rewards_memorisation():
    # A wide model, many steps: support loss collapses, held-out loss of the same task does not.
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 256), nn.Tanh(), nn.Linear(256, 1))
    maml = DeepCopyPatch(model, inner_lr=0.05, num_updates=300)
    g = torch.Generator().manual_seed(3)
    x = torch.randn(40, 3, generator=g)
    y = torch.sin(3 * x[:, :1]) + 0.3 * torch.randn(40, 1, generator=g)
    fast = maml(x[:8], y[:8])
    support_loss = float(nn.functional.mse_loss(fast(x[:8]), y[:8]).detach())
    heldout_loss = float(nn.functional.mse_loss(fast(x[8:]), y[8:]).detach())
    assert support_loss < heldout_loss / 5


def test_gradcheck_accepts_a_correct_gradient_and_rejects_a_wrong_one():
    model = tiny_model().double()
    x, y = (t.double() for t in task())
    good = check_meta_gradient(lambda: nn.functional.mse_loss(model(x), y), model)
    assert good.max_rel_error < 1e-6

    # A loss whose graph hides part of the dependence: autograd sees the detached half as constant.
    def broken():
        out = model(x)
        return nn.functional.mse_loss(0.5 * out + 0.5 * out.detach(), y)

    bad = check_meta_gradient(broken, model)
    assert bad.max_rel_error > 0.1


def test_gradcheck_requires_float64():
    with pytest.raises(ValueError, match="float64"):
        check_meta_gradient(lambda: tiny_model()(task()[0]).sum(), tiny_model())
