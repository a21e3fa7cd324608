"""From an event log to cold-start meta-learning tasks, in one call shared by every entry point.

:func:`build_cold_start_tasks` runs the data half of the book's protocol: (optionally) validate
the log, cut the temporal cold-start split, fit the encoders, build per-user tasks with sampled
negatives for meta-training (users before the cut) and validation (the earlier new users), turn
them into :class:`~metarec_ref.batch.TaskBatch` tensors, and build full-ranking evaluation tasks
on the test users' cold-start cells. ``run_cold_start``, the distributed command line and the
benchmarks all call it, so they cut the same tasks from the same log.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import pandas as pd
import torch

from metarec_ref.batch import FeatureSpec, TaskBatch
from metarec_ref.data.encoders import Encoders
from metarec_ref.data.schema import validate_events
from metarec_ref.data.splits import ColdStartSplit, temporal_cold_start_split
from metarec_ref.data.tasks import build_user_tasks, to_task_batch
from metarec_ref.eval.evaluate import EvalTasks, cold_start_eval_tasks

# Stages reported to ``on_stage``, in order (benchmarks time each one).
COLD_START_STAGES = ("validate", "split", "encoders", "tasks", "tensors")


@dataclass
class ColdStartTasks:
    """The split, the encoders and the task tensors of a cold-start experiment.

    ``test`` is ``{cell: {k_support: EvalTasks}}`` (what :func:`metarec_ref.eval.evaluate` takes),
    only for the test users; cells without any task are left out.
    """

    events: pd.DataFrame  # the (validated) log the tasks were cut from; history for negatives
    split: ColdStartSplit
    encoders: Encoders
    train: TaskBatch
    val: TaskBatch
    test: dict[str, dict[int, EvalTasks]]

    @property
    def spec(self) -> FeatureSpec:
        return self.encoders.spec

    @property
    def counts(self) -> dict[str, int]:
        """Tasks per part: ``train_tasks``, ``val_tasks`` and ``test_tasks_<cell>``."""
        counts = {"train_tasks": self.train.num_tasks, "val_tasks": self.val.num_tasks}
        for cell, by_k in self.test.items():
            counts[f"test_tasks_{cell}"] = sum(tasks.batch.num_tasks for tasks in by_k.values())
        return counts


def build_cold_start_tasks(
    events: pd.DataFrame,
    *,
    k_support: int = 5,
    n_query: int = 10,
    n_neg: int = 1,
    negatives: str = "uniform",
    cut_quantile: float = 0.8,
    cells: Sequence[str] = ("new_user_existing_item",),
    available_items_only: bool = False,
    validate: bool = False,
    seed: int = 0,
    device: torch.device | str = "cpu",
    on_stage: Callable[[str], None] | None = None,
) -> ColdStartTasks:
    """Validated log -> temporal cold-start split -> encoders -> train / validation / test tasks.

    Training tasks use ``seed``, validation ``seed + 1`` and test ``seed + 2``; validation and test
    negatives are drawn against the whole log, so a new user's negatives skip what they saw before.

    Args:
        cells: cold-start cells of the test users to evaluate on (``()`` builds no test tasks).
        available_items_only: rank only items already in the catalog before the cut time.
        validate: run :func:`~metarec_ref.data.validate_events` first (for a raw log).
        on_stage: called with each finished stage's name (see ``COLD_START_STAGES``).
    """
    report = on_stage or (lambda name: None)
    if validate:
        events = validate_events(events, k_support=k_support, n_query=n_query)
        report("validate")
    split = temporal_cold_start_split(events, cut_quantile=cut_quantile)
    report("split")
    encoders = Encoders.fit(events)
    report("encoders")

    task_kwargs = dict(n_neg=n_neg, negatives=negatives)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        train = build_user_tasks(split.train, k_support, n_query, seed=seed, **task_kwargs)
        val = build_user_tasks(split.valid, k_support, n_query, history=events, seed=seed + 1, **task_kwargs)
    for name, n in {"train_tasks": train.num_tasks, "val_tasks": val.num_tasks}.items():
        if n < 2:
            raise ValueError(
                f"only {n} {name.replace('_', ' ')} with k_support={k_support} and a query; "
                f"lower k_support, move cut_quantile (now {cut_quantile}) or use a longer log"
            )
    test_cells = {c: split.cells[c][split.cells[c]["user_id"].isin(split.test_users)] for c in cells}
    candidates = encoders.catalog().available(split.cut_time) if available_items_only else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        test = cold_start_eval_tasks(test_cells, encoders, ks=[k_support], n_query=n_query, candidates=candidates,
                                     history=events, seed=seed + 2, device=device, **task_kwargs)
    if cells and not test:
        raise ValueError(
            f"no test user has {k_support} events in the cells {list(cells)}; lower k_support or cut_quantile"
        )
    report("tasks")
    train_batch, val_batch = to_task_batch(train, encoders, device), to_task_batch(val, encoders, device)
    report("tensors")
    return ColdStartTasks(events, split, encoders, train_batch, val_batch, test)


__all__ = [
    "ColdStartTasks",
    "COLD_START_STAGES",
    "build_cold_start_tasks",
]
