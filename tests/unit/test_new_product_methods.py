"""New products: the Meta-Embedding model, the opponents, grids that bracket, the experiment end to end."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch

from metarec_ref.models.meta_embedding import MetaEmbedding
from metarec_ref.recipes.new_product_experiment import (
    META,
    META_COLD,
    NewProductConfig,
    new_product_verdicts,
    run_new_products,
    verdicts_json,
)
from metarec_ref.recipes.new_product_opponents import (
    ContentRidge,
    content_knn_scores,
    kshot_scores,
    standardise,
)
from metarec_ref.recipes.new_products import GeneratorConfig, fit_customer_tables, new_product_data
from metarec_ref.runtime import bracketed_search


def _model(n_codes: int = 6, dim: int = 3, seed: int = 0) -> MetaEmbedding:
    g = torch.Generator().manual_seed(seed)
    return MetaEmbedding(torch.randn(n_codes, dim, generator=g), torch.randn(n_codes, generator=g), 4, hidden=5)


def test_zero_warm_up_steps_are_the_generated_embedding():
    model = _model()
    v = model.generate(torch.randn(2, 4))
    assert model.warm_up(v, torch.tensor([[1, 2], [3, 0]]), steps=0) is v
    assert model.warm_up(v, torch.zeros(2, 0, dtype=torch.int64), steps=3) is v  # K = 0: nothing to warm up on


def test_warm_up_raises_the_first_buyers_scores():
    model = _model()
    v = model.generate(torch.randn(3, 4)).detach()
    support = torch.tensor([[1, 2], [3, 0], [5, 4]])
    before = model.support_loss(v, support)
    after = model.support_loss(model.warm_up(v, support, steps=3, lr=0.1), support)
    assert (after < before).all()


def test_meta_gradient_reaches_generator_and_step_sizes():
    model = _model()
    content, support = torch.randn(3, 4), torch.tensor([[1], [2], [3]])
    relevant = torch.zeros(3, 6, dtype=torch.bool)
    relevant[:, 4] = True
    warm = model.warm_up(model.generate(content), support, steps=2, create_graph=True)
    model.query_loss(warm, relevant, torch.zeros_like(relevant)).backward()
    assert model.log_lr.grad.abs().sum() > 0 and model.generator[0].weight.grad.abs().sum() > 0


def test_bad_tables_are_named():
    with pytest.raises(ValueError, match="customer_emb must be"):
        MetaEmbedding(torch.zeros(5, 3), torch.zeros(4), 2)


def test_customer_tables_rank_each_products_buyers_first():
    bought = torch.zeros(40, 21, dtype=torch.bool)
    for p in range(40):  # two groups of customers, two groups of products
        bought[p, 1 + 10 * (p % 2): 11 + 10 * (p % 2)] = torch.rand(10, generator=torch.Generator().manual_seed(p)) < 0.6
    tables = fit_customer_tables(bought, dim=4, steps=150, seed=0)
    scores = tables.product_emb @ tables.customer_emb.t() + tables.customer_bias
    group = torch.arange(21)[None, :].ge(11) == (torch.arange(40)[:, None] % 2 == 1)
    group[:, 0] = False
    inside = scores.masked_fill(~group, float("nan")).nanmean(1)
    outside = scores.masked_fill(group, float("nan"))[:, 1:].nanmean(1)
    assert (inside > outside).all()


def test_dual_ridge_equals_the_primal_solution():
    g = torch.Generator().manual_seed(1)
    c, y, new = torch.randn(12, 30, generator=g), torch.randn(12, 4, generator=g), torch.randn(3, 30, generator=g)
    ridge = ContentRidge(c)
    c64 = c.double()
    w = torch.linalg.solve(c64.t() @ c64 + 2.0 * torch.eye(30, dtype=torch.float64), c64.t() @ y.double())
    torch.testing.assert_close(ridge.predict(new, y, 2.0), (new.double() @ w).float(), rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(new @ ridge.primal(y, 2.0), ridge.predict(new, y, 2.0), rtol=1e-4, atol=1e-4)


def test_content_knn_reads_only_the_top_neighbours():
    similarity = torch.tensor([[0.9, 0.1, 0.5]])
    bought = torch.tensor([[0, 1, 0], [0, 0, 1], [0, 1, 1]], dtype=torch.float32)
    assert content_knn_scores(similarity, bought, 2).tolist() == [[0.0, pytest.approx(1.4), pytest.approx(0.5)]]


def test_kshot_blend_runs_from_the_evidence_alone_to_the_prior_alone():
    g = torch.Generator().manual_seed(2)
    similarity, prior = torch.rand(6, 6, generator=g), torch.rand(2, 6, generator=g)
    candidates = torch.ones(2, 6, dtype=torch.bool)
    candidates[:, 0] = False
    support = torch.tensor([[1, 2], [3, 0]])
    torch.testing.assert_close(kshot_scores(similarity, support, prior, candidates, math.inf), standardise(prior, candidates))
    evidence = torch.stack([similarity[1] + similarity[2], similarity[3]])
    torch.testing.assert_close(kshot_scores(similarity, support, prior, candidates, 0.0), standardise(evidence, candidates))
    z = standardise(prior, candidates)[candidates]
    assert abs(float(z.mean())) < 1e-6 and abs(float(z.reshape(2, 5).std(1, unbiased=False).mean()) - 1) < 1e-5


def test_tune_extends_a_grid_whose_optimum_lies_outside():
    # The metric peaks at 1000; the starting grid stops at 100.
    best, values, edge = bracketed_search("lambda", [1.0, 10.0, 100.0], lambda lam: -abs(math.log10(lam) - 3))
    assert best == pytest.approx(1000.0) and edge is None and max(values) == pytest.approx(10000.0)
    # Bounded: two extensions are not enough for an optimum at 1e6, and the edge is reported.
    best, _, edge = bracketed_search("lambda", [1.0, 10.0, 100.0], lambda lam: -abs(math.log10(lam) - 6), max_extensions=2)
    assert best == pytest.approx(1e4) and edge == "upper"
    # A natural bound is not extended past.
    best, values, edge = bracketed_search("n", [4, 8, 16], lambda n: -n, natural_bounds=(4, None))
    assert best == 4 and edge is None and list(values) == [4, 8, 16]
    best, values, _ = bracketed_search("n", [4, 8, 16], lambda n: -n)
    assert best == 1 and list(values) == [1, 2, 4, 8, 16]


def _shop(seed: int = 0) -> pd.DataFrame:
    """Products in three families whose descriptions name the family; customers buy their family's."""
    rng = np.random.default_rng(seed)
    families = {"100": "RED HEART", "200": "BLUE LANTERN", "300": "GREEN TEA"}
    rows, start = [], pd.Timestamp("2024-01-01")
    customers = {f: list(range(100 * i, 100 * i + 40)) for i, f in enumerate(families)}
    active = {c: rng.uniform(0.2, 1.0) for f in customers for c in customers[f]}
    for p in range(150):
        family = list(families)[p % 3]
        launch = start + pd.Timedelta(days=int(p * 2))
        item = f"{family}{p:03d}"
        text = f"{families[family]} {['MUG', 'CUP', 'BAG', 'BOX', 'SIGN'][p % 5]}"
        buyers = [c for c in customers[family] if rng.random() < 0.35 * active[c]]
        buyers += [int(c) for c in rng.choice(120, 2)]  # a little noise
        for j, c in enumerate(rng.permutation(buyers)):
            rows.append((int(c), item, launch + pd.Timedelta(hours=int(j)), text, 1.0 + p % 4))
    return pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp", "description", "price"])


