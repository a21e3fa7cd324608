"""New customers of a shop with invoices: cleaning counts, tasks, tuned baselines, the item-item meta-learner.

The protocol of the Online Retail chapter, usable on any validated log with a ``session_id``:

- :func:`online_retail_cleaning` / :func:`load_online_retail_with_report`: the cleaned log of
  :func:`~metarec_ref.data.loaders.clean_online_retail` and how many rows each rule dropped (rules
  applied in order, so a row that breaks several counts once, at the first).
- :func:`session_eval_tasks`: full-ranking :class:`~metarec_ref.eval.evaluate.EvalTasks` of one task
  definition (:mod:`metarec_ref.data.sessions`) and support size K.
- :class:`ClassicalBaselines`: item-kNN, EASE and recent popularity fitted once for every value of
  their grids; :meth:`ClassicalBaselines.tune` picks each on validation tasks.
- :func:`with_support_items` / :func:`with_item_item_features`: tasks with the support items the
  item-item scorer reads.
- :func:`meta_train_item_item` / :func:`train_item_item_global`: the
  :class:`~metarec_ref.models.item_item.ItemItemScorer` meta-trained with MAML or Meta-SGD, or trained on
  pooled events (the global model); both read the similarity fitted without the training tasks'
  own users and switch to the one fitted on all training events for evaluation.
- :func:`ranking_table`: mean with a 95% CI, paired difference to the best baseline with its CI
  and verdict, and the seed spread, for every method and metric.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch
from torch import Tensor, nn

from metarec_ref.batch import TaskBatch
from metarec_ref.data.encoders import Encoders
from metarec_ref.data.loaders import (
    NON_PRODUCT_CODES,
    clean_online_retail,
    find_online_retail,
    read_table,
)
from metarec_ref.data.tasks import Tasks, ranking_targets, to_task_batch
from metarec_ref.eval.baselines import SupervisedConfig, pool_events, train_supervised
from metarec_ref.eval.classical import (
    ItemKNN,
    RecentPopularity,
    TuneResult,
    cooccurrence,
    tune_hyperparameter,
)
from metarec_ref.eval.ease import EASE
from metarec_ref.eval.evaluate import EvalTasks
from metarec_ref.eval.metrics import bootstrap_ci
from metarec_ref.eval.paired import compare_to_best

CLEANING_STEPS = ("raw rows", "cancellations", "no customer id", "quantity <= 0", "non-product codes",
                  "exact duplicates")


def online_retail_cleaning(raw: pd.DataFrame, drop_non_products: bool = True) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Clean raw Online Retail rows; return ``(events, report)`` with the rows each rule dropped."""
    with warnings.catch_warnings():  # the duplicate count is in the report
        warnings.simplefilter("ignore", UserWarning)
        events = clean_online_retail(raw, drop_non_products=drop_non_products)
    invoice = raw["InvoiceNo"].astype(str).str.strip()
    rules = [
        invoice.str.upper().str.startswith("C").to_numpy(),
        raw["CustomerID"].isna().to_numpy(),
        ~(pd.to_numeric(raw["Quantity"], errors="coerce") > 0).to_numpy(),
        raw["StockCode"].astype(str).str.strip().isin(NON_PRODUCT_CODES).to_numpy() & drop_non_products,
    ]
    left, keep, rows = len(raw), np.ones(len(raw), dtype=bool), [(CLEANING_STEPS[0], 0, len(raw))]
    for name, drops in zip(CLEANING_STEPS[1:], rules):
        dropped = int((keep & drops).sum())
        keep &= ~drops
        left -= dropped
        rows.append((name, dropped, left))
    # Duplicates are dropped by validation; counting them as the remainder keeps the last row
    # equal to the loader's output by construction.
    rows.append((CLEANING_STEPS[-1], left - len(events), len(events)))
    return events, pd.DataFrame(rows, columns=["step", "rows_dropped", "rows_left"])


def load_online_retail_with_report(path: str | os.PathLike | None = None,
                                   drop_non_products: bool = True) -> tuple[pd.DataFrame, pd.DataFrame]:
    """:func:`~metarec_ref.data.loaders.load_online_retail` plus the cleaning report of :func:`online_retail_cleaning`."""
    file = find_online_retail(path)
    read_kwargs = {"dtype": {"InvoiceNo": str, "StockCode": str}} if file.suffix.lower() == ".csv" else {}
    return online_retail_cleaning(read_table(file, **read_kwargs), drop_non_products)


def session_eval_tasks(
    build: Callable[..., Tasks],
    events: pd.DataFrame,
    k: int,
    n_query: int,
    encoders: Encoders,
    candidates: Tensor,
    history: pd.DataFrame,
    seed: int = 0,
    device: torch.device | str = "cpu",
) -> EvalTasks | None:
    """Full-ranking tasks over ``candidates`` (bool ``(n_items,)``) of one task builder; None if no user qualifies.

    build: e.g. :func:`~metarec_ref.data.sessions.build_basket_tasks`; history: every event, so that
    a sampled negative is never an item the user had before.
    """
    tasks = build(events, k, n_query, n_neg=1, history=history, seed=seed)
    if tasks.num_tasks == 0:
        return None
    targets = ranking_targets(tasks, encoders, device, candidates=candidates)
    return EvalTasks.from_catalog(to_task_batch(tasks, encoders, device), encoders.catalog(device), targets)


