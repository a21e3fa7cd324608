"""The residual meta-learner: zero inner steps are the classical score, adaptation helps where it must."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from metarec_ref.data import Encoders, generate, validate_events
from metarec_ref.eval import EASE, ItemKNN, RecentPopularity
from metarec_ref.eval.metrics import per_task_ndcg
from metarec_ref.models import ResidualMixture, listwise_nll
from metarec_ref.recipes import ClassicalBaselines, ClassicalGrid
from metarec_ref.recipes.residual_meta import (
    RankingTasks,
    ResidualConfig,
    ScorerBank,
    feature_scale,
    first_products_tasks,
    fit_sharpness,
    residual_metrics,
)
from metarec_ref.recipes.residual_protocols import (
    ResidualExperiment,
    ScorerFits,
    protocol_data,
    run_residual_cell,
    split_customers,
)


@pytest.fixture(scope="module")
def shop():
    events = validate_events(generate(n_users=300, n_items=60, n_interactions=6000, seed=1).events)
    encoders = Encoders.fit(events)
    knn = ItemKNN.fit(events, encoders, shrinkage=5.0, neighbors=None)
    ease = EASE.fit(events, encoders, lam=50.0)
    recent = RecentPopularity.fit(events, encoders, window_days=30)
    popularity = RecentPopularity.fit(events, encoders, window_days=None)
    bank = ScorerBank.from_methods(knn, ease, recent, popularity)
    tasks = first_products_tasks(events, encoders, 3, 10)
    return events, encoders, bank, tasks


def test_zero_steps_reproduce_each_classical_score_exactly(shop):
    _, _, bank, tasks = shop
    features = bank.features(tasks.support, tasks.support_mask)
    expected = [bank.item_item[0].catalogue_scores(tasks.support, tasks.support_mask),
                bank.item_item[1].catalogue_scores(tasks.support, tasks.support_mask),
                bank.vectors[0].expand(tasks.num_tasks, -1), bank.vectors[1].expand(tasks.num_tasks, -1)]
    scale = feature_scale(features, tasks.candidates)
    for j, target in enumerate(expected):
        base = torch.zeros(4)
        base[j] = 1.0
        torch.manual_seed(j)
        model = ResidualMixture(base, scale, bank.n_items, emb_dim=8)  # random embeddings: still exact
        delta, user = model.adapt(*bank.loo_inputs(tasks), steps=0)
        assert torch.equal(model.scores(features, delta, user), target.float())


def test_zero_steps_reproduce_a_mixture_exactly(shop):
    _, _, bank, tasks = shop
    features = bank.features(tasks.support, tasks.support_mask)
    weights = torch.tensor([0.7, 2.0, 0.1, 0.05])
    model = ResidualMixture(weights, torch.ones(4), bank.n_items, emb_dim=4)
    expected = (features * weights).sum(-1)
    assert torch.equal(model.scores(features, *model.adapt(*bank.loo_inputs(tasks), steps=0)), expected)
    # Metrics at zero steps are those of the mixture itself.
    direct = per_task_ndcg(expected, tasks.relevant, tasks.candidates, k=10)
    torch.testing.assert_close(residual_metrics(model, bank, tasks, 0)["ndcg@10"], direct, equal_nan=True)


def test_sharpness_leaves_zero_steps_exact_and_scales_only_the_losses(shop):
    _, _, bank, tasks = shop
    features = bank.features(tasks.support, tasks.support_mask)
    weights = torch.tensor([0.0, 1.0, 0.0, 0.0])
    plain = ResidualMixture(weights, torch.ones(4), bank.n_items, emb_dim=4)
    sharp = ResidualMixture(weights, torch.ones(4), bank.n_items, emb_dim=4, sharpness=300.0)
    zero = sharp.zero_state(tasks.num_tasks)
    assert torch.equal(sharp.scores(features, *zero), plain.scores(features, *zero))
    exclude = ~tasks.candidates
    torch.testing.assert_close(float(sharp.query_loss(features, tasks.relevant, exclude, *zero)),
                               float(listwise_nll(300.0 * (features * weights).sum(-1), tasks.relevant, exclude)
                                     [(tasks.relevant & tasks.candidates).any(1)].mean()))
    with pytest.raises(ValueError, match="sharpness must be a positive number"):
        ResidualMixture(weights, torch.ones(4), bank.n_items, sharpness=0.0)


def test_fit_sharpness_turns_a_raw_unit_base_into_informative_logits(shop):
    # EASE's weights are about 1e-3: in raw units its softmax over the catalogue is nearly uniform,
    # so a listwise loss rewards contrast, not ranking. The fitted scale restores an informative loss.
    _, _, bank, tasks = shop
    base = torch.tensor([0.0, 1e-3, 0.0, 0.0])
    features = bank.features(tasks.support, tasks.support_mask)
    has = (tasks.relevant & tasks.candidates).any(1)

    def nll(t):
        return float(listwise_nll(t * (features * base).sum(-1), tasks.relevant, ~tasks.candidates)[has].mean())

    uniform = float(torch.log(tasks.candidates.sum(1).double())[has].mean())
    t = fit_sharpness(base, bank, tasks)
    assert abs(nll(1.0) - uniform) < 0.01  # raw units: no better than a uniform guess
    assert t > 10 and nll(t) < nll(1.0) - 0.05
    assert nll(t) <= min(nll(t / 10 ** 0.25), nll(t * 10 ** 0.25))  # a minimum on the grid, not an edge
    with pytest.raises(ValueError, match="no task has a query item"):
        fit_sharpness(base, bank, RankingTasks(tasks.support, tasks.candidates, torch.zeros_like(tasks.relevant)))


def _meta_train_step_sizes(model, optimizer, make_tasks, steps: int) -> None:
    """Outer Adam steps on one inner step's query loss, a fresh meta-batch of 32 tasks each."""
    for step in range(steps):
        features, candidates, relevant, loo = make_tasks(32, seed=step)
        delta, user = model.adapt(*loo, steps=1, create_graph=True)
        loss = model.query_loss(features, relevant, ~candidates, delta, user)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()


