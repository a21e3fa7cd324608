"""Baselines every meta-learning claim must beat, on the same tasks and splits.

Each baseline follows the evaluation side of the learner protocol, so the evaluation code
treats it exactly like a meta-learner:

- ``adapt(batch: TaskBatch) -> state`` uses only the support sets of ``batch``;
- ``score(state, x) -> Tensor`` scores ``x`` whose leaves have a leading task dim ``(tasks, n, ...)``.

``calibrated`` (default True) says whether the scores are logits (log loss is meaningful);
popularity is a ranking score, not a probability.

The baselines: :class:`Popularity`; :class:`GlobalModel` (one model trained on all pooled
meta-training events, no adaptation); :class:`FineTune` (the global model fine-tuned on each
support set with plain SGD, batched over tasks with ``vmap``; tune steps / learning rate with
:func:`tune_fine_tuning` on validation tasks and keep the same step budget as MAML);
:class:`ScratchPerTask` (a freshly initialised model trained on each support set); and for ratings
:class:`UserMean` and :class:`ItemMean`.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd
import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from metarec_ref.batch import Features, TaskBatch, map_features
from metarec_ref.meta.fast_weights import FastWeights, ParamFilter, select_params
from metarec_ref.meta.forward import score_fast_weights
from metarec_ref.meta.functional import inner_loop
from metarec_ref.meta.losses import LossFn, masked_bce_loss
from metarec_ref.meta.tracing import BatchedTaskLoss
from metarec_ref.runtime import GridSearch, adam, bracketed_grid_search, progress_disabled, warn_if_on_grid_edge


def pool_events(batch: TaskBatch, include_query: bool = True) -> tuple[Features, Tensor]:
    """All real events of a batch as one flat set ``(x, y)``, for plain supervised training."""
    parts = [(batch.support_x, batch.support_y, batch.support_mask)]
    if include_query:
        parts.append((batch.query_x, batch.query_y, batch.query_mask))
    xs, ys = [], []
    for x, y, mask in parts:
        xs.append(map_features(x, lambda t, m=mask: t[m]))
        ys.append(y[mask])
    if isinstance(xs[0], dict):
        x_all: Features = {k: torch.cat([x[k] for x in xs]) for k in xs[0]}
    else:
        x_all = torch.cat(xs)
    return x_all, torch.cat(ys)


def _events_of(x: Features) -> int:
    leaf = next(iter(x.values())) if isinstance(x, dict) else x
    return int(leaf.shape[0])


@dataclass
class SupervisedConfig:
    """Plain mini-batch training on pooled events (the global model)."""

    epochs: int = 5
    batch_size: int = 256
    lr: float = 1e-3
    weight_decay: float = 0.0
    seed: int = 0


def train_supervised(
    model: nn.Module,
    x: Features,
    y: Tensor,
    config: SupervisedConfig | None = None,
    loss_fn: LossFn = masked_bce_loss,
    disable: bool | None = None,
) -> pd.DataFrame:
    """Train ``model`` in place with Adam on pooled events; return the loss per epoch."""
    config = config or SupervisedConfig()
    n = _events_of(x)
    if n == 0:
        raise ValueError("x holds no events; pool_events(batch) of the meta-training tasks gives them")
    if y.shape[0] != n:
        raise ValueError(f"y has {y.shape[0]} events but x has {n}")
    device = next(model.parameters()).device
    x, y = map_features(x, lambda t: t.to(device)), y.to(device)
    optimizer = adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    generator = torch.Generator().manual_seed(config.seed)
    disable = progress_disabled() if disable is None else disable
    rows = []
    for epoch in tqdm(range(config.epochs), desc="global model", disable=disable):
        order = torch.randperm(n, generator=generator).to(device)
        total = 0.0
        for start in range(0, n, config.batch_size):
            idx = order[start : start + config.batch_size]
            xb = map_features(x, lambda t: t[idx])
            optimizer.zero_grad()
            loss = loss_fn(model(xb), y[idx], torch.ones_like(y[idx], dtype=torch.bool))
            if not torch.isfinite(loss):
                raise FloatingPointError(
                    f"global model training diverged at epoch {epoch}: loss is {loss.item()}; lower lr"
                )
            loss.backward()
            optimizer.step()
            total += loss.item() * len(idx)
        rows.append({"epoch": epoch, "train_loss": total / n})
    return pd.DataFrame(rows)


class Popularity:
    """Score = log(1 + number of positive meta-training events of the item); no adaptation."""

    calibrated = False

    def __init__(self, counts: Tensor):
        self.counts = counts

    @classmethod
    def fit(cls, batch: TaskBatch, n_items: int) -> "Popularity":
        """Count positives per item over all real support and query events of ``batch``."""
        x, y = pool_events(batch)
        if not isinstance(x, dict) or "item" not in x:
            raise ValueError("Popularity needs feature dicts with an 'item' key")
        counts = torch.zeros(n_items, dtype=torch.float32, device=y.device)
        counts.index_add_(0, x["item"], (y > 0).float())
        return cls(counts)

    def adapt(self, batch: TaskBatch) -> None:
        return None

    def score(self, state, x: Features) -> Tensor:
        return torch.log1p(self.counts.to(x["item"].device)[x["item"]])


class GlobalModel:
    """The model trained on all pooled meta-training events, used as is for every task."""

    def __init__(self, model: nn.Module):
        self.model = model

    def adapt(self, batch: TaskBatch) -> None:
        return None

    @torch.no_grad()
    def score(self, state, x: Features) -> Tensor:
        return self.model(x)


class FineTune:
    """Per-task fine-tuning of a trained model on its support set, functional and batched.

    ``steps`` plain SGD steps of size ``lr`` on the parameters picked by ``adapt``, with the very
    inner loop MAML uses (:func:`metarec_ref.meta.functional.inner_loop`), so the same budget means
    the same computation; only the starting point differs. The module is never modified.
    """

    calibrated = True

    def __init__(
        self,
        model: nn.Module,
        steps: int = 5,
        lr: float = 0.01,
        adapt: ParamFilter = "all",
        loss_fn: LossFn = masked_bce_loss,
    ):
        if not isinstance(steps, int) or steps < 0:
            raise ValueError(f"steps must be a non-negative int, got {steps!r}")
        if lr < 0:
            raise ValueError(f"lr must be >= 0, got {lr}")
        self.model, self.steps, self.lr, self.loss_fn = model, steps, lr, loss_fn
        self.adapt_filter = adapt
        select_params(model, adapt)  # fail now if the filter selects nothing

    @classmethod
    def with_budget_of(cls, learner: nn.Module, model: nn.Module, lr: float | None = None) -> "FineTune":
        """Fine-tune ``model`` with a MAML-family learner's budget: its inner steps, filter and loss.

        ``lr`` defaults to the learner's inner learning rate; tune it with :func:`tune_fine_tuning`.
        """
        config = learner.config
        return cls(model, steps=config.inner_steps, lr=config.inner_lr if lr is None else lr,
                   adapt=config.adapt, loss_fn=learner.loss_fn)

    def adapt(self, batch: TaskBatch) -> FastWeights:
        """Detached per-task fast weights (leading task dim) after ``steps`` SGD steps on each support."""
        start = FastWeights.of(self.model, self.adapt_filter, detach=True).expand(batch.num_tasks)
        if self.steps == 0:
            return start
        task_losses = BatchedTaskLoss(self.model, self.loss_fn)
        with torch.enable_grad():  # the inner loop needs gradients even under no_grad
            fast, _ = inner_loop(lambda state: task_losses(state, batch.support_x, batch.support_y, batch.support_mask),
                                 start, self.steps, self.lr, create_graph=False)
        return fast.detach()

    def score(self, state: FastWeights, x: Features) -> Tensor:
        return score_fast_weights(self.model, state, x).detach()


def reinitialized(model: nn.Module, seed: int = 0) -> nn.Module:
    """A deep copy of ``model`` with freshly initialised parameters (global RNG untouched)."""
    fresh = copy.deepcopy(model)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for module in fresh.modules():
            if hasattr(module, "reset_parameters"):
                module.reset_parameters()
    return fresh


class ScratchPerTask(FineTune):
    """A freshly initialised model trained on each task's support set alone (no transfer)."""

    def __init__(self, model: nn.Module, steps: int = 100, lr: float = 0.1, seed: int = 0, **kwargs):
        super().__init__(reinitialized(model, seed), steps=steps, lr=lr, **kwargs)


