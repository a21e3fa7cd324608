"""Metrics: cross-checked against scikit-learn and brute force, NaN handling, bootstrap CI."""

import itertools
import math

import numpy as np
import pytest
import torch
from sklearn.metrics import log_loss, ndcg_score, roc_auc_score

from metarec_ref.eval import bootstrap_ci, summarize
from metarec_ref.eval.metrics import (
    per_task_auc,
    per_task_hit_rate,
    per_task_log_loss,
    per_task_mae,
    per_task_ndcg,
    per_task_rmse,
    sample_candidates,
)


def _random_tasks(seed, tasks=20, n=30, ties=False):
    g = torch.Generator().manual_seed(seed)
    scores = torch.randn(tasks, n, generator=g)
    if ties:
        scores = (scores * 2).round() / 2  # many exact ties
    labels = (torch.rand(tasks, n, generator=g) < 0.3).float()
    mask = torch.rand(tasks, n, generator=g) < 0.8
    return scores, labels, mask


@pytest.mark.parametrize("ties", [False, True])
def test_auc_matches_sklearn(ties):
    scores, labels, mask = _random_tasks(0, ties=ties)
    ours = per_task_auc(scores, labels, mask)
    for t in range(scores.shape[0]):
        y, s = labels[t][mask[t]].numpy(), scores[t][mask[t]].numpy()
        if len(np.unique(y)) < 2:
            assert math.isnan(ours[t])
        else:
            assert ours[t].item() == pytest.approx(roc_auc_score(y, s), abs=1e-12)


def test_auc_single_class_task_is_nan_and_excluded():
    scores = torch.tensor([[0.1, 0.9, 0.5], [0.3, 0.2, 0.1]])
    labels = torch.tensor([[0.0, 1.0, 0.0], [1.0, 1.0, 1.0]])
    auc = per_task_auc(scores, labels)
    assert auc[0].item() == pytest.approx(1.0)
    assert math.isnan(auc[1])
    assert summarize({"auc": auc}).loc[0, "n_tasks"] == 1


def test_auc_rejects_non_binary_labels_and_nan_scores():
    with pytest.raises(ValueError, match="0/1"):
        per_task_auc(torch.randn(2, 3), torch.full((2, 3), 3.0))
    with pytest.raises(ValueError, match="NaN"):
        per_task_auc(torch.tensor([[float("nan"), 1.0]]), torch.tensor([[0.0, 1.0]]))
    with pytest.raises(ValueError, match="shape"):
        per_task_auc(torch.randn(2, 3), torch.ones(2, 4))


def test_log_loss_matches_sklearn():
    logits, labels, mask = _random_tasks(1)
    ours = per_task_log_loss(logits, labels, mask)
    for t in range(logits.shape[0]):
        y = labels[t][mask[t]].numpy()
        p = torch.sigmoid(logits[t][mask[t]].double()).numpy()
        assert ours[t].item() == pytest.approx(log_loss(y, p, labels=[0, 1]), rel=1e-9)


def test_log_loss_is_finite_for_extreme_logits():
    loss = per_task_log_loss(torch.tensor([[200.0, -200.0]]), torch.tensor([[1.0, 0.0]]))
    assert torch.isfinite(loss).all() and loss.item() < 1e-6


def test_mae_rmse():
    pred = torch.tensor([[1.0, 2.0, 9.0], [3.0, 3.0, 3.0]])
    target = torch.tensor([[2.0, 2.0, 0.0], [1.0, 5.0, 3.0]])
    mask = torch.tensor([[True, True, False], [True, True, True]])
    assert per_task_mae(pred, target, mask).tolist() == pytest.approx([0.5, 4 / 3])
    assert per_task_rmse(pred, target, mask).tolist() == pytest.approx([math.sqrt(0.5), math.sqrt(8 / 3)])


@pytest.mark.parametrize("k", [1, 5, 10, 40])
@pytest.mark.parametrize("ties", [False, True])
def test_ndcg_matches_sklearn_over_candidates(k, ties):
    scores, rel, cand = _random_tasks(2, tasks=15, n=40, ties=ties)
    relevant = rel.bool()
    ours = per_task_ndcg(scores, relevant, cand, k=k)
    for t in range(scores.shape[0]):
        y = (relevant[t] & cand[t])[cand[t]].double().numpy()
        if y.sum() == 0:
            assert math.isnan(ours[t])
            continue
        expected = ndcg_score(y[None], scores[t][cand[t]].numpy()[None], k=k)
        assert ours[t].item() == pytest.approx(expected, abs=1e-10)


def _brute_force_hit_rate(scores, relevant, k):
    """Average over all orderings of tied items (small inputs only)."""
    order = sorted(range(len(scores)), key=lambda i: -scores[i])
    groups = [list(g) for _, g in itertools.groupby(order, key=lambda i: scores[i])]
    hits, total = 0, 0
    for perms in itertools.product(*[itertools.permutations(g) for g in groups]):
        ranking = [i for p in perms for i in p]
        hits += any(relevant[i] for i in ranking[:k])
        total += 1
    return hits / total


