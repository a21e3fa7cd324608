"""The source article's MAML sketch, re-typed so the book can run it and show its bugs.

Do not use this for anything but the lesson; :mod:`metarec_ref.meta.maml` is the corrected version.
The sketch has three bugs, each demonstrated in chapter 4 and pinned by tests:

1. ``self.model.clone()``: an ``nn.Module`` has no ``clone`` method -> ``AttributeError``.
2. The inner update ``p.sub_(inner_lr * g)`` runs in place under ``torch.no_grad()``. Patch
   ``clone`` with a deep copy and the update cuts the graph: the outer loss backpropagates into
   the copy only, and the wrapped model's (the meta-parameters') gradients stay ``None``. Patch it
   with a shallow copy and the "fast" model *is* the original, so adaptation overwrites the
   meta-parameters.
3. The outer loss is computed on the same ``x, y`` the clone adapted on (support = query), which
   rewards memorising the support set, not adapting to the task.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class ArticleMAML(nn.Module):
    """The article's wrapper, as written: broken by design (see the module docstring)."""

    def __init__(self, model: nn.Module, inner_lr: float = 0.01, num_updates: int = 1):
        super().__init__()
        self.model = model
        self.inner_lr = inner_lr
        self.num_updates = num_updates

    def clone_model(self) -> nn.Module:
        return self.model.clone()  # bug 1: nn.Module has no clone()

    def forward(self, x: Tensor, y: Tensor, training: bool = True):
        if not training:
            return self.model(x)
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
    """The article's outer loop body for one pass over ``tasks``; returns the mean loss."""
    losses = []
    for x, y in tasks:
        fast_model = maml(x, y)
        loss = F.mse_loss(fast_model(x), y)  # bug 3: the support set is also the query set
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    return sum(losses) / max(len(losses), 1)


def parameter_grads(model: nn.Module) -> dict[str, Tensor | None]:
    """Each parameter's ``.grad`` (``None`` when no gradient reached it)."""
    return {name: p.grad for name, p in model.named_parameters()}


def snapshot(model: nn.Module) -> dict[str, Tensor]:
    """A detached copy of the parameters, to compare before and after."""
    return {name: p.detach().clone() for name, p in model.named_parameters()}


def max_change(before: dict[str, Tensor], model: nn.Module) -> float:
    """Largest absolute change of any parameter since ``before``."""
    return max(float((p.detach() - before[n]).abs().max()) for n, p in model.named_parameters())


