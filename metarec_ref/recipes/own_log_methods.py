"""The methods of the own-log comparison, each fitted on training data and tuned on validation users.

Baselines: popularity, recent popularity, item-kNN and EASE (:mod:`metarec_ref.eval.classical`),
a global model trained on the pooled training events and per-user fine-tuning of it (tuned with
:func:`~metarec_ref.eval.baselines.tune_fine_tuning`). Learners: any gradient-based algorithm of
:data:`~metarec_ref.meta.learners.ALGORITHMS` on the same model (MAML and Meta-SGD by default),
meta-trained as a :class:`LearnerRecipe` says, and the item-item meta-learner
(:mod:`metarec_ref.recipes.item_item`). Every tuned value is chosen on validation users only; the
test users are never read here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import pandas as pd
import torch
from torch import nn

from metarec_ref.batch import FeatureSpec, TaskBatch
from metarec_ref.data.encoders import Encoders
from metarec_ref.data.splits import split_users
from metarec_ref.eval.baselines import (
    SupervisedConfig,
    pool_events,
    train_supervised,
)
from metarec_ref.eval.classical import (
    DEFAULT_NEIGHBORS,
    ItemKNN,
    RecentPopularity,
    cooccurrence,
    tune_hyperparameter,
)
from metarec_ref.eval.ease import EASE, ease_fits, ease_memory_gb
from metarec_ref.eval.evaluate import EvalTasks
from metarec_ref.meta.learners import ALGORITHMS, build_learner
from metarec_ref.models.recommenders import build_model
from metarec_ref.recipes.item_item import (
    ItemItemConfig,
    ItemItemInputs,
    meta_train_item_item,
    with_item_item_features,
)
from metarec_ref.recipes.online_retail import ClassicalGrid
from metarec_ref.train.meta_trainer import MetaTrainConfig, MetaTrainer, validation_metrics

ITEM_ITEM = "item_item"  # the item-item meta-learner's name among the learners of the own-log comparison
# Display names: every gradient-based algorithm of ALGORITHMS, and the item-item meta-learner.
LEARNER_NAMES = {**{name: entry.label for name, entry in ALGORITHMS.items() if entry.inner_loop},
                 ITEM_ITEM: "item-item meta-learner"}


@dataclass
class Fitted:
    """A fitted method, the values chosen for it on validation users, and the grid it was chosen from."""

    method: Any
    chosen: dict = field(default_factory=dict)
    grid: pd.DataFrame | None = None


def fit_classical(train_events: pd.DataFrame, encoders: Encoders, val: EvalTasks, grid: ClassicalGrid, *,
                  ease_items: tuple[int, int], chunk_size: int = 256) -> tuple[dict[str, Fitted], dict[str, str]]:
    """Popularity, recent popularity, item-kNN and EASE, each tuned on ``val`` by NDCG@10; and what was skipped, why.

    grid: the values tried (all-time popularity is always one of them);
    ease_items: ``(max_items, top_items)``: above ``max_items`` item codes, EASE is fitted on the
    ``top_items`` most popular items; chunk_size: validation tasks scored at once (full ranking
    holds ``chunk_size x n_items`` scores).
    """
    def tune(methods: dict, values: list):
        return tune_hyperparameter(methods.__getitem__, values, val, "ndcg@10", chunk_size=chunk_size)

    fitted, skipped = {}, {}
    windows = list(dict.fromkeys([*grid.window_days, None]))
    recent = {w: RecentPopularity.fit(train_events, encoders, window_days=w) for w in windows}
    fitted["popularity"] = Fitted(recent[None], {"window_days": "all time"})
    best = tune(recent, [w for w in windows if w is not None] or [None])
    fitted["recent popularity"] = Fitted(best.method, {"window_days": best.value}, best.table)
    knn = ItemKNN.fit_grid(train_events, encoders, shrinkages=list(grid.shrinkage))
    best = tune(knn, list(knn))
    fitted["item-kNN"] = Fitted(best.method, {"shrinkage": best.value, "neighbours": DEFAULT_NEIGHBORS}, best.table)
    n_items, (ease_max_items, ease_top_items) = encoders.spec.n_items, ease_items
    top_items = None if ease_fits(n_items, ease_max_items) else ease_top_items
    ease = EASE.fit_grid(train_events, encoders, lambdas=list(grid.ease_lambda), top_items=top_items)
    best = tune(ease, list(ease))
    name = "EASE" if top_items is None else f"EASE (top {top_items:,} items)"
    fitted[name] = Fitted(best.method, {"lambda": best.value}, best.table)
    if top_items is not None:
        skipped["EASE on the whole catalogue"] = (
            f"{n_items:,} item codes exceed EASE_MAX_ITEMS = {ease_max_items:,} (its dense inverse would need "
            f"{ease_memory_gb(n_items):.1f} GB); fitted on the {top_items:,} most popular items instead")
    return fitted, skipped


def fit_global_model(model_name: str, spec, train_batch: TaskBatch, *, epochs: int, seed: int,
                     device: torch.device | str) -> nn.Module:
    """The model trained on every training event pooled (no per-user adaptation)."""
    torch.manual_seed(seed)
    model = build_model(model_name, spec).to(device)
    train_supervised(model, *pool_events(train_batch), SupervisedConfig(epochs=epochs, seed=seed), disable=True)
    return model


@dataclass(frozen=True)
class LearnerRecipe:
    """What every grid point and seed of one learner share: the algorithm, the model, what adapts, the outer loop.

    outer: the outer loop (meta-batch size, outer learning rate, at most ``meta_steps``), early-stopped
    on validation AUC; its seed is replaced by each run's.
    """

    algorithm: str
    model: str
    spec: FeatureSpec
    adapt: str
    outer: MetaTrainConfig
    device: torch.device | str = "cpu"


def train_meta_learner(recipe: LearnerRecipe, train_batch: TaskBatch, val_batch: TaskBatch, *, inner_lr: float,
                       inner_steps: int, seed: int) -> tuple[nn.Module, pd.DataFrame]:
    """The learner meta-trained from scratch, early-stopped on validation AUC (best step restored)."""
    torch.manual_seed(seed)
    learner = build_learner(recipe.algorithm, build_model(recipe.model, recipe.spec), inner_steps=inner_steps,
                            inner_lr=inner_lr, adapt=recipe.adapt).to(recipe.device)
    history = MetaTrainer(learner, train_batch, val_batch, replace(recipe.outer, seed=seed), disable=True).fit()
    return learner, history


def tune_meta_learner(recipe: LearnerRecipe, train_batch: TaskBatch, val_batch: TaskBatch,
                      points: Sequence[tuple[float, int]], *, seed: int,
                      max_grid_points: int | None = None) -> Fitted:
    """Grid over ``points`` = (inner learning rate, inner steps), meta-steps by early stopping, by validation AUC.

    The first ``max_grid_points`` points in grid order run (all when None); the table says which
    were tried. A count, not a time budget, so the choice does not depend on the machine's load.
    """
    if max_grid_points is not None and max_grid_points < 1:
        raise ValueError(f"max_grid_points must be None or >= 1, got {max_grid_points!r}")
    rows, best, best_auc = [], None, -float("inf")
    for point, (lr, steps) in enumerate(points):
        if max_grid_points is not None and point >= max_grid_points:
            rows.append({"inner_lr": lr, "inner_steps": steps, "meta_steps": None, "val_auc": None,
                         "tried": False})
            continue
        learner, history = train_meta_learner(recipe, train_batch, val_batch, inner_lr=lr, inner_steps=steps,
                                              seed=seed)
        auc = validation_metrics(learner, val_batch).get("val_auc", float("nan"))
        evaluated = history.dropna(subset=["val_auc"]) if "val_auc" in history else history.iloc[:0]
        best_step = (int(evaluated.loc[evaluated["val_auc"].idxmax(), "step"]) if len(evaluated)
                     else recipe.outer.meta_steps)
        rows.append({"inner_lr": lr, "inner_steps": steps, "meta_steps": best_step, "val_auc": auc, "tried": True})
        if auc > best_auc or best is None:
            best, best_auc = learner, auc
            chosen = {"inner_lr": lr, "inner_steps": steps, "meta_steps": best_step}
    return Fitted(best, chosen, pd.DataFrame(rows))


@dataclass
class ItemItemSetup:
    """What the item-item meta-learner needs besides its tasks: similarities, popularity, config."""

    inputs: ItemItemInputs
    config: ItemItemConfig


def item_item_setup(train_events: pd.DataFrame, encoders: Encoders, knn: Fitted, recent: Fitted, *,
                    n_query: int, meta_steps: int, seed: int) -> tuple[ItemItemSetup, pd.DataFrame]:
    """Similarities for the item-item scorer; its training tasks come from users outside the similarity.

    Returns the setup and the events of the users whose tasks train it (no leakage: their own
    co-occurrences are not in the training similarity).
    """
    fit_events, task_events = split_users(train_events, (0.3,), seed=seed)
    shrinkage = knn.chosen["shrinkage"]
    # Dense similarities with every neighbour: the scorer reads whole rows (small catalogues only).
    inputs = ItemItemInputs(
        sim_train=ItemKNN.similarity(cooccurrence(fit_events, encoders), shrinkage),
        sim_eval=ItemKNN.similarity(cooccurrence(train_events, encoders), shrinkage),
        popularity=recent.method.scores, item_category=torch.as_tensor(encoders.item_category))
    return ItemItemSetup(inputs, ItemItemConfig(n_query=n_query, meta_steps=meta_steps)), task_events


def train_item_item(setup: ItemItemSetup, train_batch: TaskBatch, val: EvalTasks, seed: int) -> nn.Module:
    """The item-item scorer meta-trained with MAML on its head (see the Online Retail chapter)."""
    return meta_train_item_item(setup.inputs, train_batch, val, setup.config, seed=seed)


def item_item_tasks(tasks: EvalTasks | TaskBatch, setup: ItemItemSetup):
    """Tasks with the support items the item-item scorer reads."""
    return with_item_item_features(tasks, setup.config)


__all__ = [
    "ITEM_ITEM",
    "Fitted",
    "ItemItemSetup",
    "LEARNER_NAMES",
    "LearnerRecipe",
    "fit_classical",
    "fit_global_model",
    "item_item_setup",
    "item_item_tasks",
    "train_item_item",
    "train_meta_learner",
    "tune_meta_learner",
]
