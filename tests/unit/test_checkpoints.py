"""train_keeping_best: the model ends in its best validated state, the start included."""

from __future__ import annotations

import torch
from torch import nn

from metarec_ref.train.checkpoints import train_keeping_best


def _setup(target: float):
    model = nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        model.weight.fill_(0.0)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.25)
    loss = lambda _step: (model.weight - 1.0).pow(2).sum()  # noqa: E731  training pulls w to 1
    validate = lambda: -abs(float(model.weight.detach()) - target)  # noqa: E731  validation prefers w = target
    return model, optimizer, loss, validate


def test_keeps_the_best_checkpoint_not_the_last():
    model, optimizer, loss, validate = _setup(target=0.5)
    best = train_keeping_best(model, optimizer, loss, validate, steps=8, eval_every=1)
    # w after step s is 1 - 0.5 ** s: 0.5 after the first step, exactly the target
    assert float(model.weight.detach()) == 0.5 and best == 0.0


def test_keeps_the_start_when_training_only_hurts_validation():
    model, optimizer, loss, validate = _setup(target=-1.0)
    best = train_keeping_best(model, optimizer, loss, validate, steps=5, eval_every=2)
    assert float(model.weight.detach()) == 0.0 and best == -1.0
