"""Evaluate baselines and meta-learners alike: per-task metrics, CIs, one tidy table.

A *method* is anything with ``adapt(batch) -> state`` and ``score(state, x) -> Tensor`` (every
meta-learner of :mod:`metarec_ref.meta.maml` / :mod:`metarec_ref.meta.metric_based` and every baseline of
:mod:`metarec_ref.eval.baselines`). A method with ``calibrated = False`` (e.g. popularity) gets
no log loss. Evaluation only reads the support sets to adapt and the query sets to score.

:class:`EvalTasks` bundles a :class:`~metarec_ref.batch.TaskBatch` with optional full-ranking
inputs: the features of every candidate item per task, the candidate mask (available items
minus the task's support items) and the relevant items (query positives).
:meth:`EvalTasks.from_catalog` builds them from an item catalog and per-task ranking targets.

:func:`evaluate_per_task` runs each method once per (cell, K) and keeps the per-task values;
:func:`results_table` summarises them with CIs and :func:`metarec_ref.eval.paired.paired_comparison`
compares methods on them; :func:`evaluate` is the first two in one call.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import pandas as pd
import torch
from torch import Tensor
from tqdm.auto import tqdm

from metarec_ref.batch import Features, TaskBatch, map_features
from metarec_ref.data.encoders import Encoders
from metarec_ref.data.tasks import Tasks, build_user_tasks, ranking_targets, to_task_batch
from metarec_ref.eval.metrics import (
    per_task_auc,
    per_task_log_loss,
    per_task_mae,
    per_task_ranking,
    per_task_rmse,
    sample_candidates,
    summarize,
)
from metarec_ref.runtime import progress_disabled

RESULT_COLUMNS = ["method", "cell", "K", "metric", "mean", "ci_low", "ci_high", "n_tasks"]
# Per-task metric values of each run: {(method, cell, K): {metric: (tasks,)}}.
PerTaskResults = dict[tuple[str, str, int], dict[str, Tensor]]


class Method(Protocol):
    """What evaluation needs from a learner or a baseline."""

    def adapt(self, batch: TaskBatch) -> Any: ...

    def score(self, state: Any, x: Features) -> Tensor: ...


@dataclass
class EvalTasks:
    """Tasks to evaluate, with optional full-ranking inputs over candidate items.

    candidates_x: leaves ``(tasks, n_items, ...)``, the features of every item for every task;
    candidates: bool ``(tasks, n_items)``, items that may be ranked; relevant: bool
    ``(tasks, n_items)``, the query positives.
    """

    batch: TaskBatch
    candidates_x: Features | None = None
    candidates: Tensor | None = None
    relevant: Tensor | None = None

    def __post_init__(self) -> None:
        given = [v is not None for v in (self.candidates_x, self.candidates, self.relevant)]
        if any(given) and not all(given):
            raise ValueError("give all of candidates_x, candidates and relevant for ranking metrics, or none")
        if all(given):
            t = self.batch.num_tasks
            for name in ("candidates", "relevant"):
                mask = getattr(self, name)
                if mask.dim() != 2 or mask.shape[0] != t or mask.dtype != torch.bool:
                    raise ValueError(
                        f"{name} must be a bool tensor (tasks={t}, n_items), got {mask.dtype} {tuple(mask.shape)}"
                    )

    @property
    def has_ranking(self) -> bool:
        return self.candidates_x is not None

    @classmethod
    def from_catalog(cls, batch: TaskBatch, catalog, targets) -> "EvalTasks":
        """Full ranking over ``catalog`` (``.features(scenario)``) with ``targets`` (``scenario``,
        ``positives``, ``exclude``), as built by :func:`metarec_ref.data.tasks.ranking_targets`."""
        return cls(batch, catalog.features(targets.scenario, targets.user), ~targets.exclude, targets.positives)

    @classmethod
    def from_tasks(cls, tasks: Tasks, encoders: Encoders, device: torch.device | str = "cpu", *,
                   candidates: Tensor | None = None) -> "EvalTasks":
        """Tasks with full ranking over every item of ``encoders`` (or the bool ``(n_items,)`` ``candidates``).

        Each task's support items and code 0 are never ranked; its query positives are relevant.
        """
        targets = ranking_targets(tasks, encoders, device, candidates=candidates)
        return cls.from_catalog(to_task_batch(tasks, encoders, device), encoders.catalog(device), targets)

    def select(self, index: slice) -> "EvalTasks":
        if not self.has_ranking:
            return EvalTasks(self.batch.select(index))
        return EvalTasks(
            self.batch.select(index),
            map_features(self.candidates_x, lambda t: t[index]),
            self.candidates[index],
            self.relevant[index],
        )

    def to(self, device: torch.device | str) -> "EvalTasks":
        if not self.has_ranking:
            return EvalTasks(self.batch.to(device))
        return EvalTasks(
            self.batch.to(device),
            map_features(self.candidates_x, lambda t: t.to(device)),
            self.candidates.to(device),
            self.relevant.to(device),
        )


def _device_of(method) -> torch.device | None:
    params = getattr(method, "parameters", None)
    if params is not None:
        first = next(params(), None)
        if first is not None:
            return first.device
    model = getattr(method, "model", None)
    if model is not None:
        return _device_of(model)
    return None


def per_task_metrics(
    method: Method,
    tasks: EvalTasks | TaskBatch,
    target: str = "binary",
    ks: Sequence[int] = (10,),
    chunk_size: int = 256,
    n_sampled_negatives: int | None = None,
    seed: int = 0,
) -> dict[str, Tensor]:
    """Per-task metric values ``name -> (tasks,)`` of one method on one set of tasks.

    target: "binary" (AUC, log loss, and NDCG@k / HR@k when ranking inputs are given) or
    "rating" (MAE, RMSE). ``n_sampled_negatives`` switches ranking to the sampled-negative
    shortcut (the metric names then say so).
    """
    if target not in ("binary", "rating"):
        raise ValueError(f"target must be 'binary' or 'rating', got {target!r}")
    if isinstance(tasks, TaskBatch):
        tasks = EvalTasks(tasks)
    device = _device_of(method)
    if device is not None and tasks.batch.device != device:
        tasks = tasks.to(device)
    calibrated = getattr(method, "calibrated", True)
    generator = torch.Generator().manual_seed(seed)
    sampled = f" (sampled {n_sampled_negatives})" if n_sampled_negatives else ""
    parts: dict[str, list[Tensor]] = {}

    def add(name: str, values: Tensor) -> None:
        parts.setdefault(name, []).append(values.cpu())

    for start in range(0, tasks.batch.num_tasks, chunk_size):
        chunk = tasks.select(slice(start, start + chunk_size))
        b = chunk.batch
        with torch.no_grad():  # methods that need gradients to adapt enable them inside
            state = method.adapt(b)
            query = method.score(state, b.query_x)
            ranked = method.score(state, chunk.candidates_x) if chunk.has_ranking else None
        if target == "rating":
            add("mae", per_task_mae(query, b.query_y, b.query_mask))
            add("rmse", per_task_rmse(query, b.query_y, b.query_mask))
            continue
        add("auc", per_task_auc(query, b.query_y, b.query_mask))
        if calibrated:
            add("log_loss", per_task_log_loss(query, b.query_y, b.query_mask))
        if ranked is not None:
            candidates = chunk.candidates
            if n_sampled_negatives:
                candidates = sample_candidates(candidates, chunk.relevant, n_sampled_negatives, generator)
            for name, values in per_task_ranking(ranked, chunk.relevant, candidates, ks).items():
                add(f"{name}{sampled}", values)
    return {name: torch.cat(values) for name, values in parts.items()}


def cold_start_eval_tasks(
    cells: Mapping[str, pd.DataFrame],
    encoders: Encoders,
    ks: Sequence[int],
    n_query: int,
    *,
    candidates: Tensor | None = None,
    device: torch.device | str = "cpu",
    **task_kwargs,
) -> dict[str, dict[int, EvalTasks]]:
    """Evaluation tasks ``{cell: {K: EvalTasks}}`` with full-ranking targets, one user per task.

    cells: e.g. ``split.cells`` of :func:`metarec_ref.data.splits.temporal_cold_start_split`;
    encoders: fitted on the meta-training events; candidates: bool ``(n_items,)`` items that may
    be recommended (e.g. ``catalog.available(split.cut_time)``); task_kwargs go to
    :func:`~metarec_ref.data.tasks.build_user_tasks` (``negatives``, ``seed``...). K is the number
    of support events per task before negatives. Cells or K without any task are left out.
    """
    out: dict[str, dict[int, EvalTasks]] = {}
    for cell, events in cells.items():
        for k in ks:
            tasks = build_user_tasks(events, k_support=k, n_query=n_query, **task_kwargs)
            if tasks.num_tasks:
                out.setdefault(cell, {})[k] = EvalTasks.from_tasks(tasks, encoders, device, candidates=candidates)
    return out


def _cells(tasks) -> list[tuple[str, int, EvalTasks]]:
    """Accept {(cell, K): tasks}, {cell: {K: tasks}} or {cell: tasks} (K unknown -> -1)."""
    if not isinstance(tasks, Mapping) or not tasks:
        raise ValueError("tasks must be a non-empty mapping {(cell, K): EvalTasks} or {cell: {K: EvalTasks}}")
    out = []
    for key, value in tasks.items():
        if isinstance(key, tuple):
            cell, k = key
            out.append((str(cell), int(k), value))
        elif isinstance(value, Mapping):
            out += [(str(key), int(k), v) for k, v in value.items()]
        else:
            out.append((str(key), -1, value))
    return out


METRIC_OPTIONS = ("target", "ks", "chunk_size", "n_sampled_negatives", "seed")  # of per_task_metrics


def evaluate_per_task(methods: Mapping[str, Method], tasks: Mapping, *, disable: bool | None = None,
                      **options) -> PerTaskResults:
    """Run every method once on every (cold-start cell, support size K); keep the per-task values.

    tasks: ``{(cell, K): EvalTasks | TaskBatch}`` or ``{cell: {K: ...}}``. options: those of
    :func:`per_task_metrics` (``target``, ``ks``, ``chunk_size``, ``n_sampled_negatives``, ``seed``).
    Returns ``{(method, cell, K): {metric: (tasks,)}}``, for :func:`results_table` and
    :func:`metarec_ref.eval.paired.paired_comparison` alike.
    """
    unknown = sorted(set(options) - set(METRIC_OPTIONS))
    if unknown:
        raise TypeError(f"evaluate_per_task got unknown option(s) {unknown}; it takes {list(METRIC_OPTIONS)} and disable")
    if not methods:
        raise ValueError("methods is empty; pass e.g. {'MAML': maml, 'popularity': Popularity.fit(...)}")
    cells = _cells(tasks)
    disable = progress_disabled() if disable is None else disable
    jobs = [(name, m, cell, k, t) for name, m in methods.items() for cell, k, t in cells]
    return {
        (name, cell, k): per_task_metrics(method, cell_tasks, **options)
        for name, method, cell, k, cell_tasks in tqdm(jobs, desc="evaluate", disable=disable)
    }


def results_table(per_task: Mapping[tuple[str, str, int], Mapping[str, Tensor]], n_boot: int = 1000,
                  seed: int = 0) -> pd.DataFrame:
    """The tidy table of :func:`evaluate` from per-task values ``{(method, cell, K): {metric: (tasks,)}}``."""
    if not per_task:
        raise ValueError("per_task is empty; build it with evaluate_per_task(methods, tasks)")
    frames = []
    for (name, cell, k), values in per_task.items():
        table = summarize(values, n_boot=n_boot, seed=seed)
        table.insert(0, "K", k)
        table.insert(0, "cell", cell)
        table.insert(0, "method", name)
        frames.append(table)
    return pd.concat(frames, ignore_index=True)[RESULT_COLUMNS]


def evaluate(methods: Mapping[str, Method], tasks: Mapping, *, n_boot: int = 1000, **options) -> pd.DataFrame:
    """Run every method on every (cold-start cell, support size K) and return a tidy table.

    tasks: ``{(cell, K): EvalTasks | TaskBatch}`` or ``{cell: {K: ...}}``; options: those of
    :func:`evaluate_per_task`. Columns: method, cell, K, metric, mean, ci_low, ci_high (95%
    bootstrap over tasks, ``n_boot`` replicates), n_tasks. To compare methods pairwise as well, call
    :func:`evaluate_per_task` and :func:`results_table` instead, so that each method runs once.
    """
    per_task = evaluate_per_task(methods, tasks, **options)
    return results_table(per_task, n_boot=n_boot, seed=options.get("seed", 0))


def inner_steps_curve(
    make_method: Callable[[int], Method],
    steps: Sequence[int],
    tasks: EvalTasks | TaskBatch,
    target: str = "binary",
    ks: Sequence[int] = (10,),
    n_boot: int = 1000,
    seed: int = 0,
) -> pd.DataFrame:
    """Metrics after each number of inner (adaptation) steps; ``make_method(steps)`` builds the method.

    E.g. ``make_method = lambda n: MAML(trained.model, inner_steps=n, inner_lr=0.1)`` (MAML needs
    ``n >= 1``; ``FineTune(model, steps=0)`` gives the unadapted point).

    Columns: inner_steps, metric, mean, ci_low, ci_high, n_tasks.
    """
    frames = []
    for n in steps:
        table = summarize(per_task_metrics(make_method(n), tasks, target, ks, seed=seed), n_boot=n_boot, seed=seed)
        table.insert(0, "inner_steps", n)
        frames.append(table)
    return pd.concat(frames, ignore_index=True)


__all__ = [
    "EvalTasks",
    "Method",
    "PerTaskResults",
    "RESULT_COLUMNS",
    "cold_start_eval_tasks",
    "evaluate",
    "evaluate_per_task",
    "inner_steps_curve",
    "per_task_metrics",
    "results_table",
]
