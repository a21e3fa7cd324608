"""The methods of the own-log comparison, each fitted on training data and tuned on validation users.

Baselines: popularity, recent popularity, item-kNN and EASE (:mod:`metarec_ref.eval.classical`),
a global model trained on the pooled training events and per-user fine-tuning of it. Learners:
MAML and Meta-SGD on the same model, and the item-item meta-learner of the Online Retail chapter.
Every tuned value is chosen on validation users only; the test users are never read here.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
import torch
from torch import nn

from metarec_ref.batch import TaskBatch
from metarec_ref.data.encoders import Encoders
from metarec_ref.data.splits import holdout_users
from metarec_ref.eval.baselines import (
    FineTune,
    SupervisedConfig,
    pool_events,
    train_supervised,
    tune_fine_tuning,
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
from metarec_ref.meta.learners import build_learner
from metarec_ref.meta.maml import InnerLoopConfig
from metarec_ref.models.recommenders import build_model
from metarec_ref.recipes.item_item import (
    ItemItemConfig,
    ItemItemInputs,
    meta_train_item_item,
    with_item_item_features,
)
from metarec_ref.train.meta_trainer import MetaTrainConfig, MetaTrainer, validation_metrics

LEARNER_NAMES = {"maml": "MAML", "metasgd": "Meta-SGD", "item_item": "item-item meta-learner"}


@dataclass
class Fitted:
    """A fitted method, the values chosen for it on validation users, and the grid it was chosen from."""

    method: Any
    chosen: dict = field(default_factory=dict)
    grid: pd.DataFrame | None = None


def fit_classical(train_events: pd.DataFrame, encoders: Encoders, val: EvalTasks, *,
                  shrinkage_grid, ease_lambdas, window_days, ease_max_items: int, ease_top_items: int,
                  metric: str = "ndcg@10", chunk_size: int = 256) -> tuple[dict[str, Fitted], dict[str, str]]:
    """Popularity, recent popularity, item-kNN and EASE, each tuned on ``val``; and what was skipped, why.

    chunk_size: validation tasks scored at once (full ranking holds ``chunk_size x n_items`` scores).
    """
    def tune(methods: dict, values: list):
        return tune_hyperparameter(methods.__getitem__, values, val, metric, chunk_size=chunk_size)

    fitted, skipped = {}, {}
    windows = list(dict.fromkeys([*window_days, None]))
    recent = {w: RecentPopularity.fit(train_events, encoders, window_days=w) for w in windows}
    fitted["popularity"] = Fitted(recent[None], {"window_days": "all time"})
    best = tune(recent, [w for w in windows if w is not None] or [None])
    fitted["recent popularity"] = Fitted(best.method, {"window_days": best.value}, best.table)
    knn = ItemKNN.fit_grid(train_events, encoders, shrinkages=list(shrinkage_grid))
    best = tune(knn, list(knn))
    fitted["item-kNN"] = Fitted(best.method, {"shrinkage": best.value, "neighbours": DEFAULT_NEIGHBORS}, best.table)
    n_items = encoders.spec.n_items
    top_items = None if ease_fits(n_items, ease_max_items) else ease_top_items
    ease = EASE.fit_grid(train_events, encoders, lambdas=list(ease_lambdas), top_items=top_items)
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


def tune_fine_tune(global_model: nn.Module, val_batch: TaskBatch, *, steps_grid, lr_grid,
                   adapt: str = "all") -> Fitted:
    """Per-user fine-tuning of the global model, steps and learning rate chosen by validation loss."""
    choice = tune_fine_tuning(global_model, val_batch, steps_grid=steps_grid, lr_grid=lr_grid, adapt=adapt)
    return Fitted(FineTune(global_model, choice.steps, choice.lr, adapt=adapt),
                  {"steps": choice.steps, "lr": choice.lr}, choice.table)


def train_meta_learner(algorithm: str, model_name: str, spec, train_batch: TaskBatch, val_batch: TaskBatch, *,
                       inner_lr: float, inner_steps: int, adapt: str = "all", max_meta_steps: int, meta_batch_size: int,
                       outer_lr: float, seed: int, device: torch.device | str) -> tuple[nn.Module, pd.DataFrame]:
    """MAML or Meta-SGD meta-trained from scratch, early-stopped on validation AUC (best step restored)."""
    torch.manual_seed(seed)
    inner = InnerLoopConfig(inner_steps=inner_steps, inner_lr=inner_lr, adapt=adapt)
    learner = build_learner(algorithm, build_model(model_name, spec), inner).to(device)
    config = MetaTrainConfig(
        meta_batch_size=min(meta_batch_size, train_batch.num_tasks), outer_lr=outer_lr,
        meta_steps=max_meta_steps, eval_every=max(max_meta_steps // 10, 1), patience=3,
        monitor="val_auc", seed=seed,
    )
    history = MetaTrainer(learner, train_batch, val_batch, config, disable=True).fit()
    return learner, history


def tune_meta_learner(algorithm: str, model_name: str, spec, train_batch: TaskBatch, val_batch: TaskBatch, *,
                      inner_lr_grid, inner_steps_grid, adapt: str = "all", max_meta_steps: int, meta_batch_size: int,
                      outer_lr: float, seed: int, device, max_grid_points: int | None = None) -> Fitted:
    """Grid over inner learning rate and steps (meta-steps by early stopping), by validation AUC.

    The first ``max_grid_points`` points in grid order run (all when None); the table says which
    were tried. A count, not a time budget, so the choice does not depend on the machine's load.
    """
    if max_grid_points is not None and max_grid_points < 1:
        raise ValueError(f"max_grid_points must be None or >= 1, got {max_grid_points!r}")
    rows, best, best_auc = [], None, -float("inf")
    for point, (lr, steps) in enumerate(itertools.product(inner_lr_grid, inner_steps_grid)):
        if max_grid_points is not None and point >= max_grid_points:
            rows.append({"inner_lr": lr, "inner_steps": steps, "meta_steps": None, "val_auc": None,
                         "tried": False})
            continue
        learner, history = train_meta_learner(
            algorithm, model_name, spec, train_batch, val_batch, inner_lr=lr, inner_steps=steps, adapt=adapt,
            max_meta_steps=max_meta_steps, meta_batch_size=meta_batch_size, outer_lr=outer_lr, seed=seed,
            device=device)
        auc = validation_metrics(learner, val_batch).get("val_auc", float("nan"))
        evaluated = history.dropna(subset=["val_auc"]) if "val_auc" in history else history.iloc[:0]
        best_step = int(evaluated.loc[evaluated["val_auc"].idxmax(), "step"]) if len(evaluated) else max_meta_steps
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
    fit_events, task_events = holdout_users(train_events, 0.3, seed=seed)
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
    "Fitted",
    "ItemItemSetup",
    "LEARNER_NAMES",
    "fit_classical",
    "fit_global_model",
    "item_item_setup",
    "item_item_tasks",
    "train_item_item",
    "train_meta_learner",
    "tune_fine_tune",
    "tune_meta_learner",
]
