"""One call from a validated event log to a cold-start comparison: the evaluation of the book.

:func:`run_cold_start` cuts a temporal cold-start split, builds per-user tasks, meta-trains a
learner (MAML by default) on the past, tunes a fine-tuning baseline on validation users, and
scores every method once on the test users, with 95% CIs and paired verdicts against the best
baseline. Chapters call it on synthetic data; readers call it on their own logs (see the
"your own data" chapter).
"""

from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass, field

import pandas as pd
import torch

from metarec_ref.data.encoders import Encoders
from metarec_ref.data.splits import temporal_cold_start_split
from metarec_ref.data.tasks import build_user_tasks, to_task_batch
from metarec_ref.eval.baselines import (
    FineTune,
    GlobalModel,
    Popularity,
    SupervisedConfig,
    pool_events,
    train_supervised,
    tune_fine_tuning,
)
from metarec_ref.eval.evaluate import cold_start_eval_tasks, evaluate
from metarec_ref.eval.paired import paired_comparison
from metarec_ref.meta.maml import InnerLoopConfig
from metarec_ref.models.recommenders import build_model
from metarec_ref.runtime import seed_everything
from metarec_ref.train.meta_trainer import (
    ALGORITHMS,
    MetaTrainConfig,
    MetaTrainer,
    build_learner,
)

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
        if self.algorithm not in ALGORITHMS or self.algorithm in ("protonet", "matchingnet"):
            raise ValueError(
                f"algorithm={self.algorithm!r}: run_cold_start supports the gradient-based learners "
                "'maml', 'fomaml', 'metasgd' and 'reptile'"
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
    split = temporal_cold_start_split(events, cut_quantile=config.cut_quantile)
    encoders = Encoders.fit(events)
    spec = encoders.spec
    task_kwargs = dict(n_neg=config.n_neg, negatives=config.negatives)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        train_tasks = build_user_tasks(split.train, config.k_support, config.n_query, seed=config.seed, **task_kwargs)
        val_tasks = build_user_tasks(split.valid, config.k_support, config.n_query, history=events,
                                     seed=config.seed + 1, **task_kwargs)
    counts = {"train_tasks": train_tasks.num_tasks, "val_tasks": val_tasks.num_tasks}
    for name, n in counts.items():
        if n < 2:
            raise ValueError(
                f"only {n} {name.replace('_', ' ')} with k_support={config.k_support} and a query; "
                f"lower k_support, move cut_quantile (now {config.cut_quantile}) or use a longer log"
            )
    train_batch = to_task_batch(train_tasks, encoders, device)
    val_batch = to_task_batch(val_tasks, encoders, device)

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
        config.algorithm.upper() if config.algorithm != "metasgd" else "Meta-SGD": learner,
        "fine-tune": FineTune(global_model, choice.steps, choice.lr),
        "global": GlobalModel(global_model),
        "popularity": Popularity.fit(train_batch, spec.n_items),
    }
    cells = {c: split.cells[c][split.cells[c]["user_id"].isin(split.test_users)] for c in config.cells}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        eval_tasks = cold_start_eval_tasks(cells, encoders, ks=[config.k_support], n_query=config.n_query,
                                           history=events, seed=config.seed + 2, device=device, **task_kwargs)
    if not eval_tasks:
        raise ValueError(
            f"no test user has {config.k_support} events in the cells {list(config.cells)}; "
            "lower k_support or cut_quantile"
        )
    for cell, by_k in eval_tasks.items():
        counts[f"test_tasks_{cell}"] = by_k[config.k_support].batch.num_tasks
    results = evaluate(methods, eval_tasks, ks=(10,), seed=config.seed)
    paired = paired_comparison(methods, eval_tasks, baselines=BASELINES, metrics=("auc", config.metric),
                               seed=config.seed)
    return ColdStartResult(results, paired, split.summary(), history, counts, asdict(config))


__all__ = ["BASELINES", "ColdStartConfig", "ColdStartResult", "run_cold_start"]
