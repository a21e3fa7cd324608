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
from collections.abc import Callable
from dataclasses import dataclass

import pandas as pd
import torch

from metarec_ref.batch import FeatureSpec, TaskBatch
from metarec_ref.data.encoders import Encoders
from metarec_ref.data.negatives import NegativeSampling
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


@dataclass(frozen=True)
class ColdStartCut:
    """How a log is cut into cold-start tasks: task sizes, negatives, the cut time, the test cells, the seed.

    Args:
        k_support: support events per user task.
        n_query: query events per task at most.
        negatives: sampled negatives of every part (validation and test ones drawn against the
            whole log, so a new user's negatives skip what they saw before); None: none.
        cut_quantile: the cut time, a quantile of the timestamps.
        cells: cold-start cells of the test users to evaluate on (``()`` builds no test tasks).
        available_items_only: rank only items already in the catalog before the cut time.
        seed: training tasks use ``seed``, validation ``seed + 1``, test ``seed + 2``.
    """

    k_support: int = 5
    n_query: int = 10
    negatives: NegativeSampling | None = NegativeSampling()
    cut_quantile: float = 0.8
    cells: tuple[str, ...] = ("new_user_existing_item",)
    available_items_only: bool = False
    seed: int = 0


def build_cold_start_tasks(
    events: pd.DataFrame,
    cut: ColdStartCut | None = None,
    *,
    validate: bool = False,
    device: torch.device | str = "cpu",
    on_stage: Callable[[str], None] | None = None,
) -> ColdStartTasks:
    """Validated log -> temporal cold-start split -> encoders -> train / validation / test tasks.

    Args:
        events: a validated log (or a raw one with ``validate=True``).
        cut: how to cut it (:class:`ColdStartCut`); None: its defaults.
        validate: run :func:`~metarec_ref.data.validate_events` first (for a raw log).
        device: where the task tensors go.
        on_stage: called with each finished stage's name (see ``COLD_START_STAGES``).
    """
    cut = cut or ColdStartCut()
    k_support, n_query, seed = cut.k_support, cut.n_query, cut.seed
    report = on_stage or (lambda name: None)
    if validate:
        events = validate_events(events, k_support=k_support, n_query=n_query)
        report("validate")
    split = temporal_cold_start_split(events, cut_quantile=cut.cut_quantile)
    report("split")
    encoders = Encoders.fit(events)
    report("encoders")

    whole_log = cut.negatives.against(events) if cut.negatives is not None else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        train = build_user_tasks(split.train, k_support, n_query, negatives=cut.negatives, seed=seed)
        val = build_user_tasks(split.valid, k_support, n_query, negatives=whole_log, seed=seed + 1)
    for name, n in {"train_tasks": train.num_tasks, "val_tasks": val.num_tasks}.items():
        if n < 2:
            raise ValueError(
                f"only {n} {name.replace('_', ' ')} with k_support={k_support} and a query; "
                f"lower k_support, move cut_quantile (now {cut.cut_quantile}) or use a longer log"
            )
    test_cells = {c: split.cells[c][split.cells[c]["user_id"].isin(split.test_users)] for c in cut.cells}
    candidates = encoders.catalog().available(split.cut_time) if cut.available_items_only else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        test = cold_start_eval_tasks(test_cells, encoders, ks=[k_support], n_query=n_query, candidates=candidates,
                                     negatives=whole_log, seed=seed + 2, device=device)
    if cut.cells and not test:
        raise ValueError(
            f"no test user has {k_support} events in the cells {list(cut.cells)}; lower k_support or cut_quantile"
        )
    report("tasks")
    train_batch, val_batch = to_task_batch(train, encoders, device), to_task_batch(val, encoders, device)
    report("tensors")
    return ColdStartTasks(events, split, encoders, train_batch, val_batch, test)


__all__ = [
    "COLD_START_STAGES",
    "ColdStartCut",
    "ColdStartTasks",
    "build_cold_start_tasks",
]
