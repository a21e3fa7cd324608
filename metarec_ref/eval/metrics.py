"""Per-task metrics (AUC, log loss, NDCG@k, HR@k, MAE, RMSE) and bootstrap confidence intervals.

Every ``per_task_*`` function takes tensors with a leading task dimension and returns one
value per task, shape ``(tasks,)``. A task where the metric is undefined (AUC with a single
class, NDCG without a relevant candidate, no real events) gets NaN; :func:`summarize`
drops NaN tasks and reports how many were used. Averages are "per task, then across tasks",
so a user with 500 events weighs as much as a user with 5.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import Tensor

from metarec_ref.runtime import exact_sqrt

# Finite stand-in for +-inf scores so that +inf can mark excluded entries when sorting.
_BIG = 1e300


def _as_tasks(name: str, t: Tensor) -> Tensor:
    """View a (n,) tensor as one task (1, n); check it is 2-D otherwise."""
    if not isinstance(t, Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if t.dim() == 1:
        return t.unsqueeze(0)
    if t.dim() != 2:
        raise ValueError(f"{name} must have shape (tasks, n) or (n,), got {tuple(t.shape)}")
    return t


def _check_inputs(scores: Tensor, labels: Tensor, mask: Tensor | None, score_name: str = "scores"):
    scores = _as_tasks(score_name, scores).detach()
    labels = _as_tasks("labels", labels).detach()
    if labels.shape != scores.shape:
        raise ValueError(
            f"labels shape {tuple(labels.shape)} differs from {score_name} shape {tuple(scores.shape)}"
        )
    if mask is None:
        mask = torch.ones_like(scores, dtype=torch.bool)
    else:
        mask = _as_tasks("mask", mask).detach()
        if mask.shape != scores.shape:
            raise ValueError(
                f"mask shape {tuple(mask.shape)} differs from {score_name} shape {tuple(scores.shape)}"
            )
        mask = mask.to(torch.bool)
    if torch.isnan(scores[mask]).any():
        raise ValueError(f"{score_name} contain NaN on real (masked-in) events; the model diverged")
    return scores, labels, mask


def _check_binary(labels: Tensor, mask: Tensor) -> None:
    real = labels[mask]
    if not ((real == 0) | (real == 1)).all():
        raise ValueError(
            "labels must be 0/1 for AUC / log loss / ranking; for ratings use per_task_mae / per_task_rmse"
        )


def per_task_auc(scores: Tensor, labels: Tensor, mask: Tensor | None = None) -> Tensor:
    """ROC AUC per task; tied scores count one half; tasks with a single class are NaN.

    scores, labels, mask: ``(tasks, n)`` (or ``(n,)`` for one task). Any monotone score works
    (logits or probabilities).
    """
    scores, labels, mask = _check_inputs(scores, labels, mask)
    _check_binary(labels, mask)
    s = scores.to(torch.float64).nan_to_num(posinf=_BIG, neginf=-_BIG)
    pos = mask & (labels == 1)
    neg = mask & (labels == 0)
    # Sorted negative scores per task; +inf pads non-negatives to the end so they never count.
    neg_sorted = torch.where(neg, s, torch.full_like(s, math.inf)).sort(dim=1).values
    n_less = torch.searchsorted(neg_sorted, s, right=False).to(torch.float64)
    n_less_equal = torch.searchsorted(neg_sorted, s, right=True).to(torch.float64)
    wins = (n_less + 0.5 * (n_less_equal - n_less)) * pos  # Mann-Whitney U, pair by pair
    n_pos = pos.sum(1).to(torch.float64)
    n_neg = neg.sum(1).to(torch.float64)
    auc = wins.sum(1) / (n_pos * n_neg)
    return torch.where((n_pos > 0) & (n_neg > 0), auc, torch.full_like(auc, math.nan))


def per_task_log_loss(logits: Tensor, labels: Tensor, mask: Tensor | None = None) -> Tensor:
    """Mean binary cross-entropy per task, computed from logits (not probabilities)."""
    logits, labels, mask = _check_inputs(logits, labels, mask, "logits")
    _check_binary(labels, mask)
    loss = F.binary_cross_entropy_with_logits(
        logits.to(torch.float64), labels.to(torch.float64), reduction="none"
    )
    return _masked_task_mean(loss, mask)


def per_task_mae(pred: Tensor, target: Tensor, mask: Tensor | None = None) -> Tensor:
    """Mean absolute error per task (ratings)."""
    pred, target, mask = _check_inputs(pred, target, mask, "pred")
    return _masked_task_mean((pred.to(torch.float64) - target.to(torch.float64)).abs(), mask)


def per_task_rmse(pred: Tensor, target: Tensor, mask: Tensor | None = None) -> Tensor:
    """Root mean squared error per task (ratings)."""
    pred, target, mask = _check_inputs(pred, target, mask, "pred")
    return exact_sqrt(_masked_task_mean((pred.detach().to(torch.float64) - target.detach().to(torch.float64)) ** 2, mask))


def _masked_task_mean(values: Tensor, mask: Tensor) -> Tensor:
    count = mask.sum(1).to(values.dtype)
    total = torch.where(mask, values, torch.zeros_like(values)).sum(1)
    return torch.where(count > 0, total / count.clamp(min=1), torch.full_like(total, math.nan))


def _check_ranking_inputs(scores: Tensor, relevant: Tensor, candidates: Tensor | None):
    scores, relevant, candidates = _check_inputs(scores, relevant, candidates)
    relevant = relevant.to(torch.bool)
    if (torch.isnan(scores) & candidates).any():
        raise ValueError("scores contain NaN on candidate items; the model diverged")
    return scores, relevant & candidates, candidates


def _sorted_candidates(scores: Tensor, candidates: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Scores as float64, the candidates' scores sorted ascending (others pushed to +inf), and their count."""
    s = scores.to(torch.float64).nan_to_num(posinf=_BIG, neginf=-_BIG)
    s_sorted = torch.where(candidates, s, torch.full_like(s, math.inf)).sort(dim=1).values
    return s, s_sorted, candidates.sum(1, keepdim=True)


