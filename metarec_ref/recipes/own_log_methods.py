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

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from functools import partial
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
    sparse_interactions,
)
from metarec_ref.eval.ease import EASE, ease_items_within
from metarec_ref.eval.ease import ease_memory_gb as ease_memory_gb_of
from metarec_ref.eval.evaluate import EvalTasks, per_task_metrics
from metarec_ref.meta.learners import ALGORITHMS, build_learner
from metarec_ref.meta.trace_cache import TraceCache
from metarec_ref.models.recommenders import build_model
from metarec_ref.recipes.item_item import (
    ItemItemConfig,
    ItemItemInputs,
    meta_train_item_item,
    with_item_item_features,
)
from metarec_ref.recipes.online_retail import ClassicalGrid
from metarec_ref.runtime import GridSearch, bracketed_grid_search
from metarec_ref.train.meta_trainer import MetaTrainConfig, MetaTrainer, validation_metrics

ITEM_ITEM = "item_item"  # the item-item meta-learner's name among the learners of the own-log comparison
# Display names: every gradient-based algorithm of ALGORITHMS, and the item-item meta-learner.
LEARNER_NAMES = {**{name: entry.label for name, entry in ALGORITHMS.items() if entry.inner_loop},
                 ITEM_ITEM: "item-item meta-learner"}


@dataclass
class Fitted:
    """A fitted method, the values chosen for it on validation users, and how they were found.

    grid: every point tried and its validation score; search: the starting grids, the values the
    bracketing added, and any edge a chosen value still sits on (None: nothing tuned).
    """

    method: Any
    chosen: dict = field(default_factory=dict)
    grid: pd.DataFrame | None = None
    search: GridSearch | None = None


class _KeepBest:
    """Keeps the method of the best score seen so far (the first on ties), drops the others."""

    def __init__(self):
        self.score, self.value, self.method = -math.inf, None, None

    def offer(self, value, method, score: float) -> float:
        if self.method is None or score > self.score:
            self.score, self.value, self.method = score, value, method
        return score


def _validation_ndcg(method, val: EvalTasks, chunk_size: int) -> float:
    return float(torch.nanmean(per_task_metrics(method, val, ks=(10,), chunk_size=chunk_size)["ndcg@10"]))


def _tune_one(name: str, values: Sequence, make, val: EvalTasks, *, bounds: tuple, max_extensions: int,
              chunk_size: int, made: dict | None = None, invalid: tuple = ()) -> Fitted:
    """One hyperparameter tuned by validation NDCG@10, its grid extended until the best value is inside.

    make(value) builds the method; a value whose build raises one of ``invalid`` scores NaN (an EASE
    lambda too small to invert); made: methods already built for some values (a shared pass), used first.
    """
    made, best = dict(made or {}), _KeepBest()

    def evaluate(point: dict) -> float:
        value = point[name]
        try:
            method = made.pop(value) if value in made else make(value)
        except invalid:
            return math.nan
        return best.offer(value, method, _validation_ndcg(method, val, chunk_size))

    search = bracketed_grid_search({name: list(values)}, evaluate, natural_bounds={name: bounds},
                                   max_extensions=max_extensions)
    chosen = search.chosen[name]
    if best.value != chosen:
        raise RuntimeError(f"{name}: kept {best.value!r} but the search chose {chosen!r}")
    table = pd.DataFrame([{"value": point[0], "ndcg@10": score} for point, score in search.scores.items()])
    return Fitted(best.method, {name: chosen}, table, search)


def log_span_days(events: pd.DataFrame) -> float:
    """Days from the first to the last event, rounded up (at least 1): no window is longer."""
    span = (events["timestamp"].max() - events["timestamp"].min()) / pd.Timedelta(days=1)
    return float(max(1, math.ceil(span)))


