"""Classical item-based baselines: item-kNN, EASE and popularity over a recent window.

Each is fitted on meta-training events and follows the evaluation protocol of
:mod:`metarec_ref.eval.evaluate` (``adapt(batch) -> state``, ``score(state, x) -> Tensor``), so it
runs on the very :class:`~metarec_ref.eval.evaluate.EvalTasks` the meta-learners see. The per-task
state is the task's support items: the positive (``y > 0``), real support events.

- :class:`ItemKNN`: cosine similarity of item co-occurrence columns with a shrinkage term,
  ``sim[i, j] = G[i, j] / (sqrt(G[i, i] G[j, j]) + shrinkage)`` with ``G = X^T X`` (``X`` the
  binary user x item matrix), zero diagonal; a candidate scores the sum of its similarities to
  the support items.
- :class:`EASE` (Steck, 2019): ``P = (G + lambda I)^-1``, ``B = I - P diag(1 / diag(P))`` (zero
  diagonal); a candidate scores the sum of the support items' rows of ``B``.
- :class:`RecentPopularity`: ``log(1 + count)`` of each item over the last ``window_days`` days
  of the meta-training log; no adaptation.

Fitting takes a DataFrame (``user_id``, ``item_id``, ``timestamp``) with the
:class:`~metarec_ref.data.schema.Encoders` of the tasks, or already encoded arrays
``(user_codes, item_codes[, timestamps])`` with ``n_items``. :func:`tune_hyperparameter` picks
shrinkage / lambda / window on validation tasks by a ranking metric.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Union

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from metarec_ref.batch import UNKNOWN, Features, TaskBatch
from metarec_ref.data.encoders import Encoders
from metarec_ref.eval.evaluate import per_task_metrics

# A DataFrame or encoded (user_codes, item_codes[, timestamps]) arrays.
EventsLike = Union[pd.DataFrame, tuple]


@dataclass
class EncodedEvents:
    """Events as integer codes: users ``(n,)``, items ``(n,)`` in ``0..n_items-1``, times or None."""

    users: np.ndarray
    items: np.ndarray
    times: np.ndarray | None  # datetime64[ns]
    n_items: int


def encode_events(events: EventsLike, encoders: Encoders | None = None, n_items: int | None = None) -> EncodedEvents:
    """Normalise a DataFrame (with ``encoders``) or encoded arrays (with ``n_items``) to codes."""
    if isinstance(events, pd.DataFrame):
        if encoders is None:
            raise ValueError("events is a DataFrame; pass the encoders of the tasks (Encoders.fit(...))")
        missing = [c for c in ("user_id", "item_id") if c not in events.columns]
        if missing:
            raise ValueError(f"column '{missing[0]}' is missing; found {list(events.columns)}")
        if "label" in events.columns:  # observed non-positives are not co-occurrences
            events = events[events["label"] > 0]
        users = pd.factorize(events["user_id"])[0].astype(np.int64)
        items = encoders.encode_items(events["item_id"])
        times = events["timestamp"].to_numpy().astype("datetime64[ns]") if "timestamp" in events else None
        return EncodedEvents(users, items, times, encoders.spec.n_items)
    if not isinstance(events, (tuple, list)) or len(events) not in (2, 3):
        raise ValueError(
            "events must be a DataFrame or a tuple (user_codes, item_codes[, timestamps]); "
            f"got {type(events).__name__}"
        )
    if n_items is None:
        raise ValueError("encoded events need n_items (e.g. encoders.spec.n_items)")
    users = np.asarray(events[0], dtype=np.int64)
    items = np.asarray(events[1], dtype=np.int64)
    if users.shape != items.shape or users.ndim != 1:
        raise ValueError(f"user and item codes must be 1-D of equal length, got {users.shape} and {items.shape}")
    if len(items) and (items.min() < 0 or items.max() >= n_items):
        raise ValueError(f"item codes must lie in 0..{n_items - 1}; found {items.min()}..{items.max()}")
    times = np.asarray(events[2]).astype("datetime64[ns]") if len(events) == 3 else None
    return EncodedEvents(users, items, times, n_items)


def cooccurrence(events: EventsLike, encoders: Encoders | None = None, n_items: int | None = None) -> Tensor:
    """``G = X^T X`` (float64, ``(n_items, n_items)``): users who had both items; code 0 left empty."""
    enc = encode_events(events, encoders, n_items)
    known = enc.items != UNKNOWN
    pairs = np.unique(np.stack([enc.users[known], enc.items[known]]), axis=1)  # binary X
    n_users = int(pairs[0].max()) + 1 if pairs.shape[1] else 1
    x = torch.sparse_coo_tensor(
        torch.as_tensor(pairs), torch.ones(pairs.shape[1], dtype=torch.float64), (n_users, enc.n_items),
        check_invariants=True,
    ).coalesce()
    with warnings.catch_warnings():  # torch marks its sparse formats as beta; the product is exact
        warnings.simplefilter("ignore", UserWarning)
        return torch.sparse.mm(x.t().coalesce(), x).to_dense()


@dataclass
class SupportItems:
    """Per-task state of the item-based methods: support item codes and which slots are real."""

    items: Tensor  # (tasks, k) int64
    mask: Tensor  # (tasks, k) bool: a real, positive support event


def support_items(batch: TaskBatch) -> SupportItems:
    """The positive, real support events of each task (needs feature dicts with an ``item`` key)."""
    if not isinstance(batch.support_x, dict) or "item" not in batch.support_x:
        raise ValueError("item-based methods need feature dicts with an 'item' key")
    mask = batch.support_mask & (batch.support_y > 0) & (batch.support_x["item"] != UNKNOWN)
    return SupportItems(batch.support_x["item"], mask)


def _profile(state: SupportItems, n_items: int, dtype: torch.dtype) -> Tensor:
    """Multi-hot ``(tasks, n_items)`` count of each task's support items."""
    out = torch.zeros(state.items.shape[0], n_items, dtype=dtype, device=state.items.device)
    return out.scatter_add(1, state.items, state.mask.to(dtype))


