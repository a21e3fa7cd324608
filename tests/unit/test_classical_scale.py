"""Item-kNN with sparse top-k neighbours and EASE with a size limit: equal to the dense results
on small catalogues, bounded storage on large ones, clear errors."""

import numpy as np
import pytest
import torch

from metarec_ref.eval import (
    EASE,
    ItemKNN,
    SupportItems,
    classical,
    cooccurrence,
    ease_fits,
    sparse_interactions,
    tune_hyperparameter,
)
from metarec_ref.eval.classical import ItemItemMethod
from tests.unit.test_classical import ranking_tasks


def random_log(n_users=80, n_items=60, n_events=900, seed=0):
    """Encoded events over codes 1..n_items-1 with skewed popularity (many tied co-occurrences)."""
    rng = np.random.default_rng(seed)
    weights = 1.0 / np.arange(1, n_items)
    items = rng.choice(np.arange(1, n_items), size=n_events, p=weights / weights.sum())
    return rng.integers(0, n_users, n_events), items


def random_support(n_items, tasks=7, k=5, seed=1):
    rng = np.random.default_rng(seed)
    items = torch.as_tensor(rng.integers(0, n_items, (tasks, k)))
    return SupportItems(items, torch.as_tensor(rng.random((tasks, k)) < 0.8))


def test_all_neighbors_reproduce_the_dense_item_knn():
    users, items = random_log()
    n = 60
    gram = cooccurrence((users, items), n_items=n)
    state = random_support(n)
    catalogue = {"item": torch.arange(n).expand(7, n)}
    for shrinkage in (0.0, 10.0):
        dense = ItemKNN(ItemKNN.similarity(gram, shrinkage), gram.diagonal())
        sparse = ItemKNN.fit((users, items), n_items=n, shrinkage=shrinkage, neighbors=None)
        assert sparse.weights.layout == torch.sparse_csr
        assert torch.equal(sparse.weights.to_dense(), dense.weights)
        assert torch.allclose(sparse.score(state, catalogue), dense.score(state, catalogue), atol=1e-6)
        from_gram = ItemKNN.from_cooccurrence(gram, shrinkage, neighbors=None)
        assert torch.equal(from_gram.weights.to_dense(), dense.weights)


def reference_top(sim: np.ndarray, k: int) -> set[tuple[int, int]]:
    """Per row: the k largest positive off-diagonal entries, ties to the lower column."""
    kept = set()
    for i, row in enumerate(sim):
        cols = [j for j in np.flatnonzero(row > 0) if j != i]
        cols.sort(key=lambda j: (-row[j], j))
        kept |= {(i, j) for j in cols[:k]}
    return kept


@pytest.mark.parametrize("k", [1, 3, 10])
def test_top_neighbors_keep_exactly_the_largest_with_ties_to_lower_codes(k):
    users, items = random_log(n_users=40, n_events=300, seed=k)
    n = 60
    gram = cooccurrence((users, items), n_items=n)
    sim = ItemKNN.similarity(gram, 0.0).to(torch.float32).numpy()
    knn = ItemKNN.fit((users, items), n_items=n, shrinkage=0.0, neighbors=k)
    w = knn.weights
    rows = torch.repeat_interleave(torch.arange(n), w.crow_indices().diff())
    kept = set(zip(rows.tolist(), w.col_indices().tolist()))
    assert any(len(set(r[r > 0].tolist())) < (r > 0).sum() for r in sim)  # ties exist
    assert kept == reference_top(sim, k)
    assert torch.equal(w.values(), torch.as_tensor(sim[rows.numpy(), w.col_indices().numpy()]))


def test_fit_grid_matches_single_fits_and_tunes():
    users, items = random_log()
    grid = ItemKNN.fit_grid((users, items), n_items=60, shrinkages=[0.0, 5.0], neighbors=4)
    for s, method in grid.items():
        single = ItemKNN.fit((users, items), n_items=60, shrinkage=s, neighbors=4)
        assert torch.equal(method.weights.to_dense(), single.weights.to_dense())
    # The sparse methods go through evaluation and tuning like the dense ones.
    gram = cooccurrence(([0, 0, 1, 1, 2, 2], [1, 2, 1, 3, 3, 3]), n_items=4)
    knn = {s: ItemKNN.from_cooccurrence(gram, s, tie_break=0.0) for s in (0.0, 1.0)}
    result = tune_hyperparameter(knn.__getitem__, list(knn), ranking_tasks(), metric="ndcg@1")
    assert result.table["ndcg@1"].max() == pytest.approx(1.0)


