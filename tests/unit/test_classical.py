"""Item-kNN, EASE and recent popularity against hand-computed examples; tuning; evaluation."""

import numpy as np
import pandas as pd
import pytest
import torch

from metarec_ref.batch import TaskBatch
from metarec_ref.eval import EASE, ItemKNN, RecentPopularity, cooccurrence, tune_hyperparameter
from metarec_ref.eval.classical import encode_events, support_items
from metarec_ref.data import Encoders
from metarec_ref.eval import EvalTasks, evaluate

# Users 0..2 over item codes 1..3 (code 0 = unknown): u0 {1, 2}, u1 {1, 3}, u2 {3} (bought twice).
USERS = [0, 0, 1, 1, 2, 2]
ITEMS = [1, 2, 1, 3, 3, 3]


def one_task(support, labels, candidates):
    """A single task: support items with labels, query = candidates (all labelled 1)."""
    s = torch.tensor([support])
    q = torch.tensor([candidates])
    x = lambda items: {"item": items}  # noqa: E731
    return TaskBatch(x(s), torch.tensor([labels], dtype=torch.float32), torch.ones_like(s, dtype=torch.bool),
                     x(q), torch.ones(q.shape), torch.ones_like(q, dtype=torch.bool))


def test_cooccurrence_counts_users_once_per_pair():
    gram = cooccurrence((USERS, ITEMS), n_items=4)
    expected = torch.tensor([[0, 0, 0, 0], [0, 2, 1, 1], [0, 1, 1, 0], [0, 1, 0, 2]], dtype=torch.float64)
    assert torch.equal(gram, expected)


def test_item_knn_cosine_with_shrinkage_by_hand():
    gram = cooccurrence((USERS, ITEMS), n_items=4)
    sim = ItemKNN.similarity(gram, shrinkage=1.0)
    assert sim[1, 2] == pytest.approx(1 / (np.sqrt(2 * 1) + 1))
    assert sim[1, 3] == pytest.approx(1 / (np.sqrt(2 * 2) + 1))
    assert sim[2, 3] == 0 and torch.all(sim.diagonal() == 0)
    assert torch.allclose(sim, sim.T)
    no_shrink = ItemKNN.similarity(gram, shrinkage=0.0)
    assert no_shrink[1, 2] == pytest.approx(1 / np.sqrt(2))


def test_item_knn_scores_sum_over_positive_support_items_only():
    knn = ItemKNN.fit((USERS, ITEMS), n_items=4, shrinkage=0.0, tie_break=0.0)
    # Support: item 1 bought (y=1), item 2 a sampled negative (y=0): only item 1 counts.
    batch = one_task([1, 2], [1.0, 0.0], [1, 2, 3])
    scores = knn.score(knn.adapt(batch), batch.query_x)
    assert torch.allclose(scores, torch.tensor([[0.0, 1 / np.sqrt(2), 1 / 2]], dtype=torch.float32))
    both = one_task([1, 2], [1.0, 1.0], [3])
    assert knn.score(knn.adapt(both), both.query_x).item() == pytest.approx(0.5 + 0.0)


def test_item_knn_keeps_top_neighbors():
    gram = cooccurrence((USERS, ITEMS), n_items=4)
    sim = ItemKNN.similarity(gram, shrinkage=0.0, neighbors=1)
    assert ((sim > 0).sum(1) <= 1).all()
    assert sim[1, 2] == pytest.approx(1 / np.sqrt(2))  # item 1's nearest neighbour


def test_ease_two_items_by_hand():
    gram = torch.tensor([[2.0, 1.0], [1.0, 2.0]], dtype=torch.float64)
    # P = (G + I)^-1 = [[3, -1], [-1, 3]] / 8, B[i, j] = -P[i, j] / P[j, j] = 1/3 off the diagonal.
    b = EASE.weights_from(gram, lam=1.0)
    assert torch.allclose(b, torch.tensor([[0.0, 1 / 3], [1 / 3, 0.0]], dtype=torch.float64))