def _gather(scores: Tensor, x: Features) -> Tensor:
    """Scores ``(tasks, n_items)`` read at the items of x (leaves ``(tasks, n)``)."""
    item = x["item"] if isinstance(x, dict) else x
    if item.dim() != 2 or item.shape[0] != scores.shape[0]:
        raise ValueError(
            f"x['item'] must have shape (tasks={scores.shape[0]}, n), got {tuple(item.shape)}"
        )
    return scores.gather(1, item.to(scores.device))


class ItemItemMethod:
    """Score = support profile times an item-item matrix ``W`` (``(n_items, n_items)``), plus a
    tiny popularity tie-break so that items no support item points to are not all tied."""

    calibrated = False

    def __init__(self, weights: Tensor, popularity: Tensor | None = None, tie_break: float = 1e-6):
        if weights.dim() != 2 or weights.shape[0] != weights.shape[1]:
            raise ValueError(f"weights must be square (n_items, n_items), got {tuple(weights.shape)}")
        self.weights = weights.to(torch.float32)
        prior = torch.zeros(weights.shape[0]) if popularity is None else popularity.to(torch.float32)
        # Scaled to [0, tie_break]: below any meaningful similarity difference.
        self.prior = tie_break * prior / prior.max().clamp(min=1e-12)

    @property
    def n_items(self) -> int:
        return int(self.weights.shape[0])

    def adapt(self, batch: TaskBatch) -> SupportItems:
        return support_items(batch)

    def score(self, state: SupportItems, x: Features) -> Tensor:
        weights = self.weights.to(state.items.device)
        scores = _profile(state, self.n_items, weights.dtype) @ weights + self.prior.to(weights.device)
        return _gather(scores, x)


def _item_counts(enc: EncodedEvents) -> Tensor:
    return torch.as_tensor(np.bincount(enc.items, minlength=enc.n_items), dtype=torch.float64)


class ItemKNN(ItemItemMethod):
    """Item-kNN over co-occurrence: cosine with shrinkage; score = sum of similarities to the support."""

    @staticmethod
    def similarity(gram: Tensor, shrinkage: float = 0.0, neighbors: int | None = None) -> Tensor:
        """``G[i, j] / (sqrt(G[i, i] G[j, j]) + shrinkage)``, zero diagonal; optionally only the
        ``neighbors`` most similar items of each row are kept."""
        if shrinkage < 0:
            raise ValueError(f"shrinkage must be >= 0, got {shrinkage}")
        norms = gram.diagonal().clamp(min=0).sqrt()
        sim = gram / (norms[:, None] * norms[None, :] + shrinkage).clamp(min=1e-12)
        sim.fill_diagonal_(0.0)
        if neighbors is not None and neighbors < sim.shape[1]:
            top = sim.topk(neighbors, dim=1).indices
            sim = torch.zeros_like(sim).scatter(1, top, sim.gather(1, top))
        return sim

    @classmethod
    def from_cooccurrence(cls, gram: Tensor, shrinkage: float = 10.0, neighbors: int | None = None,
                          tie_break: float = 1e-6) -> "ItemKNN":
        """Build from a precomputed :func:`cooccurrence` (cheap: reuse it across a tuning grid)."""
        return cls(cls.similarity(gram, shrinkage, neighbors), gram.diagonal(), tie_break)

    @classmethod
    def fit(cls, events: EventsLike, encoders: Encoders | None = None, *, shrinkage: float = 10.0,
            neighbors: int | None = None, n_items: int | None = None, tie_break: float = 1e-6) -> "ItemKNN":
        return cls.from_cooccurrence(cooccurrence(events, encoders, n_items), shrinkage, neighbors, tie_break)