def test_meta_sgd_learns_to_stay_put_where_the_support_misleads():
    # The support is scorer 0's top items, the query scorer 1's: a step towards the support hurts,
    # and meta-training must shrink the step sizes until one step no longer costs anything.
    torch.manual_seed(0)

    def misleading(n_tasks, seed, n_items=40, k=3, n_query=5):
        g = torch.Generator().manual_seed(seed)
        features = torch.randn(n_tasks, n_items, 2, generator=g)
        support = features[..., 0].topk(k, dim=1).indices
        candidates = torch.ones(n_tasks, n_items, dtype=torch.bool).scatter(1, support, False)
        query = features[..., 1].masked_fill(~candidates, -1e9).topk(n_query, dim=1).indices
        relevant = torch.zeros_like(candidates).scatter(1, query, True)
        targets = torch.zeros(n_tasks, k, n_items, dtype=torch.bool).scatter(2, support[..., None], True)
        exclude = (~candidates)[:, None].expand(-1, k, -1) & ~targets
        loo = (features[:, None].expand(-1, k, -1, -1), targets, exclude, torch.ones(n_tasks, k, dtype=torch.bool))
        return features, candidates, relevant, loo

    model = ResidualMixture(torch.tensor([0.0, 1.0]), torch.ones(2), 40, emb_dim=0, init_lr=0.5, sharpness=3.0)
    test = misleading(200, seed=1000)
    before = _ndcg(model, *test, steps=1) - _ndcg(model, *test, steps=0)
    optimizer = torch.optim.Adam([model.log_lr_delta], lr=0.2)
    _meta_train_step_sizes(model, optimizer, misleading, 80)
    after = _ndcg(model, *test, steps=1) - _ndcg(model, *test, steps=0)
    assert before < -0.05, before  # untrained, one step hurts
    assert float(model.step_sizes()["delta"][0]) < 0.05  # the step towards the support shrank from 0.5
    assert after > before / 10, (before, after)  # and now costs a tenth of it at most


def _toy(n_tasks: int, seed: int, n_items: int = 40, k: int = 3, n_query: int = 5):
    """Each customer follows one of two scorers: support and query are that scorer's top items."""
    g = torch.Generator().manual_seed(seed)
    features = torch.randn(n_tasks, n_items, 2, generator=g)
    prefers = torch.arange(n_tasks) % 2
    own = features.gather(2, prefers[:, None, None].expand(-1, n_items, 1)).squeeze(-1)
    top = own.topk(k + n_query, dim=1).indices
    support, query = top[:, :k], top[:, k:]
    candidates = torch.ones(n_tasks, n_items, dtype=torch.bool).scatter(1, support, False)
    relevant = torch.zeros_like(candidates).scatter(1, query, True)
    loo_targets = torch.zeros(n_tasks, k, n_items, dtype=torch.bool).scatter(2, support[..., None], True)
    loo_exclude = (~candidates)[:, None].expand(-1, k, -1) & ~loo_targets
    loo = (features[:, None].expand(-1, k, -1, -1), loo_targets, loo_exclude, torch.ones(n_tasks, k, dtype=torch.bool))
    return features, candidates, relevant, loo


def _ndcg(model, features, candidates, relevant, loo, steps):
    delta, user = model.adapt(*loo, steps=steps)
    scores = model.scores(features, delta, user).detach()
    return float(per_task_ndcg(scores, relevant, candidates, k=5).mean())


def test_meta_sgd_learns_to_trust_the_support_where_it_helps():
    torch.manual_seed(0)
    model = ResidualMixture(torch.tensor([0.5, 0.5]), torch.ones(2), 40, emb_dim=2, init_lr=0.01)
    optimizer = torch.optim.Adam([model.log_lr_delta, model.log_lr_user], lr=0.1)
    _meta_train_step_sizes(model, optimizer, _toy, 40)
    assert float(model.step_sizes()["delta"].min()) > 0.1  # grew from 0.01: the support is worth trusting
    test = _toy(200, seed=1000)
    unadapted, adapted = _ndcg(model, *test, steps=0), _ndcg(model, *test, steps=1)
    assert adapted > unadapted + 0.1, (unadapted, adapted)


