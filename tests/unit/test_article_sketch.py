"""The article's sketch fails in exactly the documented ways; the gradient checker works."""

from __future__ import annotations

import copy
import warnings

import pytest
import torch
from torch import nn

from metarec_ref.book import (
    ArticleMAML,
    ArticleRecommendationModel,
    DeepCopyPatch,
    ShallowCopyPatch,
    article_outer_step,
    copy_gradients,
    fit_mse,
    max_change,
    parameter_grads,
    sketch_meta_gradient,
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


def article_model(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return ArticleRecommendationModel(input_dim=3, hidden_dim=16, output_dim=1).double()


def test_the_copy_alone_detaches_the_meta_parameters():
    model = article_model()
    for p, q in zip(model.parameters(), copy.deepcopy(model).parameters()):
        assert q.is_leaf and q.grad_fn is None and q.data_ptr() != p.data_ptr()
    # Even a differentiable (out-of-place) step on the copy never reaches the original.
    twin = copy.deepcopy(model)
    x, y = (t.double() for t in task())
    fast = {n: p - 0.1 * p for n, p in twin.named_parameters()}
    loss = nn.functional.mse_loss(torch.func.functional_call(twin, fast, (x,)), y)
    loss.backward()
    assert all(p.grad is None for p in model.parameters())


def test_in_place_update_leaves_only_the_first_order_gradient_on_the_copy():
    model = article_model()
    x, y = (t.double() for t in task())
    on_copy = copy_gradients(DeepCopyPatch(model, inner_lr=0.1, num_updates=2), x, y)
    first = sketch_meta_gradient(model, x, y, inner_lr=0.1, num_updates=2, first_order=True)
    second = sketch_meta_gradient(model, x, y, inner_lr=0.1, num_updates=2, first_order=False)
    for name in first:
        assert torch.allclose(on_copy[name], first[name], atol=1e-10), name
    gap = max(float((second[n] - first[n]).abs().max()) for n in first)
    assert gap > 1e-4  # the second-order term the cut drops is not negligible


def test_second_order_sketch_gradient_matches_finite_differences():
    model = article_model()
    x, y = (t.double() for t in task())
    grads = sketch_meta_gradient(model, x, y, inner_lr=0.1, num_updates=2)
    direction = {n: torch.randn_like(p) for n, p in model.named_parameters()}

    def loss_at(eps: float) -> float:
        params = {n: p.detach() + eps * direction[n] for n, p in model.named_parameters()}
        fast = {n: p.requires_grad_() for n, p in params.items()}
        for _ in range(2):
            g = torch.autograd.grad(nn.functional.mse_loss(torch.func.functional_call(model, fast, (x,)), y),
                                    list(fast.values()), create_graph=True)
            fast = {n: p - 0.1 * gi for (n, p), gi in zip(fast.items(), g)}
        return float(nn.functional.mse_loss(torch.func.functional_call(model, fast, (x,)), y).detach())

    numeric = (loss_at(1e-6) - loss_at(-1e-6)) / 2e-6
    analytic = sum(float((grads[n] * direction[n]).sum()) for n in grads)
    assert abs(numeric - analytic) < 1e-6 * max(1.0, abs(analytic))


def test_bug4_evaluation_branch_ignores_the_task():
    maml = DeepCopyPatch(article_model(), inner_lr=0.1, num_updates=3)
    x, y = (t.double() for t in task())
    with torch.no_grad():
        plain = maml.model(x)
    assert torch.equal(maml(x, y, is_train=False), plain)
    assert torch.equal(maml(x, -y, is_train=False), plain)  # labels of the task are never read
    assert not torch.allclose(maml(x, y)(x), plain)  # the training branch does adapt


def test_bug5_unshaped_target_broadcasts_and_learns_the_mean():
    torch.manual_seed(0)
    x = torch.randn(64, 3, dtype=torch.float64)
    y = x @ torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)  # (N,): the article never shapes it
    model = article_model()
    with pytest.warns(UserWarning, match="target size"):
        nn.functional.mse_loss(model(x), y)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        fit_mse(model, x, y, steps=400, lr=0.01)
    with torch.no_grad():
        predictions = model(x).squeeze(-1)
    # Minimising mean_ij (out_i - y_j)^2 drives every prediction to the mean label.
    assert float(predictions.std()) < 0.05 * float(y.std())
    assert abs(float(predictions.mean() - y.mean())) < 0.05 * float(y.std())
    shaped = article_model()
    fit_mse(shaped, x, y.unsqueeze(-1), steps=400, lr=0.01)
    with torch.no_grad():
        assert float(torch.corrcoef(torch.stack([shaped(x).squeeze(-1), y]))[0, 1]) > 0.9