def test_hit_rate_with_ties_matches_brute_force():
    g = torch.Generator().manual_seed(3)
    for _ in range(30):
        n = 7
        scores = torch.randint(0, 3, (n,), generator=g).float()
        relevant = torch.rand(n, generator=g) < 0.3
        if not relevant.any():
            continue
        k = int(torch.randint(1, n + 1, (1,), generator=g))
        ours = per_task_hit_rate(scores, relevant, k=k)[0].item()
        assert ours == pytest.approx(_brute_force_hit_rate(scores.tolist(), relevant.tolist(), k))


def test_hit_rate_full_ranking_excludes_non_candidates():
    scores = torch.tensor([[5.0, 4.0, 3.0, 2.0]])
    relevant = torch.tensor([[False, False, True, False]])
    # Items 0 and 1 rank above the relevant item unless excluded (e.g. they were in the support).
    assert per_task_hit_rate(scores, relevant, k=1).item() == 0.0
    candidates = torch.tensor([[False, False, True, True]])
    assert per_task_hit_rate(scores, relevant, candidates, k=1).item() == 1.0
    assert per_task_ndcg(scores, relevant, candidates, k=1).item() == 1.0


@pytest.mark.parametrize("metric", [per_task_ndcg, per_task_hit_rate])
def test_ranking_metrics_do_not_depend_on_the_other_tasks_in_the_batch(metric):
    # Only the relevant items are ranked, padded to the widest task: a task with none, one or
    # most items relevant must score the same alone as beside the others.
    g = torch.Generator().manual_seed(5)
    scores = (torch.randn(4, 40, generator=g) * 2).round()
    relevant = torch.zeros(4, 40, dtype=torch.bool)
    relevant[1, 7] = True
    relevant[2] = torch.rand(40, generator=g) < 0.8
    relevant[3, :3] = True
    candidates = torch.rand(4, 40, generator=g) < 0.9
    batched = metric(scores, relevant, candidates, k=5)
    alone = torch.cat([metric(scores[i : i + 1], relevant[i : i + 1], candidates[i : i + 1], k=5) for i in range(4)])
    assert torch.isnan(batched[0]) and torch.isnan(alone[0])
    assert torch.equal(batched[1:], alone[1:])


def test_constant_scores_get_no_free_credit():
    n, k = 100, 10
    scores = torch.zeros(1, n)
    relevant = torch.zeros(1, n, dtype=torch.bool)
    relevant[0, 0] = True
    assert per_task_hit_rate(scores, relevant, k=k).item() == pytest.approx(k / n)
    assert per_task_ndcg(scores, relevant, k=k).item() < 0.1


def test_sample_candidates_keeps_relevant_and_n_negatives():
    cand = torch.ones(3, 50, dtype=torch.bool)
    cand[:, :5] = False
    relevant = torch.zeros(3, 50, dtype=torch.bool)
    relevant[:, 10] = True
    sampled = sample_candidates(cand, relevant, 20, torch.Generator().manual_seed(0))
    assert sampled.sum(1).tolist() == [21, 21, 21]
    assert sampled[:, 10].all() and not sampled[:, :5].any()


def test_bootstrap_ci_is_seeded_and_covers_mean():
    values = torch.tensor([0.5, 0.6, 0.7, float("nan"), 0.9, 0.55])
    a = bootstrap_ci(values, seed=1)
    b = bootstrap_ci(values, seed=1)
    assert a == b
    assert a.n_tasks == 5
    assert a.ci_low <= a.mean <= a.ci_high
    assert a.mean == pytest.approx(np.nanmean(values.numpy()))
    empty = bootstrap_ci(torch.tensor([float("nan")]))
    assert empty.n_tasks == 0 and math.isnan(empty.mean)


def test_bootstrap_ci_shrinks_with_more_tasks():
    rng = np.random.default_rng(0)
    small = bootstrap_ci(rng.normal(size=20))
    large = bootstrap_ci(rng.normal(size=2000))
    assert (large.ci_high - large.ci_low) < (small.ci_high - small.ci_low) / 5


def test_one_sort_gives_every_ranking_metric_exactly():
    from metarec_ref.eval.metrics import per_task_ranking

    g = torch.Generator().manual_seed(0)
    scores = torch.randint(0, 6, (7, 40), generator=g).to(torch.float32)  # many ties
    relevant = torch.rand(7, 40, generator=g) < 0.15
    candidates = torch.rand(7, 40, generator=g) < 0.8
    together = per_task_ranking(scores, relevant, candidates, ks=(1, 5, 10))
    assert list(together) == ["ndcg@1", "hr@1", "ndcg@5", "hr@5", "ndcg@10", "hr@10"]
    for k in (1, 5, 10):
        alone = {f"ndcg@{k}": per_task_ndcg(scores, relevant, candidates, k),
                 f"hr@{k}": per_task_hit_rate(scores, relevant, candidates, k)}
        for name, values in alone.items():
            assert torch.equal(together[name].nan_to_num(-1), values.nan_to_num(-1))
    with pytest.raises(ValueError, match="k must be a positive int"):
        per_task_ranking(scores, relevant, candidates, ks=(10, 0))