def fit_classical(train_events: pd.DataFrame, encoders: Encoders, val: EvalTasks, grid: ClassicalGrid, *,
                  ease_memory_gb: float, max_extensions: int = 3,
                  chunk_size: int = 256) -> tuple[dict[str, Fitted], dict[str, str]]:
    """Popularity, recent popularity, item-kNN and EASE, each tuned on ``val`` by NDCG@10; and what was skipped, why.

    grid: the starting values; a best value on an edge that is not a natural bound (a window of the
    whole log, no shrinkage) extends its grid, at most ``max_extensions`` times
    (:func:`~metarec_ref.runtime.bracketed_grid_search`). Windows longer than the log are cut to its
    span. ease_memory_gb: memory for EASE's dense inverse; a larger catalogue is fitted on its most
    popular items that fit (:func:`~metarec_ref.eval.ease.ease_items_within`). chunk_size: validation
    tasks scored at once (full ranking holds ``chunk_size x n_items`` scores).
    """
    tune = partial(_tune_one, val=val, max_extensions=max_extensions, chunk_size=chunk_size)
    fitted, skipped = {}, {}
    fitted["popularity"] = Fitted(RecentPopularity.fit(train_events, encoders, window_days=None),
                                  {"window_days": "all time"})
    span = log_span_days(train_events)
    windows = sorted({min(float(w), span) for w in grid.window_days if w is not None}) or [span]
    fitted["recent popularity"] = tune(
        "window_days", windows, lambda w: RecentPopularity.fit(train_events, encoders, window_days=w),
        bounds=(0.0, span))
    inter = sparse_interactions(train_events, encoders)
    shrinkages = sorted(set(grid.shrinkage))
    knn = tune("shrinkage", shrinkages, lambda s: ItemKNN.from_cooccurrence(inter, s),
               bounds=(0.0, None), made=ItemKNN.grid_from_cooccurrence(inter, shrinkages))  # one shared pass
    knn.chosen["neighbours"] = DEFAULT_NEIGHBORS
    fitted["item-kNN"] = knn
    n_items, fits = encoders.spec.n_items, ease_items_within(ease_memory_gb)
    top_items = None if n_items <= fits else fits
    max_items = max(fits, 1)
    name = "EASE" if top_items is None else f"EASE (top {top_items:,} items)"
    fitted[name] = tune("lambda", sorted(set(grid.ease_lambda)),
                        lambda lam: EASE.grid_from_interactions(inter, [lam], top_items=top_items,
                                                                max_items=max_items)[lam],
                        bounds=(0.0, None), invalid=(ValueError,))
    if top_items is not None:
        skipped["EASE on the whole catalogue"] = (
            f"{n_items:,} item codes: its dense inverse would need {ease_memory_gb_of(n_items):.1f} GB, above "
            f"EASE_MEMORY_GB = {ease_memory_gb:g}; fitted on the {top_items:,} most popular items instead")
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
    on validation AUC; its seed is replaced by each run's. traces: the graphs every learner of the
    recipe records (:class:`~metarec_ref.meta.trace_cache.TraceCache`): their models are built
    alike, so each input shape is traced once for the whole grid and every seed.
    """

    algorithm: str
    model: str
    spec: FeatureSpec
    adapt: str
    outer: MetaTrainConfig
    device: torch.device | str = "cpu"
    traces: TraceCache = field(default_factory=TraceCache, compare=False, repr=False)


def train_meta_learner(recipe: LearnerRecipe, train_batch: TaskBatch, val_batch: TaskBatch, *, inner_lr: float,
                       inner_steps: int, seed: int) -> tuple[nn.Module, pd.DataFrame]:
    """The learner meta-trained from scratch, early-stopped on validation AUC (best step restored)."""
    torch.manual_seed(seed)
    learner = build_learner(recipe.algorithm, build_model(recipe.model, recipe.spec), inner_steps=inner_steps,
                            inner_lr=inner_lr, adapt=recipe.adapt, trace_cache=recipe.traces).to(recipe.device)
    history = MetaTrainer(learner, train_batch, val_batch, replace(recipe.outer, seed=seed), disable=True).fit()
    return learner, history


def tune_meta_learner(recipe: LearnerRecipe, train_batch: TaskBatch, val_batch: TaskBatch,
                      grids: dict[str, Sequence], *, seed: int, max_grid_points: int | None = None,
                      max_extensions: int = 3, max_inner_steps: int | None = None) -> Fitted:
    """The inner learning rate and steps by validation AUC, meta-steps by early stopping.

    grids: ``{"inner_lr": [...], "inner_steps": [...]}``; their product runs in order, its first
    ``max_grid_points`` points when given (a count, not a time budget, so the choice does not
    depend on the machine's load); then a chosen value on an edge of the values tried extends its
    grid, at most ``max_extensions`` rounds (one inner step is a natural bound: zero steps is the
    global model, compared on its own; no extension passes ``max_inner_steps``, a budget cap). The
    table lists every point tried.
    """
    if max_grid_points is not None and max_grid_points < 1:
        raise ValueError(f"max_grid_points must be None or >= 1, got {max_grid_points!r}")
    rows, best = [], _KeepBest()

    def evaluate(point: dict) -> float:
        lr, steps = point["inner_lr"], point["inner_steps"]
        learner, history = train_meta_learner(recipe, train_batch, val_batch, inner_lr=lr, inner_steps=steps,
                                              seed=seed)
        auc = validation_metrics(learner, val_batch).get("val_auc", float("nan"))
        evaluated = history.dropna(subset=["val_auc"]) if "val_auc" in history else history.iloc[:0]
        best_step = (int(evaluated.loc[evaluated["val_auc"].idxmax(), "step"]) if len(evaluated)
                     else recipe.outer.meta_steps)
        rows.append({"inner_lr": lr, "inner_steps": steps, "meta_steps": best_step, "val_auc": auc})
        return best.offer((lr, steps, best_step), learner, -math.inf if math.isnan(auc) else auc)

    search = bracketed_grid_search({"inner_lr": list(grids["inner_lr"]), "inner_steps": list(grids["inner_steps"])},
                                   evaluate, natural_bounds={"inner_lr": (0.0, None), "inner_steps": (1, max_inner_steps)},
                                   max_extensions=max_extensions, max_points=max_grid_points)
    lr, steps, meta_steps = best.value
    if (lr, steps) != (search.chosen["inner_lr"], search.chosen["inner_steps"]):
        raise RuntimeError(f"kept {(lr, steps)} but the search chose {search.chosen}")
    chosen = {"inner_lr": lr, "inner_steps": steps, "meta_steps": meta_steps}
    return Fitted(best.method, chosen, pd.DataFrame(rows), search)


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
    "log_span_days",
    "item_item_tasks",
    "train_item_item",
    "train_meta_learner",
    "tune_meta_learner",
]
