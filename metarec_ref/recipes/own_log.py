"""A reader's own event log, end to end: profile, protocol, strong baselines, tuned learners, verdicts.

:func:`run_own_log` is what the "your own data" chapter calls:

1. profile the log (:func:`~metarec_ref.data.log_profile.profile_log`);
2. pick the cold-start protocol that fits it (:func:`~metarec_ref.data.protocols.choose_protocol`)
   and stop, with the reason and the fix, when it leaves too few validation or test users;
3. fit the baselines (popularity, recent popularity, item-kNN, EASE, a global model, fine-tuning)
   and the learners (MAML, Meta-SGD, the item-item meta-learner), every tuned value chosen on
   validation users (every grid point, or the first ``max_grid_points``);
4. score everything once on the test users, over ``n_seeds`` training seeds, and compare each
   learner with the best baseline: paired bootstrap over users and seeds, Holm-corrected over the
   learners and metrics compared.

The learners are meta-trained in worker processes (``workers``, one per core by default): their grid
searches in ``workers - 1`` processes while this one fits the classical baselines, then their later
seeds in ``workers`` (:func:`~metarec_ref.runtime.start_in_processes`). In the pinned numerics every
job runs on one thread, so the results are those of one process.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import asdict, dataclass, field
from functools import partial

import numpy as np
import pandas as pd
import torch

from metarec_ref.data.encoders import Encoders
from metarec_ref.data.evidence import EvidenceNeeds
from metarec_ref.data.log_profile import LogProfile, profile_log
from metarec_ref.data.negatives import NegativeSampling
from metarec_ref.data.protocols import PROTOCOL_BUILDERS, ProtocolChoice, ProtocolSplit, choose_protocol
from metarec_ref.data.tasks import Tasks, to_task_batch
from metarec_ref.eval.baselines import FineTune, GlobalModel, tune_fine_tuning
from metarec_ref.eval.evaluate import EvalTasks, per_task_metrics
from metarec_ref.eval.metrics import summarize_methods
from metarec_ref.recipes.item_item import item_item_training_batch
from metarec_ref.recipes.online_retail import ClassicalGrid
from metarec_ref.recipes.own_log_tables import grid_edges_of, meta_steps_row, tuning_rows, verdict_table
from metarec_ref.recipes.own_log_methods import (
    ITEM_ITEM,
    LEARNER_NAMES,
    LearnerRecipe,
    fit_classical,
    fit_global_model,
    item_item_setup,
    item_item_tasks,
    train_item_item,
    train_meta_learner,
    tune_meta_learner,
)
from metarec_ref.eval.ease import default_ease_memory_gb
from metarec_ref.runtime import (
    available_cores,
    leaving_cores,
    map_in_processes,
    seed_everything,
    start_in_processes,
)
from metarec_ref.train.meta_trainer import MetaTrainConfig

# Memory per chunk of tasks ranked against the whole catalogue, by what a task holds per item: the
# MLP's float32 activations (64 hidden units), or a classical baseline's float64 score. Measured on a
# 69,000-product catalogue, the MLP ranks twice as fast two tasks at a time as eleven, and the
# classical baselines fastest about a dozen at a time (chunks of two tasks or more give the same
# results in the pinned numerics).
MODEL_RANKING_MB = 40
CLASSICAL_RANKING_MB = 8


@dataclass
class OwnLogConfig:
    """Every choice of the own-log comparison; plain values, so papermill can pass them."""

    k_support: int = 5
    n_query: int = 10
    protocol: str = "auto"
    cut_quantile: float = 0.8
    min_val_tasks: int = 30
    min_test_tasks: int = 100
    max_train_tasks: int = 4000  # a random subset beyond this (speed on long logs)
    max_eval_tasks: int = 1000  # validation and test users scored, at most
    n_neg: int = 1
    negatives: str = "uniform"
    model: str = "mlp"
    # What adapts per user, for the learners and fine-tuning alike: "dense" keeps the embedding
    # tables global (MeLU's choice), so a task never copies a catalogue-sized table.
    adapt: str = "dense"
    learners: tuple[str, ...] = ("maml", "metasgd", "item_item")
    # Starting grids: a chosen value on an edge that is not a natural bound extends its grid, at most
    # max_extensions times; a value still on an edge is reported in OwnLogResult.grid_edges.
    max_extensions: int = 3
    inner_lr_grid: tuple[float, ...] = (0.01, 0.03, 0.1, 0.3, 1.0)
    inner_steps_grid: tuple[int, ...] = (1, 3, 5)
    max_inner_steps: int = 10  # a budget cap for the extensions of every adaptation's step count
    max_meta_steps: int = 300
    meta_batch_size: int = 32
    outer_lr: float = 3e-3
    fine_tune_lr_grid: tuple[float, ...] = (0.003, 0.01, 0.03, 0.1, 0.3, 1.0)
    global_epochs: int = 2
    shrinkage_grid: tuple[float, ...] = (0.0, 10.0, 100.0, 1000.0)  # one pass over the co-occurrences
    ease_lambdas: tuple[float, ...] = (10.0, 100.0, 1000.0, 10000.0)  # one inverse each
    window_days: tuple[float, ...] = (7, 30, 90, 365)
    # Memory for EASE's dense inverse (None: default_ease_memory_gb(), from this machine's memory);
    # a larger catalogue is fitted on the most popular items that fit.
    ease_memory_gb: float | None = None
    item_item_max_items: int = 8_000  # its similarity matrices are dense
    # The learners' grid points tried, in grid order (None: all). A count, never seconds, so the
    # results do not depend on the machine's load.
    max_grid_points: int | None = None
    # Processes that meta-train the learners side by side (their grid searches, their later seeds);
    # None: one per available core. The results do not depend on it (each job runs on one thread
    # in the pinned numerics); on a GPU everything runs in this process.
    workers: int | None = None
    n_seeds: int = 3
    n_boot: int = 2000
    seed: int = 0

    def __post_init__(self) -> None:
        unknown = [name for name in self.learners if name not in LEARNER_NAMES]
        if unknown:
            raise ValueError(f"learners {unknown} unknown; choose from {list(LEARNER_NAMES)}")
        if self.workers is not None and (not isinstance(self.workers, int) or self.workers < 1):
            raise ValueError(f"workers must be None or an int >= 1, got {self.workers!r}")
        if self.n_seeds < 1:
            raise ValueError(f"n_seeds must be >= 1, got {self.n_seeds}")
        if self.max_inner_steps < max(self.inner_steps_grid, default=1):
            raise ValueError(f"max_inner_steps={self.max_inner_steps} is below inner_steps_grid {self.inner_steps_grid}")
        if self.max_extensions < 0:
            raise ValueError(f"max_extensions must be >= 0, got {self.max_extensions}")
        if self.ease_memory_gb is not None and not self.ease_memory_gb > 0:
            raise ValueError(f"ease_memory_gb must be None or > 0 (GB), got {self.ease_memory_gb!r}")


@dataclass
class OwnLogResult:
    """What a reader gets: profile, protocol and evidence, and (when enough) results and verdicts."""

    profile: LogProfile
    choice: ProtocolChoice
    enough: bool
    results: pd.DataFrame = field(default_factory=pd.DataFrame)  # method, metric, mean, CI, seed_std
    verdicts: pd.DataFrame = field(default_factory=pd.DataFrame)  # learner vs the best baseline
    tuning: dict = field(default_factory=dict)  # method -> values chosen on validation users
    tuning_table: pd.DataFrame = field(default_factory=pd.DataFrame)  # per tuned value: grid, extensions, edge
    skipped: dict = field(default_factory=dict)  # method -> why it did not run
    grid_edges: list = field(default_factory=list)  # tuned values on an edge of their grid
    counts: dict = field(default_factory=dict)
    timings: dict = field(default_factory=dict)
    config: dict = field(default_factory=dict)

    @property
    def stop_reason(self) -> str | None:
        return None if self.enough else self.choice.reason


def _capped(tasks: Tasks, cap: int, seed: int) -> Tasks:
    """A random subset of at most ``cap`` tasks (all when fewer), in their original order."""
    if tasks.num_tasks <= cap:
        return tasks
    keep = np.sort(np.random.default_rng(seed).choice(tasks.num_tasks, cap, replace=False))
    return tasks.select(keep)


def ranking_chunk(n_items: int, bytes_per_item: int, budget_mb: float) -> int:
    """Tasks ranked at once: ``tasks x n_items x bytes_per_item`` within ``budget_mb`` (1 to 256 tasks)."""
    return max(1, min(256, int(budget_mb * 2**20) // (bytes_per_item * n_items)))


def _eval_tasks(tasks: Tasks, encoders: Encoders, device, ranking: bool) -> EvalTasks:
    return EvalTasks.from_tasks(tasks, encoders, device) if ranking else EvalTasks(to_task_batch(tasks, encoders, device))


def _retrained(recipe: LearnerRecipe, train_batch, val_batch, inner_lr: float, inner_steps: int, seed: int):
    """The learner meta-trained anew with tuned values and another seed (a job of map_in_processes)."""
    return train_meta_learner(recipe, train_batch, val_batch, inner_lr=inner_lr, inner_steps=inner_steps, seed=seed)[0]


def run_own_log(events: pd.DataFrame, config: OwnLogConfig | None = None,
                device: torch.device | str = "cpu", *, profile: LogProfile | None = None,
                choice: ProtocolChoice | None = None, progress=None) -> OwnLogResult:
    """Profile, protocol, baselines, learners and verdicts on a validated log (see the module doc).

    Args:
        events: a validated log (:func:`~metarec_ref.data.loaders.load_events` or
            :func:`~metarec_ref.data.schema.validate_events`).
        config: every choice of the comparison (:class:`OwnLogConfig`): task sizes, protocol,
            negatives, model, learners and their grids, baselines' grids, seeds; None: its defaults.
        device: where models train and score.
        profile: the log's profile when the caller already has it (a chapter shows it first);
            None: computed here.
        choice: the protocol when the caller already chose it with ``config``'s task sizes; None:
            :func:`~metarec_ref.data.protocols.choose_protocol` with ``config``.
        progress: optional callable ``progress(stage: str)`` told when each stage starts.

    Returns:
        :class:`OwnLogResult`: the profile, the protocol and its evidence, and, when the evidence is
        enough, the results table (mean, 95% CI and seed spread per method and metric), the verdicts
        of each learner against the best baseline (Holm-corrected), the values tuned on validation
        users, the grids whose chosen value sits on an edge, and what was skipped and why. With too
        little evidence, ``enough`` is False and ``stop_reason`` says which filter stopped it.
    """
    config = config or OwnLogConfig()
    say = progress or (lambda stage: None)
    clock, timings = time.monotonic(), {}

    def lap(stage: str) -> None:
        nonlocal clock
        now = time.monotonic()
        timings[stage] = now - clock
        clock = now

    seed_everything(config.seed)
    say("profile")
    profile = profile if profile is not None else profile_log(events)
    if choice is None:
        choice = choose_protocol(
            events, k_support=config.k_support, n_query=config.n_query, protocol=config.protocol,
            split=ProtocolSplit(cut_quantile=config.cut_quantile, seed=config.seed),
            needs=EvidenceNeeds(min_val_tasks=config.min_val_tasks, min_test_tasks=config.min_test_tasks))
    elif (choice.k_support, choice.n_query) != (config.k_support, config.n_query):
        raise ValueError(f"choice was made for k_support={choice.k_support}, n_query={choice.n_query}; "
                         f"config asks for {config.k_support}, {config.n_query}")
    lap("profile and protocol")
    result = OwnLogResult(profile, choice, choice.enough, config=asdict(config), timings=timings)
    if not choice.enough:
        return result

    say("tasks")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        negatives = NegativeSampling(config.n_neg, config.negatives, history=events) if config.n_neg else None
        tasks = choice.build_tasks(negatives=negatives, seed=config.seed)
    encoders = Encoders.fit(events)
    ranking = choice.parts.entity == "user_id"
    train = _capped(tasks["train"], config.max_train_tasks, config.seed)
    train_batch = to_task_batch(train, encoders, device)
    val = _eval_tasks(_capped(tasks["valid"], config.max_eval_tasks, config.seed + 1), encoders, device, ranking)
    test = _eval_tasks(_capped(tasks["test"], config.max_eval_tasks, config.seed + 2), encoders, device, ranking)
    result.counts = {"train_tasks": train_batch.num_tasks, "val_tasks": val.batch.num_tasks,
                     "test_tasks": test.batch.num_tasks, "n_items": encoders.spec.n_items}
    lap("tasks")
    chunk = ranking_chunk(encoders.spec.n_items, 4 * 64, MODEL_RANKING_MB)
    classical_chunk = ranking_chunk(encoders.spec.n_items, 8, CLASSICAL_RANKING_MB)

    def scores(method, eval_tasks, chunk_size: int = chunk) -> dict[str, torch.Tensor]:
        return per_task_metrics(method, eval_tasks, ks=(10,), chunk_size=chunk_size)

    per_task: dict[str, dict[str, torch.Tensor]] = {}
    baselines: list[str] = []
    rows: list[dict] = []  # the tuning table
    # Meta-training evaluates every tenth of the meta-steps, stopping after 3 without a better validation AUC.
    outer = MetaTrainConfig(meta_batch_size=min(config.meta_batch_size, train_batch.num_tasks),
                            outer_lr=config.outer_lr, meta_steps=config.max_meta_steps,
                            eval_every=max(config.max_meta_steps // 10, 1), patience=3, monitor="val_auc")
    algorithms = [a for a in config.learners if a != ITEM_ITEM]
    recipes = {a: LearnerRecipe(a, config.model, encoders.spec, config.adapt, outer, device) for a in algorithms}
    workers = 1 if torch.device(device).type != "cpu" else config.workers or available_cores()
    tune = partial(tune_meta_learner, seed=config.seed, max_grid_points=config.max_grid_points,
                   max_extensions=config.max_extensions, max_inner_steps=config.max_inner_steps)
    learner_grids = {"inner_lr": list(config.inner_lr_grid), "inner_steps": list(config.inner_steps_grid)}
    # The learners' grid searches start now in worker processes, while this process fits the classical
    # baselines in one worker's place (with one worker, the searches run here after the baselines).
    with start_in_processes(tune, [(recipes[a], train_batch, val.batch, learner_grids) for a in algorithms],
                            workers - 1) as tuning:
        if ranking:
            say("classical baselines")
            with leaving_cores(tuning.processes):
                grid = ClassicalGrid(config.shrinkage_grid, config.ease_lambdas, config.window_days)
                ease_gb = config.ease_memory_gb if config.ease_memory_gb is not None else default_ease_memory_gb()
                classical, result.skipped = fit_classical(choice.parts.train, encoders, val, grid,
                                                          ease_memory_gb=ease_gb, max_extensions=config.max_extensions,
                                                          chunk_size=classical_chunk)
                for name, fitted in classical.items():
                    per_task[name] = scores(fitted.method, test, classical_chunk)
                    result.tuning[name] = fitted.chosen
                    if fitted.search is not None:
                        rows += tuning_rows(name, fitted.search)
                    baselines.append(name)
            lap("classical baselines")
        say("meta-learner tuning")
        searches = tuning.results()
    tuned = {}
    for algorithm, fitted in zip(algorithms, searches):
        tuned[algorithm] = fitted
        result.tuning[LEARNER_NAMES[algorithm]] = {**fitted.chosen, "grid points tried": len(fitted.grid)}
        rows += tuning_rows(LEARNER_NAMES[algorithm], fitted.search, {"inner_steps": config.max_inner_steps})
        rows.append(meta_steps_row(LEARNER_NAMES[algorithm], fitted.chosen["meta_steps"], outer))
    lap("meta-learner tuning")
    # Fine-tuning's grid holds every learner's chosen inner steps: the same adaptation budget.
    steps_grid = sorted({1, 3, *(t.chosen["inner_steps"] for t in tuned.values())})

    item_item = None
    if ITEM_ITEM in config.learners:
        if not ranking:
            result.skipped[LEARNER_NAMES[ITEM_ITEM]] = "it ranks items for users; this protocol's tasks are items"
        elif encoders.spec.n_items > config.item_item_max_items:
            result.skipped[LEARNER_NAMES[ITEM_ITEM]] = (
                f"{encoders.spec.n_items:,} item codes exceed ITEM_ITEM_MAX_ITEMS = {config.item_item_max_items:,} "
                "(its item-item similarity is a dense matrix)")
        else:
            item_item, task_events = item_item_setup(
                choice.parts.train, encoders, classical["item-kNN"], classical["recent popularity"],
                n_query=config.n_query, meta_steps=config.max_meta_steps, seed=config.seed)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)
                ii_tasks = PROTOCOL_BUILDERS[choice.name](
                    task_events, config.k_support, item_item.config.n_query,
                    negatives=NegativeSampling(item_item.config.n_neg, history=events), seed=config.seed)
                ii_train = item_item_training_batch(ii_tasks, encoders, item_item.config, device)
            if ii_train.num_tasks > config.max_train_tasks:
                keep = np.sort(np.random.default_rng(config.seed).choice(ii_train.num_tasks, config.max_train_tasks,
                                                                         replace=False))
                ii_train = ii_train.select(torch.as_tensor(keep, device=ii_train.device))
            ii_test = item_item_tasks(test, item_item)

    say("training over seeds")
    # The learners of the later seeds, meta-trained side by side with the values tuned above.
    later = [(algorithm, config.seed + s) for s in range(1, config.n_seeds) for algorithm in tuned]
    retrained = dict(zip(later, map_in_processes(_retrained, [
        (recipes[a], train_batch, val.batch, tuned[a].chosen["inner_lr"], tuned[a].chosen["inner_steps"], seed)
        for a, seed in later], workers)))
    seeded: dict[str, list[dict[str, torch.Tensor]]] = {}
    for s in range(config.n_seeds):
        seed = config.seed + s
        seed_everything(seed)
        global_model = fit_global_model(config.model, encoders.spec, train_batch, epochs=config.global_epochs,
                                        seed=seed, device=device)
        if s == 0:
            fine_tune = tune_fine_tuning(global_model, val.batch, steps_grid, config.fine_tune_lr_grid,
                                         adapt=config.adapt, max_extensions=config.max_extensions,
                                         steps_bounds=(1, config.max_inner_steps))
            result.tuning["fine-tune"] = fine_tune.chosen
            rows += tuning_rows("fine-tune", fine_tune.search, {"steps": config.max_inner_steps})
            fine_tune_method = fine_tune.method
        else:
            fine_tune_method = FineTune(global_model, fine_tune.steps, fine_tune.lr, adapt=config.adapt)
        seeded.setdefault("global model", []).append(scores(GlobalModel(global_model), test))
        seeded.setdefault("fine-tune", []).append(scores(fine_tune_method, test))
        for algorithm, fitted in tuned.items():
            learner = fitted.method if s == 0 else retrained[algorithm, seed]
            seeded.setdefault(LEARNER_NAMES[algorithm], []).append(scores(learner, test))
        if item_item is not None:
            learner = train_item_item(item_item, ii_train, val, seed)
            seeded.setdefault(LEARNER_NAMES[ITEM_ITEM], []).append(scores(learner, ii_test))
    for name, runs in seeded.items():
        per_task[name] = {m: torch.stack([r[m] for r in runs]) for m in runs[0]}
    baselines += ["global model", "fine-tune"]
    lap("training over seeds")
    result.tuning_table = pd.DataFrame(rows)
    result.grid_edges = grid_edges_of(result.tuning_table) if rows else []

    metrics = ("ndcg@10", "hr@10", "auc") if ranking else ("auc",)
    learners = [name for name in per_task if name not in baselines]
    result.results = summarize_methods({name: {m: values[m] for m in metrics if m in values}
                                        for name, values in per_task.items()}, n_boot=config.n_boot, seed=config.seed)
    verdict_metrics = ("ndcg@10", "auc") if ranking else ("auc",)
    result.verdicts = verdict_table(per_task, learners, baselines, verdict_metrics, config.n_boot, config.seed)
    lap("verdicts")
    return result


__all__ = [
    "OwnLogConfig",
    "OwnLogResult",
    "CLASSICAL_RANKING_MB",
    "MODEL_RANKING_MB",
    "grid_edges_of",
    "meta_steps_row",
    "ranking_chunk",
    "run_own_log",
    "tuning_rows",
    "verdict_table",
]