def _rank_counts(s_sorted: Tensor, n_cand: Tensor, values: Tensor) -> tuple[Tensor, Tensor]:
    """For a few score values per task: how many candidates score strictly higher, and how many tie."""
    n_less = torch.searchsorted(s_sorted, values.contiguous(), right=False)
    n_less_equal = torch.minimum(torch.searchsorted(s_sorted, values.contiguous(), right=True), n_cand)
    return n_cand - n_less_equal, n_less_equal - n_less


def _relevant_columns(relevant: Tensor) -> tuple[Tensor, Tensor]:
    """Column indices covering every task's relevant items (padded), and which of them are relevant.

    Ranking metrics need the rank of the few relevant items only, not of all candidates.
    """
    width = int(relevant.sum(1).max()) if relevant.numel() else 0
    columns = relevant.to(torch.float32).topk(max(width, 1), dim=1).indices
    return columns, relevant.gather(1, columns)


@dataclass(frozen=True)
class _Ranking:
    """What NDCG and HR read from one sort of a chunk's scores (shared across metrics and k)."""

    relevant: Tensor  # relevant candidates
    s: Tensor  # scores as float64
    s_sorted: Tensor  # candidates' scores ascending, others +inf
    n_cand: Tensor
    columns: Tensor  # columns covering every task's relevant items
    is_relevant: Tensor

    @classmethod
    def of(cls, scores: Tensor, relevant: Tensor, candidates: Tensor | None, ks: Sequence[int]) -> _Ranking:
        for k in ks:
            _check_k(k)
        scores, relevant, candidates = _check_ranking_inputs(scores, relevant, candidates)
        s, s_sorted, n_cand = _sorted_candidates(scores, candidates)
        return cls(relevant, s, s_sorted, n_cand, *_relevant_columns(relevant))


def _check_k(k) -> None:
    if not isinstance(k, int) or k < 1:
        raise ValueError(f"k must be a positive int, got {k!r}")


def per_task_ndcg(
    scores: Tensor, relevant: Tensor, candidates: Tensor | None = None, k: int = 10
) -> Tensor:
    """NDCG@k per task with a full ranking over the candidate items.

    scores: ``(tasks, n_items)``; relevant: bool ``(tasks, n_items)`` (e.g. query positives);
    candidates: bool ``(tasks, n_items)``, the items that may be ranked (available at query
    time, not in the task's support). Relevant items outside the candidates are ignored.
    Gains are binary. Tied scores are broken at random and the expected DCG is reported
    (like ``sklearn.metrics.ndcg_score``), so a constant scorer earns no free credit.
    Tasks without a relevant candidate are NaN.
    """
    return _ndcg(_Ranking.of(scores, relevant, candidates, (k,)), k)