def test_outer_gradient_matches_finite_differences():
    features, candidates, relevant, loo = _toy(4, seed=3, n_items=12, k=2, n_query=3)
    features = features.double()
    loo = (loo[0].double(), *loo[1:])
    model = ResidualMixture(torch.tensor([0.3, 0.6]), torch.ones(2), 12, emb_dim=2, init_lr=0.2).double()

    def loss() -> torch.Tensor:
        delta, user = model.adapt(*loo, steps=2, create_graph=True)
        return model.query_loss(features, relevant, ~candidates, delta, user)

    (grad,) = torch.autograd.grad(loss(), model.log_lr_delta)
    eps = 1e-6
    for i in range(2):
        with torch.no_grad():
            model.log_lr_delta[i] += eps
        up = float(loss())
        with torch.no_grad():
            model.log_lr_delta[i] -= 2 * eps
        down = float(loss())
        with torch.no_grad():
            model.log_lr_delta[i] += eps
        assert abs((up - down) / (2 * eps) - float(grad[i])) < 1e-6


def test_listwise_nll_ignores_excluded_items():
    scores = torch.tensor([[0.0, 5.0, 0.0]])
    targets = torch.tensor([[True, False, False]])
    nll = listwise_nll(scores, targets, torch.tensor([[False, True, False]]))
    torch.testing.assert_close(nll, torch.tensor([np.log(2.0)], dtype=torch.float32))


def test_first_products_tasks_support_then_new_products():
    events = pd.DataFrame({"user_id": [1] * 6 + [2] * 3, "item_id": [10, 10, 11, 12, 11, 13, 10, 11, 12],
                           "timestamp": pd.date_range("2024-01-01", periods=9, freq="h")})
    encoders = Encoders.fit(events)
    tasks = first_products_tasks(events, encoders, 2, 5)
    assert tasks.num_tasks == 2
    codes = encoders.encode_items([10, 11, 12, 13])
    assert tasks.support[0].tolist() == list(codes[:2]) and tasks.support[1].tolist() == list(codes[:2])
    assert set(tasks.relevant[0].nonzero().flatten().tolist()) == set(codes[2:])  # 11 again is no query item
    assert not (tasks.candidates & torch.zeros_like(tasks.candidates).scatter(1, tasks.support, True)).any()
    with pytest.raises(ValueError, match="column 'timestamp'"):
        first_products_tasks(events.drop(columns="timestamp"), encoders, 2, 5)


def test_split_customers_is_a_partition():
    events = pd.DataFrame({"user_id": np.repeat(np.arange(100), 2), "item_id": 1})
    parts = split_customers(events, seed=0)
    users = [set(p["user_id"]) for p in parts]
    assert [len(u) for u in users] == [80, 10, 10]
    assert not (users[0] & users[1]) and not (users[1] & users[2]) and not (users[0] & users[2])


def test_a_cell_never_falls_below_its_unadapted_self_on_validation(shop):
    events = shop[0]
    data = protocol_data(events, "heldout", seed=0)
    experiment = ResidualExperiment(grid=ClassicalGrid((5.0,), (50.0,), (30, None)), n_seeds=2, n_boot=200,
                                    residual=ResidualConfig(meta_steps=6, eval_every=3, meta_batch_size=8))
    classical = ClassicalBaselines.fit(data.train, data.encoders, experiment.grid)
    cell = run_residual_cell(data, "next_products", 3, classical, ScorerFits(data.fit_events, data.encoders), experiment)
    chosen = cell.chosen
    by_steps = chosen["val_ndcg_by_steps"]
    assert by_steps[chosen["inner_steps"]] == max(by_steps.values())
    assert cell.values["meta"]["ndcg@10"].shape == (2, chosen["n_test"])
    for cmp in cell.comparisons.values():
        assert cmp["ci_low"] <= cmp["diff"] <= cmp["ci_high"]
    if chosen["inner_steps"] == 0:  # falling back means exactly the unadapted score
        assert cell.comparisons["meta_vs_unadapted"]["diff"] == 0.0
    # The reference is chosen before the test customers are scored: the scorer best on validation.
    singles = chosen["val_ndcg_singles"]
    assert cell.comparisons["meta_vs_best_classical"]["reference"] == max(singles, key=singles.get)


def test_a_customer_without_known_support_items_adapts_to_nothing(shop):
    _, _, bank, tasks = shop
    tasks = tasks.select(slice(0, 4))
    tasks.support[0] = 0  # every support item unknown
    model = ResidualMixture(torch.tensor([1.0, 0.0, 0.0, 0.0]), torch.ones(4), bank.n_items, emb_dim=4, init_lr=0.5)
    delta, user = model.adapt(*bank.loo_inputs(tasks), steps=2, create_graph=True)
    assert torch.isfinite(delta).all() and torch.isfinite(user).all()
    assert torch.equal(delta[0], torch.zeros(4)) and torch.equal(user[0], torch.zeros(4))
