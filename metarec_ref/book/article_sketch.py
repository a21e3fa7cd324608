"""The source article's MAML sketch, re-typed (not copied) so the book can run it and show its bugs.

The article is "元学习在电商快速模型优化中的实践" ("Meta-learning in practice for fast model
optimisation in e-commerce") by 禅与计算机程序设计艺术. Do not use this module for anything but the
lesson; :mod:`metarec_ref.meta.maml` is the corrected version. The sketch's faults, each shown in
chapter 4 and pinned by tests:

1. ``self.model.clone()``: an ``nn.Module`` has no ``clone`` method -> ``AttributeError``.
2. The graph is cut twice. Patch ``clone`` with a deep copy: the copy's parameters are new leaf
   tensors, so the copy *alone* already detaches the meta-parameters (their gradients stay
   ``None`` whatever the inner update does). The inner update ``p.sub_(inner_lr * g)``, in place
   under ``torch.no_grad()``, additionally keeps the copy's parameters leaves, so the gradient the
   outer loss leaves on them is the first-order one: the second-order term that
   ``create_graph=True`` was meant to keep is dropped. Patch ``clone`` with a shallow copy and the
   "fast" model *is* the original, so adaptation overwrites the meta-parameters.
3. The outer loss is computed on the same ``x, y`` the clone adapted on (support = query), which
   rewards memorising the support set, not adapting to the task.
4. The evaluation branch (``is_train=False``) returns the meta-model's output: it never adapts to
   the task, contrary to the article's own meta-testing step.
5. The base model outputs ``(N, 1)``; the article never shapes its target, and ``MSELoss`` against
   a ``(N,)`` target broadcasts to ``(N, N)`` (with only a warning): the loss then compares every
   prediction with every label and is minimised by predicting the mean label for every item.

The outer loop also steps the optimiser once per task: a meta-batch of one.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call

from metarec_ref.runtime import adam


class ArticleRecommendationModel(nn.Module):
    """The article's base model, re-typed: ``fc1 -> ReLU -> fc2``, output ``(N, output_dim)``."""

    def __init__(self, input_dim: int, hidden_dim: int, output_dim: int = 1):
        super().__init__()
        self.fc1 = nn.Linear(input_dim, hidden_dim)
        self.fc2 = nn.Linear(hidden_dim, output_dim)
        self.relu = nn.ReLU()

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(self.relu(self.fc1(x)))


class ArticleMAML(nn.Module):
    """The article's wrapper, as written: broken by design (see the module docstring)."""

    def __init__(self, model: nn.Module, inner_lr: float = 0.01, num_updates: int = 1):
        super().__init__()
        self.model = model
        self.inner_lr = inner_lr
        self.num_updates = num_updates

    def clone_model(self) -> nn.Module:
        return self.model.clone()  # bug 1: nn.Module has no clone()

    def forward(self, x: Tensor, y: Tensor, is_train: bool = True):
        if not is_train:
            return self.model(x)  # bug 4: no adaptation at test time; y is never used
        fast_model = self.clone_model()
        for _ in range(self.num_updates):
            loss = F.mse_loss(fast_model(x), y)
            grads = torch.autograd.grad(loss, list(fast_model.parameters()), create_graph=True)
            with torch.no_grad():  # bug 2: an in-place update outside autograd
                for p, g in zip(fast_model.parameters(), grads):
                    p.sub_(self.inner_lr * g)
        return fast_model


class DeepCopyPatch(ArticleMAML):
    """The first patch a reader tries: ``clone`` as ``copy.deepcopy``."""

    def clone_model(self) -> nn.Module:
        return copy.deepcopy(self.model)


class ShallowCopyPatch(ArticleMAML):
    """The other patch: ``copy.copy``, which shares the parameter tensors with the original."""

    def clone_model(self) -> nn.Module:
        return copy.copy(self.model)


def article_outer_step(
    maml: ArticleMAML, tasks: Iterable[tuple[Tensor, Tensor]], optimizer: torch.optim.Optimizer
) -> float:
    """The article's outer loop body for one pass over ``tasks``; returns the mean loss.

    One optimiser step per task: a meta-batch of one.
    """
    losses = []
    for x, y in tasks:
        fast_model = maml(x, y)
        loss = F.mse_loss(fast_model(x), y)  # bug 3: the support set is also the query set
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    return sum(losses) / max(len(losses), 1)


def copy_gradients(maml: ArticleMAML, x: Tensor, y: Tensor) -> dict[str, Tensor]:
    """The gradient the sketch's outer loss leaves on the adapted copy's parameters (one task)."""
    fast_model = maml(x, y)
    loss = F.mse_loss(fast_model(x), y)
    return dict(zip(dict(fast_model.named_parameters()), torch.autograd.grad(loss, list(fast_model.parameters()))))


def sketch_meta_gradient(
    model: nn.Module, x: Tensor, y: Tensor, inner_lr: float, num_updates: int = 1, first_order: bool = False
) -> dict[str, Tensor]:
    """What the sketch meant to compute, with fast weights: the gradient of the (support = query)
    loss after ``num_updates`` inner steps with respect to ``model``'s parameters.

    ``first_order=True`` treats the inner gradients as constants (the second-order term dropped).
    """
    params = dict(model.named_parameters())
    fast = params
    for _ in range(num_updates):
        loss = F.mse_loss(functional_call(model, fast, (x,)), y)
        grads = torch.autograd.grad(loss, list(fast.values()), create_graph=not first_order)
        fast = {name: p - inner_lr * (g.detach() if first_order else g) for (name, p), g in zip(fast.items(), grads)}
    outer = F.mse_loss(functional_call(model, fast, (x,)), y)
    return dict(zip(params, torch.autograd.grad(outer, list(params.values()))))


def fit_mse(model: nn.Module, x: Tensor, y: Tensor, steps: int = 300, lr: float = 0.01) -> float:
    """Fit ``model`` to ``(x, y)`` with Adam on ``F.mse_loss(model(x), y)`` as written (shapes
    unchecked, as in the article); returns the final loss."""
    optimizer = adam(model.parameters(), lr=lr)
    for _ in range(steps):
        loss = F.mse_loss(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return float(loss.detach())


def parameter_grads(model: nn.Module) -> dict[str, Tensor | None]:
    """Each parameter's ``.grad`` (``None`` when no gradient reached it)."""
    return {name: p.grad for name, p in model.named_parameters()}


def snapshot(model: nn.Module) -> dict[str, Tensor]:
    """A detached copy of the parameters, to compare before and after."""
    return {name: p.detach().clone() for name, p in model.named_parameters()}


def max_change(before: dict[str, Tensor], model: nn.Module) -> float:
    """Largest absolute change of any parameter since ``before``."""
    return max(float((p.detach() - before[n]).abs().max()) for n, p in model.named_parameters())