def _ndcg(r: _Ranking, k: int) -> Tensor:
    s, s_sorted, n_cand, relevant = r.s, r.s_sorted, r.n_cand, r.relevant
    columns, is_relevant = r.columns, r.is_relevant
    n_higher, group_size = _rank_counts(s_sorted, n_cand, s.gather(1, columns))
    n = s.shape[1]
    positions = torch.arange(n + 1, dtype=torch.float64, device=s.device)
    discount = torch.where(positions < k, 1.0 / torch.log2(positions + 2.0), torch.zeros_like(positions))
    cum = torch.cat([torch.zeros(1, dtype=torch.float64, device=s.device), discount.cumsum(0)])
    # Expected discount of an item in a tie group spanning ranks [a, a + g): mean over that span.
    a = n_higher.clamp(max=n)
    b = (n_higher + group_size).clamp(max=n)
    expected_discount = (cum[b] - cum[a]) / group_size.clamp(min=1).to(torch.float64)
    expected_discount = torch.where(is_relevant, expected_discount, torch.zeros_like(expected_discount))
    # Summed in place over all items, in the same order whatever the number of relevant items.
    gains = torch.zeros_like(s).scatter(1, columns, expected_discount)
    dcg = torch.where(relevant, gains, torch.zeros_like(gains)).sum(1)
    n_rel = relevant.sum(1)
    idcg = cum[n_rel.clamp(max=k)]
    return torch.where(n_rel > 0, dcg / idcg.clamp(min=1e-300), torch.full_like(dcg, math.nan))


def per_task_hit_rate(
    scores: Tensor, relevant: Tensor, candidates: Tensor | None = None, k: int = 10
) -> Tensor:
    """HR@k per task: 1 if a relevant candidate is in the top k (full ranking), else 0.

    Same inputs as :func:`per_task_ndcg`. A tie group straddling rank k is broken at random
    and the probability of a hit is reported. Tasks without a relevant candidate are NaN.
    """
    return _hit_rate(_Ranking.of(scores, relevant, candidates, (k,)), k)


def _hit_rate(r: _Ranking, k: int) -> Tensor:
    s, s_sorted, n_cand, relevant = r.s, r.s_sorted, r.n_cand, r.relevant
    columns, is_relevant = r.columns, r.is_relevant
    values = s.gather(1, columns)
    n_higher, group_size = _rank_counts(s_sorted, n_cand, values)
    surely_in = is_relevant & (n_higher + group_size <= k)
    # The k-th best candidate's tie group straddles rank k when it runs past k.
    kth = s_sorted.gather(1, (n_cand - k).clamp(min=0))
    kth_higher, kth_size = _rank_counts(s_sorted, n_cand, kth)
    straddles = (n_cand >= k) & (kth_higher + kth_size > k)
    g = torch.where(straddles, kth_size, torch.zeros_like(kth_size)).squeeze(1).to(torch.float64)
    start = torch.where(straddles, kth_higher, torch.zeros_like(kth_higher)).squeeze(1).to(torch.float64)
    r = (is_relevant & (values == kth) & straddles).sum(1).to(torch.float64)
    slots = (k - start).clamp(min=0)
    # P(no relevant among `slots` random picks from the group) = C(g - r, slots) / C(g, slots).
    feasible = (g - r) >= slots
    lg = torch.lgamma
    log_miss = lg(g - r + 1) - lg((g - r - slots).clamp(min=0) + 1) - lg(g + 1) + lg(g - slots + 1)
    p_miss = torch.where(feasible & (g > 0), log_miss.exp(), torch.where(g > 0, 0.0, 1.0))
    p_miss = torch.where(r > 0, p_miss, torch.ones_like(p_miss))
    hit = torch.where(surely_in.any(1), torch.ones_like(p_miss), 1.0 - p_miss)
    return torch.where(relevant.any(1), hit, torch.full_like(hit, math.nan))