@dataclass
class ClassicalGrid:
    """Values tried on validation tasks: kNN shrinkage, EASE lambda, recent-popularity window (None: all time)."""

    shrinkage: Sequence[float] = (0.0, 5.0, 20.0, 100.0)
    ease_lambda: Sequence[float] = (50.0, 200.0, 1000.0)
    window_days: Sequence[float | None] = (7, 14, 30, 90, None)


class ClassicalBaselines:
    """Item-kNN, EASE and recent popularity for every grid value, fitted once on the training events."""

    def __init__(self, gram: Tensor, knn: dict, ease: dict, recent: dict):
        self.gram, self.knn, self.ease, self.recent = gram, knn, ease, recent

    @classmethod
    def fit(cls, train: pd.DataFrame, encoders: Encoders, grid: ClassicalGrid | None = None) -> "ClassicalBaselines":
        grid = grid or ClassicalGrid()
        if None not in grid.window_days:
            raise ValueError("grid.window_days must contain None: all-time popularity is a baseline of its own")
        gram = cooccurrence(train, encoders)
        # Every similarity kept (no top-k): a catalogue of a few thousand items fits densely.
        knn = ItemKNN.grid_from_cooccurrence(gram, list(grid.shrinkage), neighbors=None)
        ease = {lam: EASE.from_cooccurrence(gram, lam) for lam in grid.ease_lambda}
        recent = {w: RecentPopularity.fit(train, encoders, window_days=w) for w in grid.window_days}
        return cls(gram, knn, ease, recent)

    @property
    def popularity(self) -> RecentPopularity:
        """All-time popularity (the window ``None``)."""
        return self.recent[None]

    def tune(self, val: EvalTasks, metric: str = "ndcg@10") -> dict[str, TuneResult]:
        """The best grid value of each method on validation tasks: keys ``knn``, ``ease``, ``recent``."""
        return {
            "knn": tune_hyperparameter(self.knn.__getitem__, list(self.knn), val, metric),
            "ease": tune_hyperparameter(self.ease.__getitem__, list(self.ease), val, metric),
            "recent": tune_hyperparameter(self.recent.__getitem__, list(self.recent), val, metric),
        }


def stack_seeds(per_seed: Sequence[Mapping[str, Tensor]]) -> dict[str, Tensor]:
    """Per-task metrics of several seeds ``[{metric: (tasks,)}]`` -> ``{metric: (seeds, tasks)}``."""
    if not per_seed:
        raise ValueError("per_seed is empty; give the per-task metrics of at least one seed")
    return {m: torch.stack([values[m] for values in per_seed]) for m in per_seed[0]}


def ranking_table(per_task: Mapping[str, Mapping[str, Tensor]], baselines: Sequence[str],
                  metrics: Sequence[str] = ("hr@10", "ndcg@10"), n_boot: int = 2000, seed: int = 0) -> pd.DataFrame:
    """Every method and metric: mean with a 95% CI over tasks, paired difference to the best
    baseline (``diff``, ``diff_low``, ``diff_high``, ``verdict``), seeds and their spread.

    per_task: ``{method: {metric: (tasks,) or (seeds, tasks)}}`` on the same tasks; a method with
    seeds is averaged per task first; ``seed_std`` is the std of its per-seed means (0 with one seed).
    """
    frames = []
    for metric in metrics:
        table = compare_to_best(per_task, baselines, metric, n_boot=n_boot, seed=seed)
        table = table.rename(columns={"ci_low": "diff_low", "ci_high": "diff_high"})
        low, high, n_seeds, spread = [], [], [], []
        for name in table["method"]:
            values = torch.as_tensor(per_task[name][metric], dtype=torch.float64)
            seeds = values.reshape(-1, values.shape[-1])  # (seeds, tasks)
            ci = bootstrap_ci(seeds.nanmean(0), n_boot=n_boot, seed=seed)
            low.append(ci.ci_low)
            high.append(ci.ci_high)
            n_seeds.append(seeds.shape[0])
            spread.append(float(seeds.nanmean(1).std(unbiased=False)) if seeds.shape[0] > 1 else 0.0)
        table.insert(3, "ci_low", low)
        table.insert(4, "ci_high", high)
        table["n_seeds"], table["seed_std"] = n_seeds, spread
        frames.append(table)
    return pd.concat(frames, ignore_index=True)


__all__ = [
    "CLEANING_STEPS",
    "ClassicalBaselines",
    "ClassicalGrid",
    "ItemItemConfig",
    "ItemItemInputs",
    "item_item_training_batch",
    "load_online_retail_with_report",
    "meta_train_item_item",
    "online_retail_cleaning",
    "ranking_table",
    "session_eval_tasks",
    "stack_seeds",
    "train_item_item_global",
    "with_item_item_features",
    "with_support_items",
]