@dataclass
class FineTuneChoice:
    """Result of :func:`tune_fine_tuning`: the best grid point, the whole grid, and the tuned method."""

    steps: int
    lr: float
    table: pd.DataFrame
    method: FineTune
    search: GridSearch | None = None  # the grids tried and extended

    @property
    def chosen(self) -> dict:
        return {"steps": self.steps, "lr": self.lr}


def tune_fine_tuning(
    model: nn.Module,
    val_batch: TaskBatch,
    steps_grid: Sequence[int] = (1, 3, 5),
    lr_grid: Sequence[float] = (0.001, 0.01, 0.1),
    *,
    adapt: ParamFilter = "all",
    loss_fn: LossFn = masked_bce_loss,
    warn_on_edge: str | None = None,
    max_extensions: int = 0,
    steps_bounds: tuple[int, int | None] = (0, None),
) -> FineTuneChoice:
    """Pick fine-tuning steps and learning rate by mean query loss on validation tasks.

    Keep ``max(steps_grid)`` at MAML's inner steps to give both the same adaptation budget.
    ``max_extensions``: rounds of :func:`~metarec_ref.runtime.bracketed_grid_search` that extend a
    grid whose chosen value sits on an edge (0: the grid as given). ``steps_bounds``: the steps no
    extension goes beyond: below, 0 (no fine-tuning) or 1 where zero steps is compared on its own as
    the global model; above, None or a budget cap. ``warn_on_edge``: a name for a
    :class:`~metarec_ref.runtime.GridEdgeWarning` when a chosen value still sits on an edge (with 0
    steps the learning rate is unused).
    """
    def evaluate(point: dict) -> float:
        method = FineTune(model, steps=point["steps"], lr=point["lr"], adapt=adapt, loss_fn=loss_fn)
        logits = method.score(method.adapt(val_batch), val_batch.query_x)
        return -float(loss_fn(logits, val_batch.query_y, val_batch.query_mask))

    search = bracketed_grid_search({"steps": list(steps_grid), "lr": list(lr_grid)}, evaluate,
                                   natural_bounds={"steps": steps_bounds, "lr": (0.0, None)},
                                   max_extensions=max_extensions)
    table = pd.DataFrame([{"steps": steps, "lr": lr, "val_loss": -score}
                          for (steps, lr), score in search.scores.items()])
    steps, lr = int(search.chosen["steps"]), float(search.chosen["lr"])
    if steps == 0:
        search.edges["lr"] = None  # unused without a step
    if warn_on_edge is not None:
        warn_if_on_grid_edge(f"{warn_on_edge} steps", search.final["steps"], steps, natural_bounds=steps_bounds)
        if steps > 0:
            warn_if_on_grid_edge(f"{warn_on_edge} learning rate", search.final["lr"], lr)
    method = FineTune(model, steps=steps, lr=lr, adapt=adapt, loss_fn=loss_fn)
    return FineTuneChoice(steps, lr, table, method, search)


