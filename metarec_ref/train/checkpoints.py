"""An outer loop that keeps the state with the best validation score (the start included)."""

from __future__ import annotations

import copy
from collections.abc import Callable

from torch import Tensor, nn
from torch.optim import Optimizer


def train_keeping_best(model: nn.Module, optimizer: Optimizer, batch_loss: Callable[[int], Tensor],
                       validate: Callable[[], float], steps: int, eval_every: int) -> float:
    """``steps`` optimizer steps on ``batch_loss(step)``; every ``eval_every`` steps (and at the
    end) ``validate()`` scores the model, higher is better. The model ends in its best-scoring
    state, the state before training included, and that score is returned."""
    best_state, best = copy.deepcopy(model.state_dict()), validate()
    for step in range(1, steps + 1):
        loss = batch_loss(step)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step % eval_every == 0 or step == steps:
            value = validate()
            if value > best:
                best_state, best = copy.deepcopy(model.state_dict()), value
    model.load_state_dict(best_state)
    return best


__all__ = ["train_keeping_best"]
