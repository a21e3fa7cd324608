"""MAML (second and first order), Meta-SGD, Reptile: exact gradients, paths agree, no mutation, clear errors."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from metarec_ref.batch import TaskBatch
from metarec_ref.meta import (
    MAML,
    InnerLoopConfig,
    MetaSGD,
    NonFiniteInnerLoopError,
    Reptile,
    masked_bce_loss,
    select_params,
)
from tests.unit.helpers import EmbeddingModel, flat, make_batch, make_dict_batch, meta_grad, tiny_model

# ----------------------------------------------------------------- exact gradients


@pytest.mark.parametrize("batched", [True, False])
def test_second_order_meta_gradient_matches_finite_differences(batched):
    model = tiny_model()
    batch = make_batch()
    learner = MAML(model, inner_steps=2, inner_lr=0.5, batched=batched)
    analytic = flat(meta_grad(learner, batch))

    params = list(model.parameters())
    numeric = []
    eps = 1e-6
    with torch.no_grad():
        for p in params:
            for i in range(p.numel()):
                original = p.view(-1)[i].item()
                p.view(-1)[i] = original + eps
                with torch.enable_grad():
                    plus = learner.meta_loss(batch).item()
                p.view(-1)[i] = original - eps
                with torch.enable_grad():
                    minus = learner.meta_loss(batch).item()
                p.view(-1)[i] = original
                numeric.append((plus - minus) / (2 * eps))
    numeric = torch.tensor(numeric, dtype=torch.float64)
    torch.testing.assert_close(analytic, numeric, rtol=1e-6, atol=1e-8)


def test_maml_differs_from_fomaml_by_the_hessian_term():
    # One step: grad_MAML = (I - lr * H_support(theta)) grad_query(theta'), per task.
    model = tiny_model()
    batch = make_batch()
    lr = 0.5
    maml = flat(meta_grad(MAML(model, inner_steps=1, inner_lr=lr), batch))
    fomaml = flat(meta_grad(MAML(model, inner_steps=1, inner_lr=lr, first_order=True), batch))

    params = list(model.parameters())
    hessian_term = torch.zeros_like(maml)
    for t in range(batch.num_tasks):
        support_loss = masked_bce_loss(model(batch.support_x[t]), batch.support_y[t], batch.support_mask[t])
        grads = torch.autograd.grad(support_loss, params, create_graph=True)
        fast = [p - lr * g.detach() for p, g in zip(params, grads)]
        query_model = copy.deepcopy(model)
        with torch.no_grad():
            for p, f in zip(query_model.parameters(), fast):
                p.copy_(f)
        query_loss = masked_bce_loss(query_model(batch.query_x[t]), batch.query_y[t], batch.query_mask[t])
        v = torch.autograd.grad(query_loss, list(query_model.parameters()))
        hvp = torch.autograd.grad(grads, params, grad_outputs=v)  # H_support(theta) v
        hessian_term += flat(hvp) / batch.num_tasks

    torch.testing.assert_close(maml, fomaml - lr * hessian_term, rtol=1e-9, atol=1e-12)
    assert (maml - fomaml).abs().max() > 1e-4  # the term is really there


def test_fomaml_matches_hand_written_first_order():
    model = tiny_model()
    batch = make_batch(ragged=True)
    lr, steps = 0.3, 3
    learner = MAML(model, inner_steps=steps, inner_lr=lr, first_order=True)
    got = flat(meta_grad(learner, batch))

    expected = torch.zeros_like(got)
    for t in range(batch.num_tasks):
        clone = copy.deepcopy(model)
        sgd = torch.optim.SGD(clone.parameters(), lr=lr)
        for _ in range(steps):
            sgd.zero_grad()
            masked_bce_loss(clone(batch.support_x[t]), batch.support_y[t], batch.support_mask[t]).backward()
            sgd.step()
        query_loss = masked_bce_loss(clone(batch.query_x[t]), batch.query_y[t], batch.query_mask[t])
        expected += flat(torch.autograd.grad(query_loss, list(clone.parameters()))) / batch.num_tasks
    torch.testing.assert_close(got, expected, rtol=1e-9, atol=1e-12)


def _hand_adapted(model, batch, t, lr, steps):
    clone = copy.deepcopy(model)
    sgd = torch.optim.SGD(clone.parameters(), lr=lr)
    for _ in range(steps):
        sgd.zero_grad()
        masked_bce_loss(clone(batch.support_x[t]), batch.support_y[t], batch.support_mask[t]).backward()
        sgd.step()
    return [p.detach() for p in clone.parameters()]


@pytest.mark.parametrize("use_optimizer", [False, True])
def test_reptile_update_is_mean_of_adapted_minus_initial(use_optimizer):
    model = tiny_model()
    batch = make_batch(ragged=True)
    lr, steps, outer_lr = 0.2, 3, 0.5
    initial = [p.detach().clone() for p in model.parameters()]
    directions = [torch.zeros_like(p) for p in initial]
    for t in range(batch.num_tasks):
        for d, a, p in zip(directions, _hand_adapted(model, batch, t, lr, steps), initial):
            d += (a - p) / batch.num_tasks

    learner = Reptile(model, inner_steps=steps, inner_lr=lr, outer_lr=outer_lr, train_on="support")
    optimizer = torch.optim.SGD(model.parameters(), lr=outer_lr) if use_optimizer else None
    loss = learner.outer_step(batch, optimizer)
    assert isinstance(loss, float) and loss > 0
    for p, p0, d in zip(model.parameters(), initial, directions):
        torch.testing.assert_close(p.detach(), p0 + outer_lr * d, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("first_order", [False, True])
def test_meta_sgd_learning_rates_get_gradients_and_change(first_order):
    model = tiny_model()
    batch = make_batch()
    learner = MetaSGD(model, inner_steps=2, inner_lr=0.1, first_order=first_order)
    assert len(learner.inner_lrs) == len(list(model.parameters()))
    before = {k: v.detach().clone() for k, v in learner.inner_lrs.items()}
    optimizer = torch.optim.SGD(learner.parameters(), lr=0.1)
    learner.outer_step(batch, optimizer)
    for name, lr in learner.inner_lrs.items():
        assert lr.grad is not None and lr.grad.abs().sum() > 0, name
        assert not torch.equal(lr.detach(), before[name]), name
    # the learning rates are meta-parameters of the learner
    assert {id(p) for p in learner.inner_lrs.values()} <= {id(p) for p in learner.parameters()}


def test_meta_sgd_with_constant_rates_equals_maml():
    model = tiny_model()
    batch = make_batch()
    maml = flat(meta_grad(MAML(model, inner_steps=2, inner_lr=0.1), batch))
    meta_sgd = flat(meta_grad(MetaSGD(model, inner_steps=2, inner_lr=0.1), batch))
    torch.testing.assert_close(maml, meta_sgd, rtol=1e-12, atol=1e-14)


# ----------------------------------------------------------------- paths and masks


@pytest.mark.parametrize("cls, first_order", [(MAML, False), (MAML, True), (MetaSGD, False)])
@pytest.mark.parametrize("ragged", [False, True])
def test_vmap_path_equals_loop_path(cls, first_order, ragged):
    model = tiny_model()
    batch = make_batch(tasks=5, ragged=ragged)
    fast = cls(model, inner_steps=3, inner_lr=0.3, first_order=first_order, batched=True)
    slow = cls(model, inner_steps=3, inner_lr=0.3, first_order=first_order, batched=False)
    if cls is MetaSGD:
        slow.inner_lrs = fast.inner_lrs
    params = list(fast.parameters())
    got = flat(torch.autograd.grad(fast.meta_loss(batch), params))
    expected = flat(torch.autograd.grad(slow.meta_loss(batch), params))
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-6)
    torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-12)
    state_fast, state_slow = fast.adapt(batch), slow.adapt(batch)
    for name in state_fast.adapted:
        torch.testing.assert_close(state_fast.adapted[name], state_slow.adapted[name])


def test_padding_does_not_change_the_meta_gradient():
    model = tiny_model()
    batch = make_batch(tasks=1, k=5, q=6)
    padded = TaskBatch(
        torch.cat([batch.support_x, torch.zeros(1, 3, 3, dtype=torch.float64)], 1),
        torch.cat([batch.support_y, torch.ones(1, 3, dtype=torch.float64)], 1),
        torch.cat([batch.support_mask, torch.zeros(1, 3, dtype=torch.bool)], 1),
        torch.cat([batch.query_x, torch.zeros(1, 2, 3, dtype=torch.float64)], 1),
        torch.cat([batch.query_y, torch.ones(1, 2, dtype=torch.float64)], 1),
        torch.cat([batch.query_mask, torch.zeros(1, 2, dtype=torch.bool)], 1),
    )
    learner = MAML(model, inner_steps=2, inner_lr=0.3)
    torch.testing.assert_close(flat(meta_grad(learner, padded)), flat(meta_grad(learner, batch)))


# ----------------------------------------------------------------- no mutation, no copies


@pytest.mark.parametrize("cls, first_order", [(MAML, False), (MAML, True), (MetaSGD, False), (Reptile, True)])
@pytest.mark.parametrize("batched", [True, False])
def test_model_parameters_are_never_mutated(cls, first_order, batched):
    model = tiny_model()
    batch = make_batch()
    before = {k: v.detach().clone() for k, v in model.state_dict().items()}
    learner = cls(model, inner_steps=2, inner_lr=0.3, first_order=first_order, batched=batched)
    loss = learner.meta_loss(batch)
    if loss.requires_grad:
        loss.backward()
    state = learner.adapt(batch)
    logits = learner.score(state, batch.query_x)
    assert logits.shape == batch.query_y.shape
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k


def test_adapt_works_under_no_grad_and_lowers_support_loss():
    model = tiny_model()
    batch = make_batch(tasks=3, k=8)
    learner = MAML(model, inner_steps=5, inner_lr=0.5)
    with torch.no_grad():
        state = learner.adapt(batch)
        adapted = learner.score(state, batch.support_x)
        unadapted = model(batch.support_x)
    for t in range(batch.num_tasks):
        m = batch.support_mask[t]
        after = masked_bce_loss(adapted[t], batch.support_y[t], m)
        before = masked_bce_loss(unadapted[t], batch.support_y[t], m)
        assert after < before
    assert all(not v.requires_grad for v in state.adapted.values())


@pytest.mark.parametrize("batched", [True, False])
def test_head_only_adaptation_shares_embedding_tables(batched):
    torch.manual_seed(0)
    model = EmbeddingModel()
    batch = make_dict_batch()
    table = model.item.weight
    learner = MAML(model, inner_steps=2, inner_lr=0.1, adapt="head", batched=batched)
    state = learner.adapt(batch)
    assert set(state.adapted) == {n for n, _ in model.named_parameters() if n.startswith("head.")}
    assert state.frozen["item.weight"] is table
    assert all(v.shape[0] == batch.num_tasks for v in state.adapted.values())
    model.seen_table_ptrs.clear()
    loss = learner.meta_loss(batch)
    assert model.seen_table_ptrs and set(model.seen_table_ptrs) == {table.data_ptr()}
    loss.backward()
    assert table.grad is not None and table.grad.abs().sum() > 0  # the table still learns


def test_parameter_filters():
    model = EmbeddingModel()
    adapted, frozen = select_params(model, "dense")
    assert "item.weight" in frozen and "item.weight" not in adapted
    assert all(adapted[k] is dict(model.named_parameters())[k] for k in adapted)
    adapted, frozen = select_params(model, lambda name: name.endswith("bias"))
    assert adapted and all(k.endswith("bias") for k in adapted)
    adapted, frozen = select_params(model, "all")
    assert len(adapted) == len(list(model.parameters()))

    buffered = nn.Module()
    buffered.head = nn.Linear(2, 1)
    buffered.register_buffer("scale", torch.ones(1))
    _, frozen = select_params(buffered, "head")
    assert frozen["scale"] is buffered.scale


def test_config_round_trip():
    config = InnerLoopConfig(inner_steps=3, inner_lr=0.2, first_order=True, adapt="head", batched=False)
    learner = MAML(EmbeddingModel(), config=config)
    assert learner.config == config


# ----------------------------------------------------------------- errors


@pytest.mark.parametrize("kwargs, match", [
    ({"inner_steps": 0}, "inner_steps"),
    ({"inner_steps": 1.5}, "inner_steps"),
    ({"inner_lr": 0.0}, "inner_lr"),
    ({"inner_lr": -0.1}, "inner_lr"),
    ({"inner_lr": float("nan")}, "inner_lr"),
    ({"adapt": "head"}, "selects no parameter"),
    ({"adapt": lambda name: False}, "selects no parameter"),
    ({"adapt": "heads"}, "not a parameter filter"),
])
def test_bad_arguments_raise(kwargs, match):
    model = nn.Sequential(nn.Linear(3, 1))
    with pytest.raises(ValueError, match=match):
        MAML(model, **kwargs)


def test_bad_reptile_outer_lr_raises():
    with pytest.raises(ValueError, match="outer_lr"):
        Reptile(tiny_model(), outer_lr=0.0)


def _replace(batch: TaskBatch, **changes) -> TaskBatch:
    fields = {f: getattr(batch, f) for f in
              ("support_x", "support_y", "support_mask", "query_x", "query_y", "query_mask")}
    fields.update(changes)
    return TaskBatch(**fields)


def test_shape_mismatches_raise():
    learner = MAML(tiny_model())
    batch = make_batch()
    with pytest.raises(ValueError, match="trailing shape"):
        learner.meta_loss(_replace(batch, query_x=torch.randn(4, 6, 5, dtype=torch.float64)))
    with pytest.raises(ValueError, match="tasks"):
        learner.meta_loss(_replace(batch, query_x=batch.query_x[:3], query_y=batch.query_y[:3],
                                   query_mask=batch.query_mask[:3]))
    with pytest.raises(ValueError, match="leading shape"):
        learner.meta_loss(_replace(batch, support_x=batch.support_x[:, :4]))
    with pytest.raises(ValueError, match="bool"):
        learner.meta_loss(_replace(batch, support_mask=batch.support_mask.double()))
    dict_learner = MAML(EmbeddingModel())
    dict_batch = make_dict_batch()
    with pytest.raises(ValueError, match="feature keys"):
        query = {"item": dict_batch.query_x["item"]}
        dict_learner.meta_loss(_replace(dict_batch, query_x=query))
    with pytest.raises(ValueError, match="tasks"):
        learner.score(learner.adapt(batch), batch.query_x[:2])


@pytest.mark.parametrize("batched", [True, False])
def test_nan_in_inner_loss_names_step_and_task(batched):
    batch = make_batch(tasks=4)
    support_x = batch.support_x.clone()
    support_x[2, 1, 0] = float("nan")
    learner = MAML(tiny_model(), inner_steps=2, batched=batched)
    with pytest.raises(NonFiniteInnerLoopError, match=r"loss is nan at step 1 of 2 for task 2"):
        learner.meta_loss(_replace(batch, support_x=support_x))


def test_nan_gradient_with_finite_loss_names_step_and_task():
    def loss_with_nan_gradient(logits, y, mask):
        # sqrt at exactly 0: the value is 0 but its gradient is inf * 0 = nan.
        return masked_bce_loss(logits, y, mask) + torch.sqrt(((logits - logits.detach()) ** 2).sum())

    learner = MAML(tiny_model(), loss_fn=loss_with_nan_gradient, inner_steps=3)
    with pytest.raises(NonFiniteInnerLoopError, match=r"gradient of .* at step 1 of 3 for task 0"):
        learner.meta_loss(make_batch())


def test_inf_in_query_raises_and_check_can_be_disabled():
    batch = make_batch()
    query_x = batch.query_x.clone()
    query_x[3] = float("inf")
    bad = _replace(batch, query_x=query_x)
    with pytest.raises(ValueError, match="query loss .* task 3"):
        MAML(tiny_model()).meta_loss(bad)
    assert not torch.isfinite(MAML(tiny_model(), check_finite=False).meta_loss(bad))


def test_batch_on_another_device_raises():
    learner = MAML(tiny_model())
    batch = make_batch().to("meta")
    with pytest.raises(ValueError, match="batch is on meta"):
        learner.meta_loss(batch)