def test_blocks_in_worker_threads_give_the_same_neighbours():
    from functools import partial

    from metarec_ref.eval import item_similarity

    users, items = random_log(n_users=120, n_items=300, n_events=6000, seed=3)
    inter = sparse_interactions((users, items), n_items=300)
    blocks = [(a, b, partial(inter.gram_rows, a, b)) for a, b in inter.row_blocks(max_entries=2000)]  # many
    assert len(blocks) > 8
    one, two, three = (item_similarity.topk_similarity(blocks, inter.item_counts, 300, [0.0, 10.0], 7, workers=w)
                       for w in (1, 2, 3))
    for a, b, c in zip(one, two, three):
        for part in ("crow_indices", "col_indices", "values"):
            assert torch.equal(getattr(a, part)(), getattr(b, part)())
            assert torch.equal(getattr(a, part)(), getattr(c, part)())


def test_scoring_in_task_steps_matches_one_step(monkeypatch):
    users, items = random_log()
    knn = ItemKNN.fit((users, items), n_items=60, neighbors=5)
    state = random_support(60, tasks=9)
    x = {"item": torch.arange(60).expand(9, 60)}
    whole = knn.score(state, x)
    monkeypatch.setattr(classical, "SCORE_CELLS", 1)  # one task per step
    assert torch.equal(knn.score(state, x), whole)


def test_stored_entries_stay_at_neighbors_per_item_on_a_large_catalogue():
    rng = np.random.default_rng(0)
    n_items, n_events, neighbors = 20_000, 300_000, 50
    popularity = 1.0 / (np.arange(n_items) + 10.0)
    items = rng.choice(n_items, size=n_events, p=popularity / popularity.sum())
    users = rng.integers(0, 15_000, n_events)
    inter = sparse_interactions((users, items), n_items=n_items)
    knn = ItemKNN.from_cooccurrence(inter, 10.0, neighbors=neighbors)
    stored = knn.weights.values().numel()
    assert stored <= n_items * neighbors
    # Every item with at least `neighbors` co-occurring items keeps exactly that many.
    per_row = knn.weights.crow_indices().diff()
    assert per_row.max() == neighbors and (per_row == neighbors).sum() > n_items // 4
    state = random_support(n_items, tasks=3, k=4)
    scores = knn.score(state, {"item": torch.arange(n_items).expand(3, n_items)})
    assert scores.shape == (3, n_items)


def test_ease_refuses_big_catalogues_and_fits_the_top_items():
    users, items = random_log()
    with pytest.raises(ValueError, match=r"60 items.*top_items"):
        EASE.fit((users, items), n_items=60, max_items=50)
    with pytest.raises(ValueError, match="max_items"):
        EASE.from_cooccurrence(cooccurrence((users, items), n_items=60), max_items=50)
    with pytest.raises(ValueError, match="top_items"):
        EASE.fit((users, items), n_items=60, top_items=80, max_items=50)
    assert ease_fits(50, max_items=50) and not ease_fits(51, max_items=50)
    with pytest.raises(ValueError, match="max_items=None"):
        cooccurrence((users, items), n_items=60, max_items=50)

    top = EASE.fit((users, items), n_items=60, lam=5.0, top_items=10, max_items=50, tie_break=0.0)
    counts = np.bincount(np.unique(np.stack([users, items]), axis=1)[1], minlength=60)
    expected_items = np.sort(np.argsort(-counts, kind="stable")[:10])
    assert torch.equal(top.items, torch.as_tensor(expected_items))
    # Same weights as EASE on the co-occurrence restricted to those items.
    gram = cooccurrence((users, items), n_items=60)[expected_items][:, expected_items]
    assert torch.allclose(top.weights, EASE.weights_from(gram, 5.0).float(), atol=1e-6)
    state = random_support(60)
    scores = top.score(state, {"item": torch.arange(60).expand(7, 60)})
    outside = np.setdiff1d(np.arange(60), expected_items)
    assert torch.all(scores[:, outside] == 0)
    full = ItemItemMethod(EASE.weights_from(cooccurrence((users, items), n_items=60), 5.0), tie_break=0.0)
    # Support items outside the subset are ignored; inside, scores are rows of the subset model.
    inside = SupportItems(torch.as_tensor(expected_items[:3])[None], torch.ones(1, 3, dtype=torch.bool))
    sub_scores = top.score(inside, {"item": torch.as_tensor(expected_items)[None]})
    assert torch.allclose(sub_scores, top.weights[:3].sum(0)[None], atol=1e-6)
    assert full.n_items == top.n_items == 60


def test_ease_float32_path_agrees_with_float64():
    users, items = random_log()
    gram = cooccurrence((users, items), n_items=60)
    exact = EASE.weights_from(gram, 10.0)
    single = EASE.weights_from(gram, 10.0, dtype=torch.float32)
    assert single.dtype == torch.float32 and torch.allclose(single.double(), exact, atol=1e-5)
    grid = EASE.fit_grid((users, items), n_items=60, lambdas=[10.0, 100.0])
    assert torch.allclose(grid[10.0].weights, exact.float(), atol=1e-6)
