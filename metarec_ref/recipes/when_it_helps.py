"""When does adapting pay? MAML against a tuned fine-tuned global model on toy shops whose users
differ more or less from each other (the closing chapter).

One shop is one :class:`~metarec_ref.data.ToyConfig`; :func:`heterogeneity_shops` scales how far
users' tastes spread around the shop-wide average. On each shop :func:`compare_on_toy_shop` trains
MAML and a global model on the same training users, tunes fine-tuning on validation users with at
most MAML's inner steps, and returns every test user's query AUC under each method.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
from torch import Tensor

from metarec_ref.data import ToyConfig, ToyOracle, preference_tasks
from metarec_ref.eval import (
    FineTune,
    GlobalModel,
    SupervisedConfig,
    evaluate_per_task,
    pool_events,
    train_supervised,
    tune_fine_tuning,
)
from metarec_ref.meta import MAML
from metarec_ref.models import MLP
from metarec_ref.runtime import grid_edge, seed_everything
from metarec_ref.train import MetaTrainConfig, MetaTrainer

METHODS = ("MAML", "MAML start, not adapted", "global", "global, fine-tuned", "oracle")


@dataclass(frozen=True)
class ToyComparisonConfig:
    """Sizes and budgets of one comparison; every method sees the same tasks."""

    n_train_tasks: int = 500
    n_val_tasks: int = 200
    n_test_tasks: int = 200
    k_support: int = 5
    n_query: int = 15
    inner_steps: int = 1
    inner_lr: float = 0.3
    meta_steps: int = 100
    global_epochs: int = 5
    ft_lr_grid: tuple[float, ...] = (0.03, 0.1, 0.3, 1.0, 3.0)
    hidden: tuple[int, ...] = (32, 32)


def heterogeneity_shops(spreads, base: ToyConfig | None = None) -> dict[float, ToyConfig]:
    """One shop per spread: segment centres and users' own deviations scaled by it (1 = ``base``)."""
    base = base or ToyConfig()
    shops = {}
    for spread in spreads:
        if spread < 0:
            raise ValueError(f"a spread scales distances and must be >= 0, got {spread}")
        shops[float(spread)] = dataclasses.replace(
            base, segment_scale=base.segment_scale * spread, user_noise=base.user_noise * spread)
    return shops


def compare_on_toy_shop(shop: ToyConfig, config: ToyComparisonConfig, seed: int = 0,
                        device: torch.device | str = "cpu") -> tuple[dict[str, Tensor], dict]:
    """Every test user's query AUC under each of :data:`METHODS`, and the fine-tuning chosen.

    Fine-tuning gets at most MAML's inner steps, its learning rate chosen on validation users.
    """
    def tasks(n: int, offset: int):
        return preference_tasks(n, config.k_support, config.n_query, config=shop, seed=seed + offset, device=device)

    train, val, test = tasks(config.n_train_tasks, 1), tasks(config.n_val_tasks, 3), tasks(config.n_test_tasks, 2)
    seed_everything(seed)
    learner = MAML(MLP(in_dim=shop.n_features, hidden=config.hidden),
                   inner_steps=config.inner_steps, inner_lr=config.inner_lr).to(device)
    MetaTrainer(learner, train, val, MetaTrainConfig(meta_batch_size=16, outer_lr=3e-3, meta_steps=config.meta_steps,
                                                     eval_every=max(config.meta_steps // 5, 1), patience=None,
                                                     seed=seed)).fit()
    seed_everything(seed)
    global_model = MLP(in_dim=shop.n_features, hidden=config.hidden).to(device)
    train_supervised(global_model, *pool_events(train), SupervisedConfig(epochs=config.global_epochs, seed=seed))
    fine_tune = tune_fine_tuning(global_model, val, steps_grid=(0, config.inner_steps), lr_grid=config.ft_lr_grid)
    methods = {
        "MAML": learner,
        "MAML start, not adapted": FineTune(learner.model, steps=0),
        "global": GlobalModel(global_model),
        "global, fine-tuned": fine_tune.method,
        "oracle": ToyOracle(config.n_test_tasks, shop, seed=seed + 2),
    }
    cell = ("test users", config.k_support)
    per_user = evaluate_per_task(methods, {cell: test}, seed=seed)
    auc = {name: per_user[(name, *cell)]["auc"] for name in METHODS}
    on_edge = fine_tune.steps > 0 and grid_edge("fine-tuning learning rate", config.ft_lr_grid, fine_tune.lr) is not None
    return auc, {"ft_steps": fine_tune.steps, "ft_lr": fine_tune.lr, "ft_lr_on_edge": on_edge}


__all__ = ["METHODS", "ToyComparisonConfig", "compare_on_toy_shop", "heterogeneity_shops"]
