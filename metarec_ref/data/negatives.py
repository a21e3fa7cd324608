"""Negative sampling for implicit feedback: items (or users) the other side had not interacted with.

``sample_negatives`` draws ``n_neg`` negatives per positive, uniform or popularity-weighted, and
rejects values seen before the positive's time (``exclude="past"``) or ever (``exclude="all"``).
``insert_negatives`` places them right after their positives inside task tables.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from metarec_ref.data.schema import require_columns

# Columns describing the context of an event; a negative copies them from its positive.
CONTEXT_COLUMNS = ("user_id", "item_id", "timestamp", "scenario", "session_id", "window")


def sample_negatives(
    positives: pd.DataFrame,
    history: pd.DataFrame,
    n_neg: int = 1,
    *,
    strategy: str = "uniform",
    exclude: str = "past",
    column: str = "item_id",
    pool: Sequence | None = None,
    seed: int = 0,
) -> pd.DataFrame:
    """``n_neg`` negative rows per positive: ``column`` resampled, context copied, ``y`` = 0.

    A sampled value is rejected when the fixed side (the user, or the item when
    ``column="user_id"``) interacted with it in ``history`` at or before the positive's time
    (``exclude="past"``) or at any time (``exclude="all"``). ``strategy`` is ``"uniform"`` over
    ``pool`` (default: values in ``history``) or ``"popularity"`` (weights = counts in
    ``history``; pass a training-period history to avoid peeking at future popularity).
    """
    if n_neg < 1:
        raise ValueError(f"n_neg must be >= 1, got {n_neg}")
    if strategy not in ("uniform", "popularity"):
        raise ValueError(f"strategy must be 'uniform' or 'popularity', got {strategy!r}")
    if exclude not in ("past", "all"):
        raise ValueError(f"exclude must be 'past' or 'all', got {exclude!r}")
    if column not in ("item_id", "user_id"):
        raise ValueError(f"column must be 'item_id' or 'user_id', got {column!r}")
    fixed = "user_id" if column == "item_id" else "item_id"
    require_columns(positives, (fixed, column, "timestamp"), "negative sampling")
    require_columns(history, (fixed, column, "timestamp"), "negative sampling (history)")
    rng = np.random.default_rng(seed)

    pool_index = pd.Index(pd.unique(history[column].to_numpy()) if pool is None else pool)
    if len(pool_index) < 2:
        raise ValueError(f"the negative pool has {len(pool_index)} value(s) of '{column}'; need >= 2")
    if strategy == "popularity":
        counts = history[column].value_counts().reindex(pool_index, fill_value=0).to_numpy()
        weights = counts.astype(np.float64) + 1e-12
        cdf = np.cumsum(weights / weights.sum())
        draw = lambda n: np.minimum(np.searchsorted(cdf, rng.random(n)), len(cdf) - 1)  # noqa: E731
    else:
        draw = lambda n: rng.integers(0, len(pool_index), n)  # noqa: E731

    # Interacted pairs as int64 keys (fixed code * pool size + pool code), with first times.
    fixed_index = pd.Index(pd.unique(np.concatenate(
        [history[fixed].to_numpy(dtype=object), positives[fixed].to_numpy(dtype=object)])))
    h_fixed = fixed_index.get_indexer(history[fixed])
    h_pool = pool_index.get_indexer(history[column])
    ok = h_pool >= 0
    pair = h_fixed[ok].astype(np.int64) * len(pool_index) + h_pool[ok]
    first = pd.Series(history["timestamp"].to_numpy()[ok]).groupby(pair).min()
    pair_keys = first.index.to_numpy()
    pair_first = first.to_numpy().astype("datetime64[ns]").view(np.int64)

    rep = np.repeat(np.arange(len(positives)), n_neg)
    p_fixed = fixed_index.get_indexer(positives[fixed])[rep].astype(np.int64)
    p_time = positives["timestamp"].to_numpy().astype("datetime64[ns]").view(np.int64)[rep]
    sampled = draw(len(rep))
    todo = np.arange(len(rep))
    for _ in range(100):
        keys = p_fixed[todo] * len(pool_index) + sampled[todo]
        pos = np.clip(np.searchsorted(pair_keys, keys), 0, max(len(pair_keys) - 1, 0))
        hit = (pair_keys[pos] == keys) if len(pair_keys) else np.zeros(len(keys), bool)
        if exclude == "past":
            hit &= pair_first[pos] <= p_time[todo]
        todo = todo[hit]
        if len(todo) == 0:
            break
        sampled[todo] = draw(len(todo))
    else:
        raise ValueError(
            f"could not find negatives for {len(todo)} events: their {fixed} interacted with "
            f"almost every value in the pool; pass a larger pool or fewer n_neg"
        )
    keep = [c for c in positives.columns if c in CONTEXT_COLUMNS or c in ("task", "is_query")]
    negatives = positives[keep].iloc[rep].reset_index(drop=True)
    negatives[column] = pool_index.to_numpy()[sampled]
    negatives["y"] = 0.0
    negatives["is_negative"] = True
    return negatives


def insert_negatives(
    rows: pd.DataFrame,
    history: pd.DataFrame,
    n_neg: int,
    *,
    strategy: str,
    exclude: str,
    column: str,
    seed: int,
) -> pd.DataFrame:
    """``rows`` with ``n_neg`` sampled negatives after each positive (``y == 1``) row.

    Each negative sits right after its positive: same time, same task, same part of the task.
    """
    positives = rows[rows["y"] == 1.0]
    neg = sample_negatives(positives, history, n_neg, strategy=strategy, exclude=exclude,
                           column=column, seed=seed)
    neg["_after"] = np.repeat(positives.index.to_numpy(), n_neg)
    rows = rows.assign(_after=rows.index.to_numpy())
    out = pd.concat([rows, neg], ignore_index=True)
    out["_neg"] = out["is_negative"].astype(np.int8)
    out = out.sort_values(["_after", "_neg"], kind="stable").drop(columns=["_after", "_neg"])
    return out.reset_index(drop=True)


__all__ = [
    "insert_negatives",
    "sample_negatives",
]
