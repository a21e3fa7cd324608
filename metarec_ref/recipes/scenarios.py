"""The application chapters' evaluation: per-task AUC of many methods on the same tasks, curves against K.

Chapters 6 and 6b score several methods on the same tasks, summarise each with a bootstrap CI and
compare each with the best baseline. :func:`curve_against_k` does that for several support sizes
on the *same* tasks and query events: the tasks are cut once with the largest support size and
shrunk with :meth:`~metarec_ref.data.tasks.Tasks.first_support`, so only the support grows with K
(an oracle that ignores the support scores the same at every K).
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

import pandas as pd
import torch
from torch import Tensor, nn

from metarec_ref.batch import TaskBatch
from metarec_ref.data.encoders import Encoders
from metarec_ref.data.negatives import NegativeSampling
from metarec_ref.data.schema import validate_events
from metarec_ref.data.splits import ColdStartSplit
from metarec_ref.data.synthetic import SyntheticConfig, SyntheticLog, generate
from metarec_ref.data.tasks import Tasks, build_tasks, to_task_batch
from metarec_ref.eval.baselines import (
    GlobalModel,
    SupervisedConfig,
    pool_events,
    train_supervised,
)
from metarec_ref.eval.evaluate import per_task_metrics
from metarec_ref.eval.metrics import summarize_methods
from metarec_ref.eval.oracle import SyntheticOracle
from metarec_ref.eval.paired import compare_to_best
from metarec_ref.recipes.pipeline import ColdStartCut, build_cold_start_tasks
from metarec_ref.runtime import bracketed_search, warn_if_on_grid_edge


@dataclass
class Shop:
    """A synthetic shop cut for cold-start users: the log, its split, encoders and the task batches."""

    log: SyntheticLog
    events: pd.DataFrame  # the validated log
    split: ColdStartSplit
    encoders: Encoders
    train: TaskBatch  # one task per training user (before the cut)
    val: TaskBatch  # one task per validation user (after the cut)
    validation_messages: list[str]


def cold_start_shop(log: SyntheticConfig, cut: ColdStartCut, device: torch.device | str = "cpu") -> Shop:
    """The application chapters' shop: generate ``log``, validate it, cut it in time into training and validation users.

    The tasks are those of :func:`~metarec_ref.recipes.pipeline.build_cold_start_tasks` with ``cut``
    (test users are left to the chapter: no test cells); the validation messages are kept to print.
    """
    generated = generate(log)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        events = validate_events(generated.events)
    tasks = build_cold_start_tasks(events, replace(cut, cells=()), device=device)
    return Shop(generated, events, tasks.split, tasks.encoders, tasks.train, tasks.val, [str(w.message) for w in caught])


def auc_per_task(methods: Mapping, batch, seed: int = 0) -> dict:
    """Per-task query AUC of every method on the same tasks: ``{method: {"auc": (tasks,)}}``."""
    return {name: {"auc": per_task_metrics(m, batch, seed=seed)["auc"]} for name, m in methods.items()}


def ci_table(results: pd.DataFrame, order: Sequence[str], columns: str = "K") -> pd.DataFrame:
    """``mean [ci_low, ci_high]`` per method (rows, in ``order``) and ``columns``."""
    text = results.apply(lambda r: f"{r['mean']:.3f} [{r['ci_low']:.3f}, {r['ci_high']:.3f}]", axis=1)
    return results.assign(value=text).pivot(index="method", columns=columns, values="value").reindex(list(order))


def curve_against_k(
    methods: Mapping,
    full_tasks: Tasks,
    world,
    encoders: Encoders,
    ks: Sequence[int],
    baselines: Sequence[str],
    *,
    n_boot: int = 1000,
    seed: int = 0,
) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """AUC per method and K on the same tasks and query events, and each method against the best baseline.

    full_tasks: tasks cut with ``k_support >= max(ks)``; world: the synthetic log or world, for the
    oracle (added as method ``"oracle"``, left out of the comparisons). Returns the results table
    (method, K, mean, CI), the comparison table (:func:`compare_to_best` per K, column ``K``) and
    ``{K: per-task values}``.
    """
    if max(ks) > int(full_tasks.keys["n_support"].min()):
        raise ValueError(f"full_tasks hold {int(full_tasks.keys['n_support'].min())} support events per task "
                         f"at least; cut them with k_support >= max(ks) = {max(ks)}")
    oracle = SyntheticOracle.for_tasks(world, full_tasks, encoders, include_popularity=False)
    rows, comparisons, values_by_k = [], [], {}
    for k in ks:
        batch = to_task_batch(full_tasks.first_support(k), encoders)  # each method reads it on its own device
        values = auc_per_task({**methods, "oracle": oracle}, batch, seed=seed)
        rows.append(summarize_methods(values, n_boot=n_boot, seed=seed, K=k))
        learned = {name: v for name, v in values.items() if name != "oracle"}
        comparisons.append(compare_to_best(learned, baselines, "auc", n_boot=n_boot, seed=seed).assign(K=k))
        values_by_k[k] = values
    return pd.concat(rows, ignore_index=True), pd.concat(comparisons, ignore_index=True), values_by_k


def events_with_negatives(
    part: pd.DataFrame, encoders: Encoders, negatives: NegativeSampling, *, seed: int = 0,
    device: torch.device | str = "cpu",
) -> tuple[dict[str, Tensor], Tensor]:
    """Every event of ``part`` with its sampled ``negatives``, as flat training tensors (x, y)."""
    # One task holding all events (support = all but the last), pooled back into a flat set.
    one_task = build_tasks(part.assign(whole_log=0), "whole_log", len(part) - 1, 1, query_after="order",
                           negatives=negatives, seed=seed)
    return pool_events(to_task_batch(one_task, encoders, device))


def tuned_epochs(start: nn.Module, x: dict[str, Tensor], y: Tensor, val: TaskBatch, grid: Sequence[int], *,
                 what: str = "training", batch_size: int = 64, seed: int = 0,
                 max_extensions: int = 3) -> tuple[int, nn.Module]:
    """A copy of ``start`` trained on (x, y) for each number of epochs in ``grid``; the best by mean
    validation AUC, and the model. A best value on the grid's upper edge extends the grid that way, at
    most ``max_extensions`` times (:func:`~metarec_ref.runtime.bracketed_search`; 0 epochs is a
    natural bound); a value still on an edge warns."""
    models = {}

    def val_auc(epochs: int) -> float:
        model = copy.deepcopy(start)
        if epochs:
            train_supervised(model, x, y, SupervisedConfig(epochs=epochs, batch_size=batch_size, seed=seed))
        models[epochs] = model
        return float(per_task_metrics(GlobalModel(model), val)["auc"].nanmean())

    best, scores, edge = bracketed_search(f"{what} epochs", list(grid), val_auc, natural_bounds=(0, None),
                                          max_extensions=max_extensions)
    if edge is not None:
        warn_if_on_grid_edge(f"{what} epochs", list(scores), best, natural_bounds=(0, None))
    return best, models[best]


__all__ = [
    "Shop",
    "auc_per_task",
    "ci_table",
    "cold_start_shop",
    "curve_against_k",
    "events_with_negatives",
    "tuned_epochs",
]