def per_task_ranking(
    scores: Tensor, relevant: Tensor, candidates: Tensor | None = None, ks: Sequence[int] = (10,)
) -> dict[str, Tensor]:
    """``ndcg@k`` and ``hr@k`` per task for every k in ``ks``, from one sort of the scores.

    The same values as :func:`per_task_ndcg` and :func:`per_task_hit_rate` (same inputs), at the
    cost of one full ranking instead of one per metric and k.
    """
    ranking = _Ranking.of(scores, relevant, candidates, ks)
    out = {}
    for k in ks:
        out[f"ndcg@{k}"] = _ndcg(ranking, k)
        out[f"hr@{k}"] = _hit_rate(ranking, k)
    return out


def sample_candidates(
    candidates: Tensor, relevant: Tensor, n_negatives: int, generator: torch.Generator | None = None
) -> Tensor:
    """Sampled-negative shortcut: keep the relevant items plus ``n_negatives`` random others.

    Only for comparison with papers that report sampled metrics; they overstate quality,
    so the book always says when it uses them.
    """
    if not isinstance(n_negatives, int) or n_negatives < 1:
        raise ValueError(f"n_negatives must be a positive int, got {n_negatives!r}")
    candidates = _as_tasks("candidates", candidates).to(torch.bool)
    relevant = _as_tasks("relevant", relevant).to(torch.bool) & candidates
    negatives = candidates & ~relevant
    noise = torch.rand(candidates.shape, generator=generator, device="cpu").to(candidates.device)
    noise = torch.where(negatives, noise, torch.full_like(noise, -1.0))
    top = noise.topk(min(n_negatives, candidates.shape[1]), dim=1).indices
    picked = torch.zeros_like(candidates).scatter(1, top, True) & negatives
    return picked | relevant


@dataclass(frozen=True)
class MetricSummary:
    """Mean over tasks with a bootstrap confidence interval."""

    mean: float
    ci_low: float
    ci_high: float
    n_tasks: int


def bootstrap_ci(
    values: Tensor | np.ndarray, n_boot: int = 1000, level: float = 0.95, seed: int = 0
) -> MetricSummary:
    """Mean of per-task values (NaN dropped) and a percentile bootstrap CI over tasks."""
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level!r}")
    if isinstance(values, Tensor):
        values = values.detach().cpu().to(torch.float64).numpy()
    values = np.asarray(values, dtype=np.float64).ravel()
    values = values[~np.isnan(values)]
    n = len(values)
    if n == 0:
        return MetricSummary(math.nan, math.nan, math.nan, 0)
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, n, size=(n_boot, n))].mean(axis=1)
    alpha = (1 - level) / 2
    low, high = np.quantile(means, [alpha, 1 - alpha])
    return MetricSummary(float(values.mean()), float(low), float(high), n)


def _seeds_by_tasks(values) -> np.ndarray:
    """Values as float64 ``(seeds, tasks)``; ``(tasks,)`` is one seed."""
    if isinstance(values, Tensor):
        values = values.detach().cpu().to(torch.float64).numpy()
    values = np.asarray(values, dtype=np.float64)
    if values.ndim not in (1, 2):
        raise ValueError(f"per-task values must have shape (tasks,) or (seeds, tasks), got {values.shape}")
    return values.reshape(-1, values.shape[-1])


def summary_row(values, n_boot: int = 1000, level: float = 0.95, seed: int = 0) -> dict:
    """Mean over tasks, its bootstrap CI and ``n_tasks`` from per-task values; with a seed dimension, the seed spread.

    values: ``(tasks,)``, or ``(seeds, tasks)``: each task is then averaged over its seeds first
    (the CI resamples tasks of those means), and the row adds ``n_seeds`` and ``seed_std``, the
    standard deviation (with ``n - 1``) of the per-seed means: the spread a rerun with another
    seed shows (0 with one seed). NaN tasks (undefined metric) are left out.
    """
    seeds = _seeds_by_tasks(values)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a task NaN in every seed stays NaN
        per_task = np.nanmean(seeds, axis=0) if len(seeds) > 1 else seeds[0]
        seed_means = np.nanmean(seeds, axis=1)
    s = bootstrap_ci(per_task, n_boot=n_boot, level=level, seed=seed)
    row = {"mean": s.mean, "ci_low": s.ci_low, "ci_high": s.ci_high, "n_tasks": s.n_tasks}
    if np.ndim(values) == 2:
        row.update(n_seeds=len(seeds), seed_std=float(np.std(seed_means, ddof=1)) if len(seeds) > 1 else 0.0)
    return row


