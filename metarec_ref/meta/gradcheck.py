"""Check a learner's meta-gradient against central finite differences, in float64.

Used by the tests and by the book, so a reader can verify the library on their own model.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn


@dataclass
class GradCheck:
    """Directional derivatives: autograd vs finite differences, one row per random direction."""

    autograd: list[float]
    finite_difference: list[float]

    @property
    def max_abs_error(self) -> float:
        return max(abs(a - f) for a, f in zip(self.autograd, self.finite_difference))

    @property
    def max_rel_error(self) -> float:
        return max(
            abs(a - f) / max(abs(a), abs(f), 1e-12)
            for a, f in zip(self.autograd, self.finite_difference)
        )


def check_meta_gradient(
    loss_fn: Callable[[], Tensor],
    params: list[Tensor] | nn.Module,
    n_directions: int = 3,
    eps: float = 1e-6,
    seed: int = 0,
) -> GradCheck:
    """Compare ``grad(loss) . v`` with ``(L(p + eps v) - L(p - eps v)) / (2 eps)``.

    ``loss_fn()`` recomputes the meta-loss from the current values of ``params`` (e.g.
    ``lambda: learner.meta_loss(batch)``). Use float64 parameters and data: in float32 the
    finite differences are dominated by rounding. Parameters are restored afterwards.
    """
    if isinstance(params, nn.Module):
        params = [p for p in params.parameters() if p.requires_grad]
    if not params:
        raise ValueError("params is empty; pass the learner's meta-parameters or the learner itself")
    if any(p.dtype != torch.float64 for p in params):
        raise ValueError(
            "finite differences need float64 parameters; call learner.double() and pass float64 data"
        )
    if n_directions < 1 or eps <= 0:
        raise ValueError(f"need n_directions >= 1 and eps > 0, got {n_directions} and {eps}")
    generator = torch.Generator().manual_seed(seed)
    grads = torch.autograd.grad(loss_fn(), params, allow_unused=True)
    grads = [torch.zeros_like(p) if g is None else g for p, g in zip(params, grads)]
    autograd, finite = [], []
    for _ in range(n_directions):
        direction = [torch.randn(p.shape, generator=generator, dtype=p.dtype).to(p.device) for p in params]
        autograd.append(float(sum((g * d).sum() for g, d in zip(grads, direction))))
        _shift(params, direction, eps)
        plus = float(loss_fn().detach())  # the inner loop itself needs autograd: no no_grad here
        _shift(params, direction, -2 * eps)
        minus = float(loss_fn().detach())
        _shift(params, direction, eps)
        finite.append((plus - minus) / (2 * eps))
    return GradCheck(autograd, finite)


def _shift(params: list[Tensor], direction: list[Tensor], step: float) -> None:
    with torch.no_grad():
        for p, d in zip(params, direction):
            p.add_(d, alpha=step)