def test_experiment_end_to_end_on_a_shop_where_content_names_the_buyers():
    log = _shop()
    data = new_product_data(log, [0, 2], cut="2024-07-01", n_buckets=256)
    config = NewProductConfig(n_seeds=2, table_steps=40, dim=8,
                              generator=GeneratorConfig(meta_steps=10, eval_every=5, batch_size=16))
    results = run_new_products(data, [0, 2], config)
    for k, result in results.items():
        assert result.best_opponent == max(result.opponents, key=result.valid.get)
        assert result.test[META].shape == (2, result.n_test) and result.test["activity"].shape == (1, result.n_test)
        # Content names the family, and the family names the buyers: content beats activity.
        assert np.nanmean(result.test["content-kNN"]) > np.nanmean(result.test["activity"]) + 0.1
    np.testing.assert_array_equal(results[0].test[META], results[0].test[META_COLD])  # K = 0: no warm-up
    table = new_product_verdicts(results, n_boot=200)
    assert len(table) == 3  # K = 0 has no cold comparison
    for _, row in table.iterrows():  # verdicts follow from the intervals and Holm
        raw = "better" if row["ci_low"] > 0 else "worse" if row["ci_high"] < 0 else "no detectable difference"
        assert row["verdict"] == raw
        assert row["verdict_holm"] == (raw if row["p_holm"] < 0.05 else "no detectable difference")
    out = verdicts_json(results, table)
    assert set(out) == {"K=0", "K=2"}
    for entry in out.values():
        assert {"diff", "ci_low", "ci_high", "p_holm"} <= set(entry["meta_vs_best_opponent"])
        assert {"diff", "ci_low", "ci_high", "p_holm"} <= set(entry["meta_vs_cold_generator"])
        assert entry["n_test_products"] > 0 and entry["best_opponent"] in entry["valid_ndcg"]


def test_tune_extends_up_to_a_natural_bound_and_stops_there():
    best, values, edge = bracketed_search("neighbours", [4, 8, 16], lambda n: n, natural_bounds=(1, 20))
    assert best == 20 and edge is None and list(values) == [4, 8, 16, 20]


def test_training_tasks_and_tables_read_only_purchases_before_the_cut():
    log = _shop()
    cut = pd.Timestamp("2024-07-01")
    # A training product bought again after the cut by a customer who never bought it before.
    item = "100000"
    late_buyer = int(log.loc[log["item_id"] != item, "user_id"].iloc[0])
    assert late_buyer not in set(log.loc[log["item_id"] == item, "user_id"])
    late = pd.DataFrame([{"user_id": late_buyer, "item_id": item, "timestamp": cut + pd.Timedelta(days=3),
                          "description": "CHANGED LATER", "price": 99.0}])
    data = new_product_data(pd.concat([log, late], ignore_index=True), [1], cut=cut, n_buckets=64)
    code = data.split.customers.get_loc(late_buyer) + 1
    row = data.items["train"].get_loc(item)
    assert not data.bought[row, code]  # the customer tables never see it
    tasks = data.tasks["train", 1]
    task = list(tasks.items).index(item)
    assert not tasks.relevant[task, code] and code not in tasks.support[task].tolist()
