"""Negative sampling for implicit feedback: items (or users) the other side had not interacted with.

:class:`NegativeSampling` says how: ``n_neg`` negatives per positive, uniform or popularity-weighted,
rejecting values seen before the positive's time (``exclude="past"``) or ever (``exclude="all"``),
against a ``history`` of events. Every task builder takes one (``negatives=NegativeSampling(...)``).
``sample_negatives`` draws them; ``insert_negatives`` places them right after their positives inside
task tables.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd

from metarec_ref.data.schema import require_columns

# Columns describing the context of an event; a negative copies them from its positive.
CONTEXT_COLUMNS = ("user_id", "item_id", "timestamp", "scenario", "session_id", "window")
STRATEGIES = ("uniform", "popularity")
EXCLUDES = ("past", "all")


@dataclass(frozen=True)
class NegativeSampling:
    """How negatives are drawn: ``n_neg`` per positive, by ``strategy``, skipping what ``exclude`` says.

    strategy: ``"uniform"`` over the values of the history, or ``"popularity"`` (weights = their
    counts in the history; pass a training-period history to avoid peeking at future popularity).
    exclude: a sampled value is rejected when the fixed side (the user; the item for item tasks)
    interacted with it in the history at or before the positive's time (``"past"``) or ever (``"all"``).
    history: the events negatives are drawn against; None: the events the tasks are cut from.
    """

    n_neg: int = 1
    strategy: str = "uniform"
    exclude: str = "past"
    history: pd.DataFrame | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        if isinstance(self.n_neg, bool) or not isinstance(self.n_neg, (int, np.integer)) or self.n_neg < 1:
            raise ValueError(f"n_neg must be an int >= 1, got {self.n_neg!r}; for no negatives pass negatives=None")
        if self.strategy not in STRATEGIES:
            raise ValueError(f"strategy must be one of {list(STRATEGIES)}, got {self.strategy!r}")
        if self.exclude not in EXCLUDES:
            raise ValueError(f"exclude must be one of {list(EXCLUDES)}, got {self.exclude!r}")

    def against(self, events: pd.DataFrame) -> NegativeSampling:
        """This sampling with ``events`` as the history when it has none."""
        return self if self.history is not None else replace(self, history=events)


def sample_negatives(
    positives: pd.DataFrame,
    sampling: NegativeSampling,
    *,
    column: str = "item_id",
    pool: Sequence | None = None,
    seed: int = 0,
) -> pd.DataFrame:
    """``sampling.n_neg`` negative rows per positive: ``column`` resampled, context copied, ``y`` = 0.

    ``sampling.history`` is required here. ``column``: ``"item_id"`` (resample items for a user)
    or ``"user_id"`` (resample users for an item). ``pool``: the values to draw from (default:
    those in the history).
    """
    if sampling.history is None:
        raise ValueError("sample_negatives needs a history: pass NegativeSampling(..., history=events)")
    history, n_neg, strategy, exclude = sampling.history, sampling.n_neg, sampling.strategy, sampling.exclude
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


def insert_negatives(rows: pd.DataFrame, sampling: NegativeSampling, *, column: str, seed: int) -> pd.DataFrame:
    """``rows`` with ``sampling.n_neg`` sampled negatives after each positive (``y == 1``) row.

    Each negative sits right after its positive: same time, same task, same part of the task.
    """
    positives = rows[rows["y"] == 1.0]
    neg = sample_negatives(positives, sampling, column=column, seed=seed)
    neg["_after"] = np.repeat(positives.index.to_numpy(), sampling.n_neg)
    rows = rows.assign(_after=rows.index.to_numpy())
    out = pd.concat([rows, neg], ignore_index=True)
    out["_neg"] = out["is_negative"].astype(np.int8)
    out = out.sort_values(["_after", "_neg"], kind="stable").drop(columns=["_after", "_neg"])
    return out.reset_index(drop=True)


__all__ = [
    "NegativeSampling",
    "insert_negatives",
    "sample_negatives",
]