def summarize(
    per_task: dict[str, Tensor], n_boot: int = 1000, level: float = 0.95, seed: int = 0
) -> pd.DataFrame:
    """One row per metric: mean, ci_low, ci_high, n_tasks (NaN tasks excluded); see :func:`summary_row`.

    Values ``(seeds, tasks)`` add ``n_seeds`` and ``seed_std``.
    """
    rows = [{"metric": name, **summary_row(values, n_boot=n_boot, level=level, seed=seed)}
            for name, values in per_task.items()]
    columns = ["metric", "mean", "ci_low", "ci_high", "n_tasks"]
    return pd.DataFrame(rows, columns=columns + [c for c in ("n_seeds", "seed_std") if any(c in r for r in rows)])


def summarize_methods(per_task, n_boot: int = 1000, seed: int = 0, **keys) -> pd.DataFrame:
    """The results table: one row per method and metric with mean, 95% CI, ``n_tasks`` (and the seed spread).

    per_task: ``{method: {metric: (tasks,) or (seeds, tasks)}}``; keys: constant key columns added to
    every row (e.g. ``K=5``). Columns: method, the keys, then those of :func:`summarize`; when any
    method carries seeds, ``n_seeds`` and ``seed_std`` for all (one seed, no spread, for the others).
    """
    frames = [summarize(values, n_boot=n_boot, seed=seed).assign(**keys) for values in per_task.values()]
    for name, frame in zip(per_task, frames):
        frame.insert(0, "method", name)
    table = pd.concat(frames, ignore_index=True)
    if "n_seeds" in table.columns:  # methods given without a seed dimension ran once
        table = table.fillna({"n_seeds": 1, "seed_std": 0.0}).astype({"n_seeds": "int64"})
    ordered = ["method", *keys, "metric", "mean", "ci_low", "ci_high", "n_tasks"]
    return table[ordered + [c for c in table.columns if c not in ordered]]


def aggregate_seeds(
    tables: Sequence[pd.DataFrame] | pd.DataFrame,
    values: Sequence[str] = ("mean",),
    by: Sequence[str] | None = None,
    min_seeds: int = 3,
) -> pd.DataFrame:
    """Mean and spread (std, min, max) over seeds of results tables, one row per method/cell/...

    tables: one table per seed, or one table with a ``seed`` column. by: the key columns
    (default: every non-numeric column but ``verdict`` / ``reference``, plus ``K``). Raises if fewer than
    ``min_seeds`` seeds are given: a headline number needs a seed spread.
    """
    if isinstance(tables, pd.DataFrame):
        if "seed" not in tables.columns:
            raise ValueError("a single table needs a 'seed' column; or pass a list of one table per seed")
        table = tables
    else:
        table = pd.concat([t.assign(seed=i) for i, t in enumerate(tables)], ignore_index=True)
    n_seeds = table["seed"].nunique()
    if n_seeds < min_seeds:
        raise ValueError(f"got {n_seeds} seed(s); headline tables need at least {min_seeds} (or lower min_seeds)")
    missing = [v for v in values if v not in table.columns]
    if missing:
        raise ValueError(f"value column {missing[0]!r} is missing; found {list(table.columns)}")
    if by is None:
        # Verdict and reference are per-seed outcomes, not keys.
        by = [c for c in table.columns if c not in ("seed", "verdict", "reference", *values)
              and (not pd.api.types.is_numeric_dtype(table[c]) or c == "K")]
    grouped = table.groupby(list(by), sort=False, dropna=False)
    out = grouped.size().rename("n_seeds").to_frame()
    for v in values:
        stats = grouped[v].agg(["mean", "std", "min", "max"])
        stats.columns = [f"{v}_{s}" if s != "mean" else f"{v}_mean" for s in stats.columns]
        out = out.join(stats)
    return out.reset_index()


__all__ = [
    "MetricSummary",
    "aggregate_seeds",
    "bootstrap_ci",
    "per_task_auc",
    "per_task_hit_rate",
    "per_task_log_loss",
    "per_task_mae",
    "per_task_ndcg",
    "per_task_ranking",
    "per_task_rmse",
    "sample_candidates",
    "summarize",
    "summarize_methods",
    "summary_row",
]
