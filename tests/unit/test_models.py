"""Base models: shapes, functional_call + vmap equal to a loop, parameter naming, learning."""

import pytest
import torch
from torch.func import functional_call, grad, vmap

from metarec_ref.batch import FeatureSpec
from metarec_ref.models import MLP, EventEncoder, MeLU, WideAndDeep, XDeepFM, build_model
from tests.unit.helpers import MODELS_SPEC, NAMES, features


def small(name, spec=MODELS_SPEC):
    torch.manual_seed(0)
    return build_model(name, spec, hidden=(16, 8), emb_dim=4)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("lead", [(7,), (3, 5), (2, 3, 4)])
def test_output_has_input_leading_shape(name, lead):
    model = small(name)
    out = model(features(lead))
    assert out.shape == lead and out.dtype == torch.float32
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("name", NAMES)
def test_flattened_and_batched_inputs_agree(name):
    model = small(name)
    x = features((3, 5))
    flat = {k: v.reshape(15, *v.shape[2:]) for k, v in x.items()}
    torch.testing.assert_close(model(x).reshape(15), model(flat))


@pytest.mark.parametrize("name", NAMES)
def test_naming_convention_head_and_embeddings(name):
    model = small(name)
    names = [n for n, _ in model.named_parameters()]
    assert any(n.startswith("head.") for n in names)
    assert any(isinstance(m, torch.nn.Embedding) for m in model.modules())
    assert not any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in model.modules())


@pytest.mark.parametrize("name", NAMES)
def test_vmap_functional_call_over_task_params_equals_loop(name):
    model = small(name)
    tasks = 4
    x = features((tasks, 6))
    y = (torch.rand(tasks, 6, generator=torch.Generator().manual_seed(1)) < 0.5).float()
    params = {n: p.detach() for n, p in model.named_parameters()}
    # Per-task fast weights: a different perturbation of every parameter for each task.
    g = torch.Generator().manual_seed(2)
    fast = {n: p.unsqueeze(0) + 0.01 * torch.randn(tasks, *p.shape, generator=g) for n, p in params.items()}

    def loss(p, xt, yt):
        return torch.nn.functional.binary_cross_entropy_with_logits(functional_call(model, p, (xt,)), yt)

    batched_out = vmap(lambda p, xt: functional_call(model, p, (xt,)))(fast, x)
    batched_grad = vmap(grad(loss))(fast, x, y)
    for t in range(tasks):
        p_t = {n: v[t] for n, v in fast.items()}
        xt = {k: v[t] for k, v in x.items()}
        torch.testing.assert_close(batched_out[t], functional_call(model, p_t, (xt,)))
        g_t = grad(loss)(p_t, xt, y[t])
        for n in params:
            torch.testing.assert_close(batched_grad[n][t], g_t[n], atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("name", NAMES)
def test_functional_call_does_not_mutate_module(name):
    model = small(name)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    fast = {n: p + 1.0 for n, p in model.named_parameters()}
    functional_call(model, fast, (features((5,)),)).sum().backward()
    for n, p in model.named_parameters():
        assert torch.equal(p, before[n])


def test_mlp_from_input_dim_for_tensors():
    torch.manual_seed(0)
    model = MLP(in_dim=3, hidden=(8,))
    assert model(torch.randn(4, 3)).shape == (4,)
    assert model(torch.randn(2, 4, 3)).shape == (2, 4)
    assert MLP(3)(torch.randn(5, 3)).shape == (5,)
    with pytest.raises(ValueError, match="in_dim=3"):
        model(torch.randn(4, 5))
    with pytest.raises(ValueError, match="exactly one"):
        MLP()


def test_bad_inputs_raise_clear_errors():
    model = small("wide_deep")
    x = features((4,))
    del x["dense"]
    with pytest.raises(ValueError, match="missing \\['dense'\\]"):
        model(x)
    with pytest.raises(ValueError, match="feature dict"):
        model(torch.randn(4, 3))
    x = features((4,))
    x["dense"] = torch.randn(4, 5)
    with pytest.raises(ValueError, match="n_dense=2"):
        model(x)
    with pytest.raises(ValueError, match="unknown model"):
        build_model("bert", MODELS_SPEC)


def test_melu_adapts_decision_layers_only():
    model = MeLU(MODELS_SPEC, emb_dim=4, hidden=(8, 8))
    adapted = [n for n, _ in model.named_parameters() if MeLU.adapted_parameter(n)]
    assert adapted and all(n.startswith(("decision.", "head.")) for n in adapted)
    assert not any(n.startswith("embeddings.") for n in adapted)


def test_models_without_dense_features():
    spec = FeatureSpec(n_items=10, n_categories=3, n_scenarios=2, n_dense=0)
    for name in NAMES:
        assert small(name, spec)(features((2, 3), spec)).shape == (2, 3)


def test_xdeepfm_cin_captures_an_explicit_cross():
    # Label = item parity XOR scenario: a pure interaction; CIN + DNN should fit it.
    torch.manual_seed(0)
    spec = FeatureSpec(n_items=20, n_categories=2, n_scenarios=2, n_dense=1)
    x = features((400,), spec, seed=3)
    y = ((x["item"] % 2) ^ x["scenario"]).float()
    model = XDeepFM(spec, emb_dim=8, cin_layers=(8,), hidden=(16,))
    opt = torch.optim.Adam(model.parameters(), lr=0.02)
    for _ in range(150):
        opt.zero_grad()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(model(x), y)
        loss.backward()
        opt.step()
    acc = ((model(x) > 0).float() == y).float().mean()
    assert acc > 0.95


def test_wide_part_memorises_item_scenario_cross():
    # A random label per (item, scenario) pair: only the crossed ids can memorise it.
    torch.manual_seed(0)
    spec = FeatureSpec(n_items=20, n_categories=2, n_scenarios=3, n_dense=1)
    model = WideAndDeep(spec, hidden=(8,), emb_dim=4, cross_buckets=997)
    x = features((600,), spec, seed=4)
    pair_label = torch.randint(0, 2, (20, 3), generator=torch.Generator().manual_seed(5)).float()
    y = pair_label[x["item"], x["scenario"]]
    wide_params = [p for n, p in model.named_parameters() if n.startswith("wide_")]
    opt = torch.optim.Adam(wide_params, lr=0.1)
    for _ in range(200):
        opt.zero_grad()
        flat = {k: v for k, v in x.items()}
        torch.nn.functional.binary_cross_entropy_with_logits(model.wide(flat), y).backward()
        opt.step()
    acc = ((model.wide(x) > 0).float() == y).float().mean()
    assert acc > 0.95


def test_event_encoder_embeds_with_leading_shape():
    torch.manual_seed(0)
    encoder = EventEncoder(MODELS_SPEC, hidden=(8,), out_dim=5, emb_dim=4)
    assert encoder(features((7,))).shape == (7, 5)
    assert encoder(features((2, 3))).shape == (2, 3, 5)