def test_ease_matches_ridge_regression_with_zero_diagonal():
    rng = np.random.default_rng(0)
    x = (rng.random((30, 5)) < 0.4).astype(np.float64)
    lam = 2.0
    b = EASE.weights_from(torch.as_tensor(x.T @ x), lam).numpy()
    for j in range(5):  # column j: ridge regression of x[:, j] on the other columns
        others = [i for i in range(5) if i != j]
        a = x[:, others]
        w = np.linalg.solve(a.T @ a + lam * np.eye(4), a.T @ x[:, j])
        assert np.allclose(b[others, j], w, atol=1e-10) and b[j, j] == 0


def test_ease_scores_are_row_sums_of_support_items():
    ease = EASE.fit((USERS, ITEMS), n_items=4, lam=1.0, tie_break=0.0)
    batch = one_task([1, 3], [1.0, 1.0], [2])
    expected = ease.weights[1, 2] + ease.weights[3, 2]
    assert ease.score(ease.adapt(batch), batch.query_x).item() == pytest.approx(float(expected))


def test_recent_popularity_counts_only_the_window():
    times = pd.to_datetime(["2024-01-01", "2024-01-02", "2024-01-09", "2024-01-10", "2024-01-10", "2024-01-10"])
    pop = RecentPopularity.fit((USERS, [1, 1, 2, 3, 3, 1], times), n_items=4, window_days=2.0, tie_break=0.0)
    assert torch.allclose(pop.counts, torch.tensor([0.0, 1.0, 1.0, 2.0]))
    scores = pop.score(None, {"item": torch.tensor([[1, 2, 3]])})
    assert torch.allclose(scores, torch.log1p(torch.tensor([[1.0, 1.0, 2.0]])))
    # The all-time tie-break puts item 1 (3 events in all) ahead of item 2 (1 event).
    tied = RecentPopularity.fit((USERS, [1, 1, 2, 3, 3, 1], times), n_items=4, window_days=2.0)
    s = tied.score(None, {"item": torch.tensor([[1, 2]])})
    assert s[0, 0] > s[0, 1]
    everything = RecentPopularity.fit((USERS, [1, 1, 2, 3, 3, 1], times), n_items=4, window_days=None, tie_break=0.0)
    assert torch.allclose(everything.counts, torch.tensor([0.0, 3.0, 1.0, 2.0]))


def test_fit_from_dataframe_with_encoders():
    df = pd.DataFrame({"user_id": ["a", "a", "b", "b"], "item_id": ["x", "y", "x", "z"],
                       "timestamp": pd.to_datetime(["2024-01-01"] * 4)})
    enc = Encoders.fit(df)
    knn = ItemKNN.fit(df, enc, shrinkage=0.0, tie_break=0.0)
    x, y, z = enc.encode_items(["x", "y", "z"])
    assert knn.weights[x, y] == pytest.approx(1 / np.sqrt(2)) and knn.weights[y, z] == 0
    with pytest.raises(ValueError, match="encoders"):
        ItemKNN.fit(df)
    with pytest.raises(ValueError, match="n_items"):
        encode_events(([0], [1]))
    with pytest.raises(ValueError, match="item codes"):
        encode_events(([0], [9]), n_items=4)
    with pytest.raises(ValueError, match="lam"):
        EASE.fit(df, enc, lam=0.0)
    with pytest.raises(ValueError, match="timestamps"):
        RecentPopularity.fit(([0], [1]), n_items=4)


def ranking_tasks():
    """Two tasks over 4 items: support {1} -> relevant {2}; support {3} -> relevant {1}."""
    batch = TaskBatch({"item": torch.tensor([[1], [3]])}, torch.ones(2, 1), torch.ones(2, 1, dtype=torch.bool),
                      {"item": torch.tensor([[2], [1]])}, torch.ones(2, 1), torch.ones(2, 1, dtype=torch.bool))
    candidates = torch.tensor([[False, False, True, True], [False, True, True, False]])
    relevant = torch.tensor([[False, False, True, False], [False, True, False, False]])
    return EvalTasks(batch, {"item": torch.arange(4).expand(2, 4)}, candidates, relevant)


