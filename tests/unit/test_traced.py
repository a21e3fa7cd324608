"""trace=True: the recorded forward gives the very same numbers, retraces when it must, fails clearly."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from metarec_ref.meta import (
    MAML,
    BatchedTaskLoss,
    FastWeights,
    MetaSGD,
    Reptile,
    masked_bce_loss,
)
from metarec_ref.meta import tracing
from tests.unit.helpers import EmbeddingModel, flat, make_batch, make_dict_batch, meta_grad, tiny_model


@pytest.mark.parametrize("cls, first_order", [(MAML, False), (MAML, True), (MetaSGD, False)])
@pytest.mark.parametrize("ragged", [False, True])
def test_traced_meta_gradient_equals_untraced(cls, first_order, ragged):
    batch = make_batch(ragged=ragged)
    plain = cls(tiny_model(), inner_steps=3, inner_lr=0.3, first_order=first_order)
    traced = cls(tiny_model(), inner_steps=3, inner_lr=0.3, first_order=first_order, trace=True)
    expected = flat(torch.autograd.grad(plain.meta_loss(batch), list(plain.parameters())))
    got = flat(torch.autograd.grad(traced.meta_loss(batch), list(traced.parameters())))
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-12)


def test_traced_reptile_update_equals_untraced():
    batch = make_batch()
    plain, traced = (Reptile(tiny_model(), inner_steps=3, inner_lr=0.3, trace=t) for t in (False, True))
    plain.outer_step(batch)
    traced.outer_step(batch)
    for a, b in zip(plain.parameters(), traced.parameters()):
        torch.testing.assert_close(b, a, rtol=0, atol=1e-12)


def test_traced_head_only_adaptation_still_trains_the_shared_table():
    torch.manual_seed(0)
    batch = make_dict_batch()
    plain = MAML(EmbeddingModel(), inner_steps=2, inner_lr=0.1, adapt="head")
    torch.manual_seed(0)
    traced = MAML(EmbeddingModel(), inner_steps=2, inner_lr=0.1, adapt="head", trace=True)
    expected = meta_grad(plain, batch)
    got = meta_grad(traced, batch)
    table_index = [n for n, _ in traced.model.named_parameters()].index("item.weight")
    assert got[table_index].abs().sum() > 0  # the frozen table is an input of the graph, not a constant
    torch.testing.assert_close(flat(got), flat(expected), rtol=0, atol=1e-6)
    # The table is read from the graph's inputs, so an in-place optimizer step is seen.
    with torch.no_grad():
        traced.model.item.weight.add_(1.0)
        plain.model.item.weight.add_(1.0)
    torch.testing.assert_close(flat(meta_grad(traced, batch)), flat(meta_grad(plain, batch)), rtol=0, atol=1e-6)


def test_forward_runs_once_per_signature_and_retraces_on_new_shapes_or_mode():
    torch.manual_seed(0)
    model = EmbeddingModel()
    learner = MAML(model, inner_steps=2, inner_lr=0.1, adapt="head", trace=True)
    batch = make_dict_batch()
    learner.meta_loss(batch)
    calls_after_first = len(model.seen_table_ptrs)
    assert len(learner._trace_cache) == 2  # support and query shapes differ
    learner.meta_loss(batch)
    assert len(model.seen_table_ptrs) == calls_after_first  # replayed, forward not re-run
    learner.meta_loss(make_dict_batch(tasks=5))
    assert len(learner._trace_cache) == 4
    model.eval()
    learner.meta_loss(batch)
    assert len(learner._trace_cache) == 6


def test_trace_cache_is_bounded(monkeypatch):
    monkeypatch.setattr(tracing, "MAX_TRACED_GRAPHS", 3)
    learner = MAML(tiny_model(), inner_steps=1, inner_lr=0.1, trace=True)
    for tasks in range(1, 6):
        learner.meta_loss(make_batch(tasks=tasks))
    assert len(learner._trace_cache) == 3


def test_a_deep_copy_starts_an_empty_cache_quietly_and_gives_the_same_numbers():
    import copy
    import warnings

    batch = make_batch()
    learner = MAML(tiny_model(), inner_steps=2, inner_lr=0.3, trace=True)
    expected = flat(torch.autograd.grad(learner.meta_loss(batch), list(learner.parameters())))
    assert len(learner._trace_cache) == 2
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # copying recorded graphs warned (torch's pytree specs)
        clone = copy.deepcopy(learner)
    assert len(clone._trace_cache) == 0 and len(learner._trace_cache) == 2
    got = flat(torch.autograd.grad(clone.meta_loss(batch), list(clone.parameters())))
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-12)
    assert len(clone._trace_cache) == 2  # the copy records its own graphs


class DataDependent(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(3, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.lin(x).squeeze(-1)
        return out if bool(out.sum() > 0) else -out


def test_untraceable_forward_names_the_fix():
    model = DataDependent().double()
    losses = BatchedTaskLoss(model, masked_bce_loss, trace=True)
    batch = make_batch()
    expanded = FastWeights.of(model).expand(batch.num_tasks)
    with pytest.raises(RuntimeError, match=r"DataDependent.forward.*use trace=False"):
        losses(expanded, batch.support_x, batch.support_y, batch.support_mask)


def test_drop_identity_ops_keeps_a_copy_that_is_written_in_place():
    from torch.fx.experimental.proxy_tensor import make_fx

    aten = torch.ops.aten

    def copy_then_write(x):
        y = aten.mul.Scalar(x, 1)  # a copy: y.add_ must not reach x
        y.add_(1.0)
        return aten.view.default(y, list(y.shape)) * 2  # a same-shape view: removable

    graph = make_fx(copy_then_write)(torch.zeros(3))
    assert tracing.drop_identity_ops(graph) == 1
    targets = [n.target for n in graph.graph.nodes]
    assert aten.mul.Scalar in targets and aten.view.default not in targets
    x = torch.zeros(3)
    torch.testing.assert_close(graph(x), torch.full((3,), 2.0))
    assert (x == 0).all()


def test_drop_identity_ops_keeps_a_copy_whose_source_is_written_later():
    from torch.fx.experimental.proxy_tensor import make_fx

    aten = torch.ops.aten

    def copy_then_write_source(a):
        x = a + 0.0
        y = aten.mul.Scalar(x, 1)  # the value of x before the write below
        aten.view.default(x, list(x.shape)).add_(5.0)  # writes x through a view
        return y + x

    graph = make_fx(copy_then_write_source)(torch.zeros(3))
    assert tracing.drop_identity_ops(graph) == 1  # the same-shape view, not the copy
    assert aten.mul.Scalar in [n.target for n in graph.graph.nodes]
    torch.testing.assert_close(graph(torch.ones(3)), torch.full((3,), 7.0))


def test_traced_graph_has_fewer_ops_than_the_raw_trace():
    learner = MAML(tiny_model(), inner_steps=1, inner_lr=0.1, trace=True)
    learner.meta_loss(make_batch(k=5, q=5))
    (graph,) = learner._trace_cache.graphs.values()
    from torch.fx.experimental.proxy_tensor import make_fx

    assert tracing.drop_identity_ops(graph) == 0  # already pruned once
    batch = make_batch(k=5, q=5)
    state = FastWeights.of(learner.model, detach=True).expand(batch.num_tasks)
    raw = make_fx(BatchedTaskLoss(learner.model, masked_bce_loss)._plain)(
        state.local, state.frozen, batch.support_x, batch.support_y, batch.support_mask)
    assert len(graph.graph.nodes) < len(raw.graph.nodes)