class EASE(ItemItemMethod):
    """EASE: closed-form linear item-item model with L2 regularisation ``lam``; zero diagonal."""

    @staticmethod
    def weights_from(gram: Tensor, lam: float = 100.0) -> Tensor:
        """``B = I - P diag(1 / diag(P))`` with ``P = (G + lam I)^-1`` (computed in float64)."""
        if lam <= 0:
            raise ValueError(f"lam must be > 0 (it makes G + lam I invertible), got {lam}")
        g = gram.to(torch.float64) + lam * torch.eye(gram.shape[0], dtype=torch.float64, device=gram.device)
        p = torch.linalg.inv(g)
        b = -p / p.diagonal()[None, :]
        b.fill_diagonal_(0.0)
        return b

    @classmethod
    def from_cooccurrence(cls, gram: Tensor, lam: float = 100.0, tie_break: float = 1e-6) -> "EASE":
        return cls(cls.weights_from(gram, lam), gram.diagonal(), tie_break)

    @classmethod
    def fit(cls, events: EventsLike, encoders: Encoders | None = None, *, lam: float = 100.0,
            n_items: int | None = None, tie_break: float = 1e-6) -> "EASE":
        return cls.from_cooccurrence(cooccurrence(events, encoders, n_items), lam, tie_break)


class RecentPopularity:
    """Score = ``log(1 + events of the item in the last window_days days before `now`)``; an
    all-time tie-break orders items unseen in the window."""

    calibrated = False

    def __init__(self, counts: Tensor, all_time: Tensor | None = None, tie_break: float = 1e-6):
        self.counts = counts.to(torch.float32)
        prior = torch.zeros_like(self.counts) if all_time is None else all_time.to(torch.float32)
        self.scores = torch.log1p(self.counts) + tie_break * prior / prior.max().clamp(min=1e-12)

    @classmethod
    def fit(cls, events: EventsLike, encoders: Encoders | None = None, *, window_days: float | None = 30.0,
            now: pd.Timestamp | str | None = None, n_items: int | None = None,
            tie_break: float = 1e-6) -> "RecentPopularity":
        """``now`` defaults to the last event; ``window_days=None`` counts every event (all time)."""
        enc = encode_events(events, encoders, n_items)
        all_time = _item_counts(enc)
        if window_days is None:
            return cls(all_time, all_time, tie_break)
        if window_days <= 0:
            raise ValueError(f"window_days must be > 0 or None, got {window_days}")
        if enc.times is None:
            raise ValueError("recent popularity needs timestamps: a 'timestamp' column or a third array")
        end = np.datetime64(pd.Timestamp(now), "ns") if now is not None else enc.times.max()
        start = end - np.timedelta64(int(window_days * 86_400e9), "ns")
        recent = (enc.times > start) & (enc.times <= end)
        counts = np.bincount(enc.items[recent], minlength=enc.n_items)
        return cls(torch.as_tensor(counts, dtype=torch.float64), all_time, tie_break)

    def adapt(self, batch: TaskBatch) -> None:
        return None

    def score(self, state, x: Features) -> Tensor:
        item = x["item"] if isinstance(x, dict) else x
        return self.scores.to(item.device)[item]


@dataclass
class TuneResult:
    """Result of :func:`tune_hyperparameter`: best value, its method, and the whole grid."""

    value: Any
    method: Any
    table: pd.DataFrame


def tune_hyperparameter(
    make_method: Callable[[Any], Any],
    grid: Sequence[Any],
    val_tasks,
    metric: str = "ndcg@10",
) -> TuneResult:
    """Pick the grid value whose method has the best mean ``metric`` (higher is better) on
    validation tasks (:class:`~metarec_ref.eval.evaluate.EvalTasks` with ranking inputs).

    E.g. ``tune_hyperparameter(lambda s: ItemKNN.from_cooccurrence(G, s), [0, 10, 100], val)``.
    """
    if not grid:
        raise ValueError("grid is empty; give at least one value to try")
    name, _, k = metric.partition("@")
    if name not in ("ndcg", "hr") or not k.isdigit():
        raise ValueError(f"metric must be 'ndcg@k' or 'hr@k', got {metric!r}")
    rows, methods = [], []
    for value in grid:
        method = make_method(value)
        values = per_task_metrics(method, val_tasks, ks=(int(k),))[metric]
        rows.append({"value": value, metric: float(torch.nanmean(values)), "n_tasks": int((~values.isnan()).sum())})
        methods.append(method)
    table = pd.DataFrame(rows)
    best = int(table[metric].to_numpy().argmax())
    return TuneResult(grid[best], methods[best], table)


__all__ = [
    "EASE",
    "EncodedEvents",
    "ItemItemMethod",
    "ItemKNN",
    "RecentPopularity",
    "SupportItems",
    "TuneResult",
    "cooccurrence",
    "encode_events",
    "support_items",
    "tune_hyperparameter",
]
