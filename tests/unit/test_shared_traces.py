"""One trace cache for learners whose models are built alike: each shape is traced once, the numbers
are those of a learner with its own cache, and a model of another structure is refused."""

from __future__ import annotations

import io

import pytest
import torch
from torch import nn

from metarec_ref.meta import MAML, MetaSGD, masked_bce_loss
from metarec_ref.meta.trace_cache import TraceCache, model_structure
from tests.unit.helpers import EmbeddingModel, flat, make_batch, make_dict_batch, meta_grad, tiny_model


class Scaled(nn.Module):
    """A linear scorer whose forward reads a plain attribute: traced graphs hold it as a constant."""

    def __init__(self, scale: float):
        super().__init__()
        self.scale = scale
        self.linear = nn.Linear(3, 1).double()

    def forward(self, x):
        return self.linear(x).squeeze(-1) * self.scale


@pytest.mark.parametrize("cls", [MAML, MetaSGD])
def test_learners_sharing_a_cache_trace_once_and_give_their_own_numbers(cls):
    batch = make_batch()
    shared = TraceCache()
    first = cls(tiny_model(seed=0), inner_steps=2, inner_lr=0.3, trace=True, trace_cache=shared)
    meta_grad(first, batch)
    recorded = list(shared.graphs.values())
    assert len(recorded) == 2  # support and query shapes
    second = cls(tiny_model(seed=1), inner_steps=3, inner_lr=0.1, trace=True, trace_cache=shared)
    alone = cls(tiny_model(seed=1), inner_steps=3, inner_lr=0.1, trace=True)
    got, expected = flat(meta_grad(second, batch)), flat(meta_grad(alone, batch))
    assert list(shared.graphs.values()) == recorded  # the second learner replayed the first one's graphs
    assert len(alone._trace_cache) == 2
    torch.testing.assert_close(got, expected, rtol=0, atol=0)


def test_a_shared_cache_serves_frozen_tables_read_from_the_fast_weights():
    batch, shared = make_dict_batch(), TraceCache()
    torch.manual_seed(0)
    meta_grad(MAML(EmbeddingModel(), inner_steps=2, inner_lr=0.1, adapt="head", trace=True, trace_cache=shared), batch)
    torch.manual_seed(1)
    second = MAML(EmbeddingModel(), inner_steps=2, inner_lr=0.1, adapt="head", trace=True, trace_cache=shared)
    torch.manual_seed(1)
    alone = MAML(EmbeddingModel(), inner_steps=2, inner_lr=0.1, adapt="head", trace=True)
    torch.testing.assert_close(flat(meta_grad(second, batch)), flat(meta_grad(alone, batch)), rtol=0, atol=0)


def test_a_model_of_another_structure_or_loss_is_refused():
    shared = TraceCache()
    MAML(tiny_model(), trace_cache=shared)
    with pytest.raises(ValueError, match="another model or loss"):
        MAML(EmbeddingModel(), trace_cache=shared)
    with pytest.raises(ValueError, match="another model or loss"):
        MAML(tiny_model(), loss_fn=lambda pred, y, mask: masked_bce_loss(pred, y, mask), trace_cache=shared)
    scaled = TraceCache()
    MAML(Scaled(1.0), trace_cache=scaled)
    with pytest.raises(ValueError, match="another model or loss"):  # same shapes, another constant
        MAML(Scaled(2.0), trace_cache=scaled)


def test_a_model_with_buffers_is_refused():
    model = tiny_model()
    model.register_buffer("offset", torch.zeros(1, dtype=torch.float64))
    with pytest.raises(ValueError, match="buffers.*own trace cache"):
        MAML(model, trace_cache=TraceCache())


def test_a_saved_learner_carries_an_empty_cache():
    shared = TraceCache()
    learner = MAML(tiny_model(), inner_steps=2, inner_lr=0.3, trace=True, trace_cache=shared)
    meta_grad(learner, make_batch())
    buffer = io.BytesIO()
    torch.save(learner, buffer)
    copy = torch.load(io.BytesIO(buffer.getvalue()), weights_only=False)
    assert len(shared) == 2 and len(copy._trace_cache) == 0 and copy._trace_cache.structure is None
    assert all(torch.equal(a, b) for a, b in zip(learner.parameters(), copy.parameters()))


def test_structure_names_sizes_and_plain_attributes():
    assert model_structure(tiny_model(seed=0), masked_bce_loss) == model_structure(tiny_model(seed=1), masked_bce_loss)
    assert model_structure(Scaled(1.0), masked_bce_loss) != model_structure(Scaled(2.0), masked_bce_loss)
