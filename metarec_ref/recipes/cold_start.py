"""One call from a validated event log to a cold-start comparison: the evaluation of the book.

:func:`run_cold_start` cuts a temporal cold-start split, builds per-user tasks, meta-trains a
learner (MAML by default) on the past, tunes a fine-tuning baseline on validation users, and
scores every method once on the test users, with 95% CIs and paired verdicts against the best
baseline. Chapters call it on synthetic data; readers call it on their own logs (see the
"your own data" chapter).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import pandas as pd
import torch

from metarec_ref.data.negatives import NegativeSampling
from metarec_ref.eval.baselines import (
    FineTune,
    GlobalModel,
    Popularity,
    SupervisedConfig,
    pool_events,
    train_supervised,
    tune_fine_tuning,
)
from metarec_ref.eval.evaluate import evaluate_per_task, results_table
from metarec_ref.eval.paired import paired_comparison
from metarec_ref.meta.learners import ALGORITHMS, build_learner
from metarec_ref.meta.maml import InnerLoopConfig
from metarec_ref.models.recommenders import build_model
from metarec_ref.recipes.pipeline import ColdStartCut, build_cold_start_tasks
from metarec_ref.runtime import seed_everything
from metarec_ref.train.meta_trainer import MetaTrainConfig, MetaTrainer

BASELINES = ("popularity", "global", "fine-tune")


@dataclass
class ColdStartConfig:
    """Everything a cold-start comparison needs; all plain values, so papermill can pass them."""

    k_support: int = 5
    n_query: int = 10
    cut_quantile: float = 0.8
    n_neg: int = 1
    negatives: str = "uniform"
    model: str = "mlp"
    algorithm: str = "maml"
    inner_steps: int = 2
    inner_lr: float = 0.1
    meta_steps: int = 100
    meta_batch_size: int = 16
    outer_lr: float = 3e-3
    cells: tuple[str, ...] = ("new_user_existing_item",)
    metric: str = "ndcg@10"
    seed: int = 0

    def __post_init__(self) -> None:
        gradient_based = [name for name, entry in ALGORITHMS.items() if entry.inner_loop]
        if self.algorithm not in gradient_based:
            raise ValueError(
                f"algorithm={self.algorithm!r}: run_cold_start supports the gradient-based learners {gradient_based}"
            )
        if not 0 < self.cut_quantile < 1:
            raise ValueError(f"cut_quantile must be in (0, 1), got {self.cut_quantile}")
        if self.negatives not in ("uniform", "popularity"):
            raise ValueError(f"negatives must be 'uniform' or 'popularity', got {self.negatives!r}")


@dataclass
class ColdStartResult:
    """Tidy results (mean and CI per method), paired verdicts, and what the run was made of."""

    results: pd.DataFrame
    paired: pd.DataFrame
    split_summary: pd.DataFrame
    history: pd.DataFrame
    counts: dict[str, int] = field(default_factory=dict)
    config: dict = field(default_factory=dict)


def run_cold_start(
    events: pd.DataFrame, config: ColdStartConfig | None = None, device: torch.device | str = "cpu"
) -> ColdStartResult:
    """Meta-learner vs popularity, global model and tuned fine-tuning on new users of ``events``.

    ``events`` is a validated log (:func:`metarec_ref.data.validate_events` or a loader). The test
    users are the later half of the users who arrive after the cut; they are scored once.
    """
    config = config or ColdStartConfig()
    seed_everything(config.seed)
    negatives = NegativeSampling(config.n_neg, config.negatives) if config.n_neg else None
    cut = ColdStartCut(config.k_support, config.n_query, negatives, config.cut_quantile, tuple(config.cells),
                       seed=config.seed)
    tasks = build_cold_start_tasks(events, cut, device=device)
    split, spec, train_batch, val_batch, eval_tasks = tasks.split, tasks.spec, tasks.train, tasks.val, tasks.test
    counts = tasks.counts

    inner = InnerLoopConfig(config.inner_steps, config.inner_lr)
    learner = build_learner(config.algorithm, build_model(config.model, spec), inner).to(device)
    trainer_config = MetaTrainConfig(
        meta_batch_size=min(config.meta_batch_size, train_batch.num_tasks), outer_lr=config.outer_lr,
        meta_steps=config.meta_steps, eval_every=max(config.meta_steps // 5, 1), patience=None, seed=config.seed,
    )
    history = MetaTrainer(learner, train_batch, val_batch, trainer_config).fit()

    global_model = build_model(config.model, spec).to(device)
    train_supervised(global_model, *pool_events(train_batch), SupervisedConfig(epochs=3, seed=config.seed))
    choice = tune_fine_tuning(global_model, val_batch, steps_grid=range(1, config.inner_steps + 1),
                              lr_grid=(0.01, 0.1, 0.3))
    methods = {
        ALGORITHMS[config.algorithm].label: learner,
        "fine-tune": FineTune(global_model, choice.steps, choice.lr),
        "global": GlobalModel(global_model),
        "popularity": Popularity.fit(train_batch, spec.n_items),
    }
    # Each method runs once; the CI table and the paired verdicts read the same per-task values.
    per_task = evaluate_per_task(methods, eval_tasks, ks=(10,), seed=config.seed)
    results = results_table(per_task, seed=config.seed)
    paired = paired_comparison(per_task, baselines=BASELINES, metrics=("auc", config.metric), seed=config.seed)
    return ColdStartResult(results, paired, split.summary(), history, counts, asdict(config))


__all__ = ["BASELINES", "ColdStartConfig", "ColdStartResult", "run_cold_start"]