class UserMean:
    """Ratings: predict the task's (user's) mean support rating; the global mean without support."""

    calibrated = False

    def __init__(self, global_mean: float):
        self.global_mean = global_mean

    @classmethod
    def fit(cls, batch: TaskBatch) -> "UserMean":
        _, y = pool_events(batch)
        return cls(float(y.mean()))

    def adapt(self, batch: TaskBatch) -> Tensor:
        mask = batch.support_mask.to(batch.support_y.dtype)
        count = mask.sum(1)
        mean = (batch.support_y * mask).sum(1) / count.clamp(min=1)
        return torch.where(count > 0, mean, torch.full_like(mean, self.global_mean))  # (tasks,)

    def score(self, state: Tensor, x: Features) -> Tensor:
        leaf = x["item"] if isinstance(x, dict) else x[..., 0]
        return state.reshape(-1, *([1] * (leaf.dim() - 1))).expand(leaf.shape).to(torch.float32)


class ItemMean:
    """Ratings: predict the item's mean rating, shrunk towards the global mean by ``prior_weight``."""

    calibrated = False

    def __init__(self, item_means: Tensor):
        self.item_means = item_means

    @classmethod
    def fit(cls, batch: TaskBatch, n_items: int, prior_weight: float = 5.0) -> "ItemMean":
        x, y = pool_events(batch)
        if not isinstance(x, dict) or "item" not in x:
            raise ValueError("ItemMean needs feature dicts with an 'item' key")
        y = y.to(torch.float32)
        sums = torch.zeros(n_items, device=y.device).index_add_(0, x["item"], y)
        counts = torch.zeros(n_items, device=y.device).index_add_(0, x["item"], torch.ones_like(y))
        global_mean = y.mean()
        return cls((sums + prior_weight * global_mean) / (counts + prior_weight))

    def adapt(self, batch: TaskBatch) -> None:
        return None

    def score(self, state, x: Features) -> Tensor:
        return self.item_means.to(x["item"].device)[x["item"]]


__all__ = [
    "FineTune",
    "FineTuneChoice",
    "GlobalModel",
    "ItemMean",
    "Popularity",
    "ScratchPerTask",
    "SupervisedConfig",
    "UserMean",
    "pool_events",
    "reinitialized",
    "train_supervised",
    "tune_fine_tuning",
]
