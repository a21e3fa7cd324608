"""Row-wise fast weights on CUDA: the same meta-gradients as the dense path and as the CPU."""

from __future__ import annotations

import pytest
import torch

from metarec_ref.meta import MAML
from metarec_ref.models import MeLU, WideAndDeep, XDeepFM
from tests.unit.test_sparse_embedding import make_batch, meta_grads, model_of

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA"),
]


@pytest.mark.parametrize("cls", [MeLU, WideAndDeep, XDeepFM])
@pytest.mark.parametrize("batched, trace, first_order", [(True, False, False), (True, True, False),
                                                          (False, False, False), (True, "auto", True)])
def test_row_wise_meta_gradient_on_cuda_equals_dense_and_cpu(cls, batched, trace, first_order):
    options = {"inner_steps": 2, "inner_lr": 0.5, "batched": batched, "trace": trace, "first_order": first_order}
    cpu_batch = make_batch()
    cpu = meta_grads(MAML(model_of(cls), sparse_min_rows=0, **options), cpu_batch)
    model = model_of(cls).cuda()
    batch = cpu_batch.to("cuda")
    sparse = MAML(model, sparse_min_rows=0, **options)
    state = sparse.adapt(batch)
    assert state.rows and all(r.device.type == "cuda" for r in state.rows.values())
    grads = meta_grads(sparse, batch)
    dense = meta_grads(MAML(model, sparse_min_rows=0, sparse_embeddings=False, **options), batch)
    for g, d, c in zip(grads, dense, cpu):
        assert g.device.type == "cuda"
        torch.testing.assert_close(g, d, atol=1e-12, rtol=1e-10)
        torch.testing.assert_close(g.cpu(), c, atol=1e-10, rtol=1e-8)


def test_scores_on_cuda_match_the_cpu():
    batch = make_batch()
    learner = MAML(model_of(MeLU), sparse_min_rows=0, inner_steps=2)
    expected = learner.score(learner.adapt(batch), batch.query_x)
    learner = learner.cuda()
    on_cuda = learner.score(learner.adapt(batch.to("cuda")), batch.to("cuda").query_x)
    torch.testing.assert_close(on_cuda.cpu(), expected, atol=1e-10, rtol=1e-8)
