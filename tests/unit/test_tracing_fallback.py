"""trace="auto" (the default): recurring shapes are traced, a forward that cannot be traced runs untraced with one warning."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn
from torch.fx.experimental.proxy_tensor import get_proxy_mode

from metarec_ref.batch import TaskBatch
from metarec_ref.meta import MAML, InnerLoopConfig, tracing
from metarec_ref.meta.trace_cache import TRACE_AFTER


class Untraceable(nn.Module):
    """A forward that refuses to be recorded (as one reading Python state from its tensors would)."""

    def __init__(self):
        super().__init__()
        self.net = nn.Linear(3, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if get_proxy_mode() is not None:
            raise RuntimeError("this forward cannot be traced")
        return self.net(x).squeeze(-1)


def make_batch(tasks: int = 3, k: int = 4) -> TaskBatch:
    gen = torch.Generator().manual_seed(0)
    return TaskBatch(torch.randn(tasks, k, 3, generator=gen, dtype=torch.float64), torch.ones(tasks, k, dtype=torch.float64),
                     torch.ones(tasks, k, dtype=torch.bool), torch.randn(tasks, k, 3, generator=gen, dtype=torch.float64),
                     torch.zeros(tasks, k, dtype=torch.float64), torch.ones(tasks, k, dtype=torch.bool))


def traced_graphs(learner: MAML) -> list:
    return list(learner._trace_cache.graphs)


def test_tracing_is_the_default_for_shapes_that_recur():
    assert InnerLoopConfig().trace == "auto"
    torch.manual_seed(0)
    learner = MAML(nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 1), nn.Flatten(-2)).double(), inner_steps=1)
    reference = MAML(learner.model, inner_steps=1, trace=False)
    batch = make_batch()
    losses = []
    for _ in range(TRACE_AFTER + 1):
        losses.append(learner.meta_loss(batch))
    assert traced_graphs(learner)  # recorded once the shapes recurred
    learner.meta_loss(make_batch(tasks=5))  # a one-off shape is not traced
    assert len(traced_graphs(learner)) == len(set(traced_graphs(learner)))
    for loss in losses:
        torch.testing.assert_close(loss, reference.meta_loss(batch), atol=0, rtol=0)


@pytest.mark.parametrize("trace", [True, "auto"])
def test_a_forward_that_cannot_be_traced_falls_back_with_one_warning(trace):
    torch.manual_seed(0)
    model = Untraceable().double()
    learner = MAML(model, inner_steps=2, trace=trace)
    reference = MAML(model, inner_steps=2, trace=False).meta_loss(make_batch())
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        results = [learner.meta_loss(make_batch()) for _ in range(TRACE_AFTER + 1)]
    messages = [str(w.message) for w in caught if "could not trace" in str(w.message)]
    assert len(messages) <= 1 and traced_graphs(learner) == []
    for result in results:
        torch.testing.assert_close(result, reference, atol=0, rtol=0)


def test_the_fallback_warning_says_why_and_how_to_silence_it():
    tracing._warned_untraceable.discard("Untraceable")
    learner = MAML(Untraceable().double(), trace=True)
    with pytest.warns(UserWarning, match=r"could not trace Untraceable.forward .*cannot be traced.*trace=False"):
        learner.meta_loss(make_batch())


def test_trace_option_is_checked():
    with pytest.raises(ValueError, match="trace must be True, False or 'auto'"):
        InnerLoopConfig(trace="yes")
