"""A model whose output is not shaped like the labels is refused wherever the library owns the loss.

An ``nn.Linear(..., 1)`` head gives ``(k, 1)`` scores; against ``(k,)`` labels a loss would
broadcast them into a ``(k, k)`` table and return a wrong number without a word.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from metarec_ref.data import preference_tasks
from metarec_ref.eval import FineTune, train_supervised
from metarec_ref.meta import (
    ALGORITHMS,
    BatchedTaskLoss,
    FastWeights,
    build_learner,
    masked_bce_loss,
    masked_mse_loss,
)
from metarec_ref.models import sampled_softmax_loss
from tests.unit.helpers import make_batch

# Reptile's outer step adapts on support and query together: 10 events.
SQUEEZE = r"prediction has shape \((5|10), 1\) but the labels have shape \((5|10),\).*squeeze the last dimension"
INNER_LOOP_NAMES = [name for name, entry in ALGORITHMS.items() if entry.inner_loop]


def column_head(n_in: int = 3) -> nn.Module:
    """The model of the trap: a plain stack ending in ``nn.Linear(..., 1)``, no squeeze."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(n_in, 4), nn.Tanh(), nn.Linear(4, 1)).double()


def broadcasting_loss(pred: torch.Tensor, y: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """A user's own loss that would broadcast silently."""
    return ((pred - y) ** 2).mean()


@pytest.mark.parametrize("name", INNER_LOOP_NAMES)
@pytest.mark.parametrize("batched, trace", [(True, False), (True, True), (True, "auto"), (False, False)])
def test_every_gradient_learner_refuses_a_column_head(name, batched, trace):
    learner = build_learner(name, column_head(), inner_steps=1, batched=batched, trace=trace)
    batch = make_batch(k=5, q=5)
    with pytest.raises(ValueError, match=SQUEEZE):
        if learner.own_outer_update:
            learner.outer_step(batch, None)
        else:
            learner.meta_loss(batch)
    with pytest.raises(ValueError, match=SQUEEZE):
        learner.adapt(batch)


@pytest.mark.parametrize("name", INNER_LOOP_NAMES)
@pytest.mark.parametrize("batched", [True, False])
def test_a_custom_loss_is_guarded_too(name, batched):
    learner = build_learner(name, column_head(), loss_fn=broadcasting_loss, inner_steps=1, batched=batched)
    with pytest.raises(ValueError, match=SQUEEZE):
        learner.adapt(make_batch(k=5, q=5))


def test_batched_task_loss_refuses_the_shape_itself():
    model = column_head()
    batch = make_batch(k=5, q=5)
    state = FastWeights.of(model, detach=True).expand(batch.num_tasks)
    for trace in (False, True):
        with pytest.raises(ValueError, match=SQUEEZE):
            BatchedTaskLoss(model, broadcasting_loss, trace=trace)(state, batch.support_x, batch.support_y,
                                                                   batch.support_mask)


@pytest.mark.parametrize("name", ["protonet", "matchingnet"])
def test_metric_learners_score_one_value_per_event_whatever_the_encoder(name):
    """Their encoder gives embeddings; a one-unit encoder is a valid (tiny) embedding, not the trap."""
    torch.manual_seed(0)
    learner = build_learner(name, nn.Linear(3, 1).double())
    batch = make_batch(k=5, q=5)
    assert learner.score(learner.adapt(batch), batch.query_x).shape == batch.query_y.shape
    assert torch.isfinite(learner.meta_loss(batch))


def test_the_issue_example_raises_and_the_flattened_model_trains():
    tasks = preference_tasks(16, 5, 5, seed=0)
    torch.manual_seed(0)
    plain = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 1))
    with pytest.raises(ValueError, match="squeeze the last dimension"):
        build_learner("maml", plain).meta_loss(tasks)
    fixed = nn.Sequential(plain, nn.Flatten(-2))
    loss = build_learner("maml", fixed).meta_loss(tasks)
    assert 0.3 < float(loss.detach()) < 1.5  # a per-event loss near log 2, not the broadcast one


@pytest.mark.parametrize("loss", [masked_bce_loss, masked_mse_loss, sampled_softmax_loss])
def test_built_in_losses_refuse_mismatched_shapes(loss):
    y = torch.tensor([1.0, 0.0, 1.0])
    mask = torch.ones(3, dtype=torch.bool)
    with pytest.raises(ValueError, match=r"\(3, 1\).*\(3,\).*squeeze the last dimension"):
        loss(torch.zeros(3, 1), y, mask)
    with pytest.raises(ValueError, match="one score per event"):
        loss(torch.zeros(4), y, mask)
    with pytest.raises(ValueError, match=r"mask has shape \(2,\)"):
        loss(torch.zeros(3), y, mask[:2])
    assert torch.isfinite(loss(torch.zeros(3), y, mask))


def test_fine_tuning_and_supervised_training_refuse_a_column_head():
    model = column_head()
    batch = make_batch(k=5, q=5)
    with pytest.raises(ValueError, match=SQUEEZE):
        FineTune(model, steps=1, lr=0.1).adapt(batch)
    x = batch.support_x.reshape(-1, 3)
    with pytest.raises(ValueError, match=r"prediction has shape \(20, 1\).*squeeze"):
        train_supervised(model, x, batch.support_y.reshape(-1), disable=True)