def test_methods_run_in_evaluate_and_tuning_picks_the_best():
    tasks = ranking_tasks()
    gram = cooccurrence((USERS, ITEMS), n_items=4)
    methods = {"knn": ItemKNN.from_cooccurrence(gram, 0.0), "ease": EASE.from_cooccurrence(gram, 1.0)}
    table = evaluate(methods, {("cell", 1): tasks}, ks=(1,), n_boot=50)
    ndcg = table[table["metric"] == "ndcg@1"].set_index("method")["mean"]
    assert ndcg["knn"] == pytest.approx(1.0)  # 2 beats 3 after item 1; 1 beats 2 after item 3
    assert "log_loss" not in set(table["metric"])  # ranking scores are not probabilities
    # The identity (no neighbours) ties everything; the tuner keeps the value with the best NDCG.
    flip = lambda v: ItemKNN(torch.eye(4) if v == "bad" else ItemKNN.similarity(gram), tie_break=0.0)  # noqa: E731
    result = tune_hyperparameter(flip, ["bad", "good"], tasks, metric="ndcg@1")
    assert result.value == "good" and list(result.table["value"]) == ["bad", "good"]
    with pytest.raises(ValueError, match="metric"):
        tune_hyperparameter(flip, ["good"], tasks, metric="mrr")


def test_tuning_by_auc_on_query_events():
    # Support {1}; query: item 2 bought, item 3 not. By cosine, 1 goes with 2 more than with 3; the
    # identity knows nothing and ties the two, AUC 0.5.
    gram = cooccurrence((USERS, ITEMS), n_items=4)
    batch = TaskBatch({"item": torch.tensor([[1]])}, torch.ones(1, 1), torch.ones(1, 1, dtype=torch.bool),
                      {"item": torch.tensor([[2, 3]])}, torch.tensor([[1.0, 0.0]]), torch.ones(1, 2, dtype=torch.bool))
    flip = lambda v: ItemKNN(torch.eye(4) if v == "identity" else ItemKNN.similarity(gram), tie_break=0.0)  # noqa: E731
    result = tune_hyperparameter(flip, ["identity", "co-purchases"], batch, metric="auc")
    assert result.value == "co-purchases"
    assert list(result.table["auc"]) == [pytest.approx(0.5), pytest.approx(1.0)]


def test_negative_shrinkage_is_refused():
    with pytest.raises(ValueError, match="shrinkage"):
        ItemKNN.similarity(torch.eye(3, dtype=torch.float64), shrinkage=-1.0)


def test_support_items_need_item_key():
    batch = TaskBatch(torch.zeros(1, 2, 3), torch.ones(1, 2), torch.ones(1, 2, dtype=torch.bool),
                      torch.zeros(1, 2, 3), torch.ones(1, 2), torch.ones(1, 2, dtype=torch.bool))
    with pytest.raises(ValueError, match="'item'"):
        support_items(batch)


def test_tuning_extends_a_numeric_grid_until_the_best_is_inside(monkeypatch):
    import math

    import metarec_ref.eval.classical as classical

    # The validation score peaks at 1000, beyond the starting grid's largest value.
    monkeypatch.setattr(classical, "per_task_metrics",
                        lambda method, tasks, ks, chunk_size: {"auc": torch.tensor([-(math.log10(method) - 3) ** 2])})
    result = tune_hyperparameter(lambda value: value, [1.0, 10.0, 100.0], None, metric="auc", max_extensions=3)
    assert result.value == 1000.0 and result.edge is None and result.method == 1000.0
    assert list(result.table["value"]) == [1.0, 10.0, 100.0, 1000.0, 10000.0]
    short = tune_hyperparameter(lambda value: value, [1.0, 10.0, 100.0], None, metric="auc", max_extensions=1)
    assert short.value == 1000.0 and short.edge == "upper"  # one extension: still on the edge
    plain = tune_hyperparameter(lambda value: value, [1.0, 10.0, 100.0], None, metric="auc")
    assert plain.value == 100.0 and len(plain.table) == 3  # no extension by default
