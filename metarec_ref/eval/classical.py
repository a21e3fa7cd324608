"""Classical item-based baselines: item-kNN, EASE and popularity over a recent window.

Each is fitted on meta-training events and follows the evaluation protocol of
:mod:`metarec_ref.eval.evaluate` (``adapt(batch) -> state``, ``score(state, x) -> Tensor``), so it
runs on the very :class:`~metarec_ref.eval.evaluate.EvalTasks` the meta-learners see. The per-task
state is the task's support items: the positive (``y > 0``), real support events.

- :class:`ItemKNN`: cosine similarity of item co-occurrence columns with a shrinkage term,
  ``sim[i, j] = G[i, j] / (sqrt(G[i, i] G[j, j]) + shrinkage)`` with ``G = X^T X`` (``X`` the
  binary user x item matrix), zero diagonal, the ``neighbors`` largest of each row kept in a
  sparse matrix (:mod:`metarec_ref.eval.item_similarity`; ``G`` is never dense); a candidate
  scores the sum of its similarities to the support items.
- EASE lives in :mod:`metarec_ref.eval.ease` and shares :class:`ItemItemMethod`'s scoring.
- :class:`RecentPopularity`: ``log(1 + count)`` of each item over the last ``window_days`` days
  of the meta-training log; no adaptation.

Fitting takes a DataFrame (``user_id``, ``item_id``, ``timestamp``) with the
:class:`~metarec_ref.data.schema.Encoders` of the tasks, or already encoded arrays
``(user_codes, item_codes[, timestamps])`` with ``n_items``. ``fit_grid`` fits a whole tuning grid
at once; :func:`tune_hyperparameter` picks shrinkage / lambda / window on validation tasks by a
ranking metric.
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
from metarec_ref.eval.item_similarity import (
    Interactions,
    dense_gram_blocks,
    interaction_gram_blocks,
    sparse_row_sums,
    topk_similarity,
)
from metarec_ref.runtime import bracketed_search, exact_sqrt

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


# A dense float64 co-occurrence matrix of this many items takes 1.8 GB.
DENSE_MAX_ITEMS = 15_000
# Neighbours kept per item by item-kNN: scores then cost O(support x neighbours) per task.
DEFAULT_NEIGHBORS = 200
# Cells of the (tasks, ...) intermediates one scoring step may allocate.
SCORE_CELLS = 16_000_000


def sparse_interactions(events: EventsLike, encoders: Encoders | None = None,
                        n_items: int | None = None) -> Interactions:
    """The binary user x item matrix of the events, kept sparse (code 0 left out)."""
    enc = encode_events(events, encoders, n_items)
    return Interactions.from_codes(enc.users, enc.items, enc.n_items)


def cooccurrence(events: EventsLike, encoders: Encoders | None = None, n_items: int | None = None,
                 max_items: int | None = DENSE_MAX_ITEMS) -> Tensor:
    """``G = X^T X`` (float64, ``(n_items, n_items)``): users who had both items; code 0 left empty.

    Dense, for small catalogues; above ``max_items`` items (``None``: no limit) it refuses. Large
    catalogues use :meth:`ItemKNN.fit` / :meth:`ItemKNN.fit_grid` and :meth:`EASE.fit`, which never
    build it.
    """
    enc = encode_events(events, encoders, n_items)
    if max_items is not None and enc.n_items > max_items:
        raise ValueError(
            f"a dense co-occurrence matrix of {enc.n_items:,} items needs {enc.n_items ** 2 * 8 / 1e9:.1f} GB "
            f"(max_items={max_items:,}); fit ItemKNN.fit / ItemKNN.fit_grid (sparse) and "
            "EASE.fit(top_items=...) from the events instead, or pass max_items=None"
        )
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


def _items_of(x: Features, tasks: int) -> Tensor:
    item = x["item"] if isinstance(x, dict) else x
    if item.dim() != 2 or item.shape[0] != tasks:
        raise ValueError(f"x['item'] must have shape (tasks={tasks}, n), got {tuple(item.shape)}")
    return item


class ItemItemMethod:
    """Score = sum of an item-item matrix ``W``'s rows over the support items, plus a tiny
    popularity tie-break so that items no support item points to are not all tied.

    weights: dense ``(n_items, n_items)``, sparse CSR ``(n_items, n_items)``, or dense ``(m, m)``
    over the catalogue codes ``items`` (``(m,)``; other items then score only the tie-break).
    """

    calibrated = False

    def __init__(self, weights: Tensor, popularity: Tensor | None = None, tie_break: float = 1e-6,
                 items: Tensor | None = None, n_items: int | None = None):
        if weights.dim() != 2 or weights.shape[0] != weights.shape[1]:
            raise ValueError(f"weights must be square (n_items, n_items), got {tuple(weights.shape)}")
        self.sparse = weights.layout == torch.sparse_csr
        if self.sparse and weights.values().dtype != torch.float32:
            weights = torch.sparse_csr_tensor(weights.crow_indices(), weights.col_indices(),
                                              weights.values().to(torch.float32), weights.shape)
        self.weights = weights if self.sparse else weights.to(torch.float32)
        if items is not None and (self.sparse or n_items is None):
            raise ValueError("items (a subset of the catalogue) needs dense weights and n_items")
        self._n_items = int(n_items if n_items is not None else weights.shape[0])
        self.items = None if items is None else torch.as_tensor(items, dtype=torch.int64)
        if self.items is not None:  # catalogue code -> row of W, -1 outside the subset
            self._position = torch.full((self._n_items,), -1, dtype=torch.int64)
            self._position[self.items] = torch.arange(len(self.items))
        prior = torch.zeros(self._n_items) if popularity is None else popularity.to(torch.float32)
        # Scaled to [0, tie_break]: below any meaningful similarity difference.
        self.prior = tie_break * prior / prior.max().clamp(min=1e-12)

    @property
    def n_items(self) -> int:
        return self._n_items

    def dense_weights(self) -> Tensor:
        """``W`` as a dense ``(n_items, n_items)`` float32 tensor (small catalogues: plots, the item-item scorer)."""
        if self.items is not None:
            dense = torch.zeros(self._n_items, self._n_items)
            dense[self.items[:, None], self.items[None, :]] = self.weights
            return dense
        return self.weights.to_dense() if self.sparse else self.weights

    def adapt(self, batch: TaskBatch) -> SupportItems:
        return support_items(batch)

    def catalogue_scores(self, items: Tensor, mask: Tensor) -> Tensor:
        """``(tasks, n_items)`` scores of every catalogue item for support ``items`` ``(tasks, k)``."""
        device = self.prior.device
        items, mask = items.to(device), mask.to(device)
        if self.sparse:
            scores = sparse_row_sums(self.weights, items, mask)
        elif self.items is None:
            scores = (self.weights[items] * mask[..., None]).sum(1)
        else:
            rows = self._position[items]
            mask = mask & (rows >= 0)
            subset = (self.weights[rows.clamp(min=0)] * mask[..., None]).sum(1)
            scores = torch.zeros(items.shape[0], self._n_items, dtype=subset.dtype, device=device)
            scores[:, self.items] = subset
        return scores + self.prior

    def score(self, state: SupportItems, x: Features) -> Tensor:
        item = _items_of(x, state.items.shape[0])
        # Tasks per step so that (tasks, support, items) intermediates stay near SCORE_CELLS.
        width = self._n_items if self.sparse or self.items is None else len(self.items)
        step = max(1, SCORE_CELLS // max(1, width * max(1, state.items.shape[1])))
        parts = []
        for start in range(0, item.shape[0], step):
            span = slice(start, start + step)
            scores = self.catalogue_scores(state.items[span], state.mask[span])
            parts.append(scores.gather(1, item[span].to(scores.device)).to(item.device))
        return torch.cat(parts) if parts else torch.zeros(item.shape, device=item.device)


def _item_counts(enc: EncodedEvents) -> Tensor:
    return torch.as_tensor(np.bincount(enc.items, minlength=enc.n_items), dtype=torch.float64)


GramLike = Union[Tensor, Interactions]


class ItemKNN(ItemItemMethod):
    """Item-kNN over co-occurrence: cosine with shrinkage, the ``neighbors`` most similar items of
    each item kept (sparse ``W``); score = sum of similarities to the support."""

    @staticmethod
    def similarity(gram: Tensor, shrinkage: float = 0.0, neighbors: int | None = None) -> Tensor:
        """Dense ``G[i, j] / (sqrt(G[i, i] G[j, j]) + shrinkage)``, zero diagonal, for small
        catalogues; optionally only the ``neighbors`` most similar items of each row are kept."""
        if shrinkage < 0:
            raise ValueError(f"shrinkage must be >= 0, got {shrinkage}")
        norms = exact_sqrt(gram.diagonal().clamp(min=0))
        sim = gram / (norms[:, None] * norms[None, :] + shrinkage).clamp(min=1e-12)
        sim.fill_diagonal_(0.0)
        if neighbors is not None and neighbors < sim.shape[1]:
            top = sim.topk(neighbors, dim=1).indices
            sim = torch.zeros_like(sim).scatter(1, top, sim.gather(1, top))
        return sim

    @classmethod
    def grid_from_cooccurrence(cls, gram: GramLike, shrinkages: Sequence[float],
                               neighbors: int | None = DEFAULT_NEIGHBORS,
                               tie_break: float = 1e-6) -> dict[float, "ItemKNN"]:
        """One method per shrinkage from a dense :func:`cooccurrence` or :func:`sparse_interactions`,
        in one pass over the rows of ``G``."""
        if isinstance(gram, Interactions):
            counts, blocks, n = gram.item_counts, interaction_gram_blocks(gram), gram.n_items
        else:
            counts, blocks, n = gram.diagonal().numpy(), dense_gram_blocks(gram), gram.shape[0]
        sims = topk_similarity(blocks, counts, n, list(shrinkages), neighbors)
        popularity = torch.as_tensor(np.asarray(counts, dtype=np.float64))
        return {s: cls(sim, popularity, tie_break) for s, sim in zip(shrinkages, sims)}

    @classmethod
    def from_cooccurrence(cls, gram: GramLike, shrinkage: float = 10.0,
                          neighbors: int | None = DEFAULT_NEIGHBORS, tie_break: float = 1e-6) -> "ItemKNN":
        """Build from a dense :func:`cooccurrence` or :func:`sparse_interactions` (``neighbors=None``:
        keep every similarity)."""
        return cls.grid_from_cooccurrence(gram, [shrinkage], neighbors, tie_break)[shrinkage]

    @classmethod
    def fit(cls, events: EventsLike, encoders: Encoders | None = None, *, shrinkage: float = 10.0,
            neighbors: int | None = DEFAULT_NEIGHBORS, n_items: int | None = None,
            tie_break: float = 1e-6) -> "ItemKNN":
        return cls.from_cooccurrence(sparse_interactions(events, encoders, n_items), shrinkage, neighbors, tie_break)

    @classmethod
    def fit_grid(cls, events: EventsLike, encoders: Encoders | None = None, *, shrinkages: Sequence[float],
                 neighbors: int | None = DEFAULT_NEIGHBORS, n_items: int | None = None,
                 tie_break: float = 1e-6) -> dict[float, "ItemKNN"]:
        """``{shrinkage: ItemKNN}`` for a tuning grid, sharing one pass over the co-occurrences."""
        inter = sparse_interactions(events, encoders, n_items)
        return cls.grid_from_cooccurrence(inter, shrinkages, neighbors, tie_break)


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
    """Result of :func:`tune_hyperparameter`: best value, its method, every value tried, and the edge
    of the values tried that the best still sits on (None: inside, or a natural bound)."""

    value: Any
    method: Any
    table: pd.DataFrame
    edge: str | None = None


def tune_hyperparameter(
    make_method: Callable[[Any], Any],
    grid: Sequence[Any],
    val_tasks,
    metric: str = "ndcg@10",
    chunk_size: int = 256,
    *,
    max_extensions: int = 0,
    natural_bounds: tuple = (None, None),
) -> TuneResult:
    """Pick the grid value whose method has the best mean ``metric`` (higher is better) on
    validation tasks: ``"ndcg@k"`` or ``"hr@k"`` on :class:`~metarec_ref.eval.evaluate.EvalTasks`
    with ranking inputs, or ``"auc"`` on the query events of any tasks (a ``TaskBatch`` too).

    E.g. ``knn = ItemKNN.fit_grid(train, encoders, shrinkages=[0, 10, 100])`` then
    ``tune_hyperparameter(knn.__getitem__, list(knn), val)``. With ``max_extensions`` > 0 a numeric
    grid whose best value sits on an edge other than ``natural_bounds`` is extended that way
    (:func:`~metarec_ref.runtime.bracketed_search`), so ``make_method`` must also build values
    beyond the grid.
    """
    if not grid:
        raise ValueError("grid is empty; give at least one value to try")
    name, _, k = metric.partition("@")
    if metric != "auc" and (name not in ("ndcg", "hr") or not k.isdigit()):
        raise ValueError(f"metric must be 'ndcg@k', 'hr@k' or 'auc', got {metric!r}")
    rows, methods = [], []

    def score(value) -> float:
        method = make_method(value)
        values = per_task_metrics(method, val_tasks, ks=(int(k or 10),), chunk_size=chunk_size)[metric]
        rows.append({"value": value, metric: float(torch.nanmean(values)), "n_tasks": int((~values.isnan()).sum())})
        methods.append(method)
        return rows[-1][metric]

    if max_extensions:
        value, _, edge = bracketed_search("value", list(grid), score, natural_bounds=natural_bounds,
                                          max_extensions=max_extensions)
        best = next(i for i, row in enumerate(rows) if row["value"] == value)
        return TuneResult(value, methods[best], pd.DataFrame(rows), edge)
    for value in grid:
        score(value)
    table = pd.DataFrame(rows)
    best = int(table[metric].to_numpy().argmax())
    return TuneResult(grid[best], methods[best], table)


__all__ = [
    "DEFAULT_NEIGHBORS",
    "DENSE_MAX_ITEMS",
    "EncodedEvents",
    "ItemItemMethod",
    "ItemKNN",
    "RecentPopularity",
    "SupportItems",
    "TuneResult",
    "cooccurrence",
    "encode_events",
    "sparse_interactions",
    "support_items",
    "tune_hyperparameter",
]
