"""New customers of a shop with invoices: cleaning counts, tuned classical baselines, the results table.

The protocol of the Online Retail chapter, usable on any validated log with a ``session_id`` (the
item-item meta-learner it trains lives in :mod:`metarec_ref.recipes.item_item`):

- :func:`online_retail_cleaning` / :func:`load_online_retail_with_report`: the cleaned log of
  :func:`~metarec_ref.data.loaders.clean_online_retail` and how many rows each of its rules
  (:func:`~metarec_ref.data.loaders.online_retail_rules`) dropped (rules applied in order, so a row
  that breaks several counts once, at the first).
- :class:`ClassicalBaselines`: item-kNN, EASE and recent popularity fitted once for every value of
  their grids; :meth:`ClassicalBaselines.tune` picks each on validation tasks.
- :func:`ranking_table`: mean with a 95% CI, paired difference to the best baseline with its CI
  and verdict, and the seed spread, for every method and metric.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from metarec_ref.data.encoders import Encoders
from metarec_ref.data.loaders import (
    ONLINE_RETAIL_RULES,
    clean_online_retail,
    online_retail_rules,
    read_online_retail,
)
from metarec_ref.eval.classical import (
    ItemKNN,
    RecentPopularity,
    TuneResult,
    cooccurrence,
    tune_hyperparameter,
)
from metarec_ref.eval.ease import EASE
from metarec_ref.eval.evaluate import EvalTasks
from metarec_ref.eval.metrics import summarize_methods
from metarec_ref.eval.paired import compare_to_best

# The loader's rules (online_retail_rules), between the raw rows and the duplicates validation drops.
CLEANING_STEPS = ("raw rows", *ONLINE_RETAIL_RULES, "exact duplicates")


def online_retail_cleaning(raw: pd.DataFrame, drop_non_products: bool = True) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Clean raw Online Retail rows; return ``(events, report)`` with the rows each rule dropped.

    The rules are the loader's own (:func:`~metarec_ref.data.loaders.online_retail_rules`).
    """
    with warnings.catch_warnings():  # the duplicate count is in the report
        warnings.simplefilter("ignore", UserWarning)
        events = clean_online_retail(raw, drop_non_products=drop_non_products)
    rules = online_retail_rules(raw, drop_non_products)
    left, keep, rows = len(raw), np.ones(len(raw), dtype=bool), [(CLEANING_STEPS[0], 0, len(raw))]
    for name, drops in rules.items():
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
    return online_retail_cleaning(read_online_retail(path), drop_non_products)


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
                  metrics: Sequence[str] = ("hr@10", "ndcg@10"), n_boot: int = 2000, seed: int = 0,
                  reference: str | None = None) -> pd.DataFrame:
    """Every method and metric: mean with a 95% CI over tasks, paired difference to the best
    baseline (``diff``, ``diff_low``, ``diff_high``, ``verdict``), seeds and their spread.

    per_task: ``{method: {metric: (tasks,) or (seeds, tasks)}}`` on the same tasks; a method with
    seeds is averaged per task first. The CI and the seed spread are those of the results table
    (:func:`~metarec_ref.eval.metrics.summarize_methods`: ``seed_std`` is the standard deviation,
    with ``n - 1``, of a method's per-seed means; 0 with one seed). reference: the baseline chosen
    on validation (:func:`~metarec_ref.eval.paired.compare_to_best`); ``None``, the best on these tasks.
    """
    frames = []
    for metric in metrics:
        table = compare_to_best(per_task, baselines, metric, n_boot=n_boot, seed=seed, reference=reference)
        table = table.rename(columns={"ci_low": "diff_low", "ci_high": "diff_high"})
        summary = summarize_methods({name: {metric: per_task[name][metric]} for name in table["method"]},
                                    n_boot=n_boot, seed=seed)
        table.insert(3, "ci_low", summary["ci_low"].to_numpy())
        table.insert(4, "ci_high", summary["ci_high"].to_numpy())
        table["n_seeds"] = summary["n_seeds"].to_numpy() if "n_seeds" in summary else 1
        table["seed_std"] = summary["seed_std"].to_numpy() if "seed_std" in summary else 0.0
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
    "stack_seeds",
    "train_item_item_global",
    "with_item_item_features",
    "with_support_items",
]
