"""CUDA versions of the model, baseline, trainer and evaluation checks (skipped without a GPU)."""

import pytest
import torch
from torch.func import functional_call, vmap

from metarec_ref.eval import FineTune, Popularity
from metarec_ref.batch import FeatureSpec
from metarec_ref.eval import per_task_metrics
from metarec_ref.meta import MAML
from metarec_ref.eval.metrics import per_task_auc, per_task_hit_rate, per_task_ndcg
from metarec_ref.models import build_model
from metarec_ref.train import MetaTrainConfig, MetaTrainer
from tests.unit.helpers import NAMES, SPEC, toy_tasks

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA"),
]


def features(lead, spec: FeatureSpec, device):
    g = torch.Generator().manual_seed(0)
    x = {
        "item": torch.randint(0, spec.n_items, lead, generator=g),
        "category": torch.randint(0, spec.n_categories, lead, generator=g),
        "scenario": torch.randint(0, spec.n_scenarios, lead, generator=g),
        "dense": torch.randn(*lead, spec.n_dense, generator=g),
    }
    return {k: v.to(device) for k, v in x.items()}


@pytest.mark.parametrize("name", NAMES)
def test_models_on_cuda_match_cpu(name):
    torch.manual_seed(0)
    model = build_model(name, SPEC, hidden=(16, 8), emb_dim=4)
    x_cpu = features((3, 5), SPEC, "cpu")
    expected = model(x_cpu)
    model_cuda = model.to("cuda")
    out = model_cuda(features((3, 5), SPEC, "cuda"))
    assert out.device.type == "cuda" and out.shape == (3, 5)
    torch.testing.assert_close(out.cpu(), expected, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("name", NAMES)
def test_vmap_functional_call_on_cuda(name):
    torch.manual_seed(0)
    model = build_model(name, SPEC, hidden=(16, 8), emb_dim=4).cuda()
    tasks = 4
    x = features((tasks, 6), SPEC, "cuda")
    fast = {n: p.detach().unsqueeze(0).repeat(tasks, *[1] * p.dim()) for n, p in model.named_parameters()}
    batched = vmap(lambda p, xt: functional_call(model, p, (xt,)))(fast, x)
    for t in range(tasks):
        one = functional_call(model, {n: v[t] for n, v in fast.items()}, ({k: v[t] for k, v in x.items()},))
        torch.testing.assert_close(batched[t], one)


def test_metrics_on_cuda_match_cpu():
    g = torch.Generator().manual_seed(0)
    scores = torch.randn(10, 50, generator=g)
    labels = (torch.rand(10, 50, generator=g) < 0.3)
    cand = torch.rand(10, 50, generator=g) < 0.9
    for fn, args in [
        (per_task_auc, (scores, labels.float(), cand)),
        (per_task_ndcg, (scores, labels, cand)),
        (per_task_hit_rate, (scores, labels, cand)),
    ]:
        cpu = fn(*args)
        cuda = fn(*[a.cuda() for a in args])
        torch.testing.assert_close(cuda.cpu(), cpu, equal_nan=True)


def test_meta_training_and_evaluation_on_cuda(world):
    train, val = toy_tasks(100, seed=1, world=world), toy_tasks(30, seed=2, world=world)
    torch.manual_seed(0)
    learner = MAML(build_model("wide_deep", SPEC, hidden=(16,), emb_dim=4), inner_lr=0.1).cuda()
    config = MetaTrainConfig(meta_batch_size=8, outer_lr=0.01, meta_steps=20, eval_every=10, patience=None)
    history = MetaTrainer(learner, train, val, config, disable=True).fit()  # tasks moved to CUDA inside
    assert history["val_loss"].notna().all()
    assert next(learner.parameters()).device.type == "cuda"
    values = per_task_metrics(learner, val)  # val is on the CPU: moved to the learner's device
    assert values["auc"].shape == (30,)
    tuned = FineTune(learner.model, steps=2, lr=0.1)
    state = tuned.adapt(val.to("cuda"))
    assert state.adapted["head.weight"].device.type == "cuda"
    pop = Popularity.fit(train.to("cuda"), SPEC.n_items)
    assert pop.score(None, val.to("cuda").query_x).device.type == "cuda"
