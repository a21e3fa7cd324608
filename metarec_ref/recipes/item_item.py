"""The item-item meta-learner as a pipeline: its inputs, its tasks, meta-training and the global model.

:class:`~metarec_ref.models.item_item.ItemItemScorer` scores a candidate from its similarity to the
task's support items. Here it is trained the way the Online Retail chapter and the own-log
comparison train it:

- :func:`with_support_items` / :func:`with_item_item_features`: tasks with the support items the
  scorer reads;
- :func:`item_item_training_batch`: meta-training tasks with those features;
- :func:`meta_train_item_item` / :func:`train_item_item_global`: the scorer meta-trained with MAML or
  Meta-SGD (by name, through :func:`~metarec_ref.meta.learners.build_learner`), or trained on pooled
  events (the global model); both read the similarity fitted without the training tasks' own
  users and switch to the one fitted on all training events for evaluation.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from metarec_ref.batch import TaskBatch
from metarec_ref.data.tasks import Tasks, to_task_batch
from metarec_ref.eval.baselines import SupervisedConfig, pool_events, train_supervised
from metarec_ref.eval.evaluate import EvalTasks
from metarec_ref.meta.learners import build_learner
from metarec_ref.meta.losses import masked_bce_loss
from metarec_ref.models.item_item import (
    ItemItemScorer,
    expand_support_items,
    sampled_softmax_loss,
    support_item_codes,
)
from metarec_ref.train.meta_trainer import MetaTrainConfig, MetaTrainer

ITEM_ITEM_ALGORITHMS = ("maml", "metasgd")  # names of metarec_ref.meta.ALGORITHMS the scorer trains with
LOSSES = {"bce": masked_bce_loss, "softmax": sampled_softmax_loss}


@dataclass
class ItemItemConfig:
    """The item-item scorer and its training (inner loop, outer loop, task sizes)."""

    algorithm: str = "maml"  # or "metasgd"
    loss: str = "bce"  # or "softmax" (sampled softmax over the task's negatives)
    hidden: int = 16
    inner_steps: int = 1
    inner_lr: float = 0.1
    meta_steps: int = 300
    meta_batch_size: int = 32
    outer_lr: float = 3e-3
    eval_every: int = 25
    patience: int = 2  # evaluations without a better validation AUC before stopping
    n_neg: int = 4  # sampled negatives per positive in training tasks
    n_query: int = 10
    max_support_items: int = 30  # support items the features read
    max_support_events: int = 40  # support events (with negatives) the inner loop adapts on

    def __post_init__(self) -> None:
        if self.algorithm not in ITEM_ITEM_ALGORITHMS:
            raise ValueError(f"algorithm must be one of {list(ITEM_ITEM_ALGORITHMS)}, got {self.algorithm!r}")
        if self.loss not in LOSSES:
            raise ValueError(f"loss must be one of {list(LOSSES)}, got {self.loss!r}")


@dataclass
class ItemItemInputs:
    """Fixed inputs of the scorer: similarity for meta-training (fitted without the training
    tasks' users), similarity for evaluation (all training events), popularity, item categories."""

    sim_train: Tensor
    sim_eval: Tensor
    popularity: Tensor
    item_category: Tensor = field(repr=False)


def with_support_items(tasks: TaskBatch | EvalTasks, max_items: int | None = None,
                       max_support_events: int | None = None) -> TaskBatch | EvalTasks:
    """A copy of a TaskBatch / EvalTasks whose feature dicts also hold ``support_items``
    ``(tasks, n, K)``: the task's positive support items (at most ``max_items``).

    ``max_support_events`` then keeps only the first support events (negatives included) for the
    inner loop, so a task with a huge first basket stays cheap to adapt; the support items are
    taken from the whole support set before that cut.
    """
    batch = tasks.batch if isinstance(tasks, EvalTasks) else tasks
    codes = support_item_codes(batch, max_items)
    cut = slice(None, max_support_events)
    support_x = {k: v[:, cut] for k, v in batch.support_x.items()}
    out = TaskBatch(
        expand_support_items(support_x, codes), batch.support_y[:, cut], batch.support_mask[:, cut],
        expand_support_items(batch.query_x, codes), batch.query_y, batch.query_mask, batch.task_ids,
    )
    if isinstance(tasks, EvalTasks):
        cand = None if tasks.candidates_x is None else expand_support_items(tasks.candidates_x, codes)
        return EvalTasks(out, cand, tasks.candidates, tasks.relevant)
    return out


def with_item_item_features(tasks, config: ItemItemConfig):
    """Tasks (TaskBatch or EvalTasks) with the support items the scorer reads."""
    return with_support_items(tasks, config.max_support_items, config.max_support_events)


def item_item_training_batch(tasks: Tasks, encoders, config: ItemItemConfig,
                             device: torch.device | str = "cpu") -> TaskBatch:
    """Meta-training tasks with the scorer's features.

    tasks: cut with ``config.n_query`` query events and ``config.n_neg`` negatives per positive
    (``negatives=NegativeSampling(config.n_neg, history=...)``), e.g. by
    :func:`~metarec_ref.data.sessions.build_basket_tasks`.
    """
    if tasks.num_tasks == 0:
        raise ValueError("no meta-training task: lower K or give more training users")
    return with_item_item_features(to_task_batch(tasks, encoders, device), config)


def _scorer(inputs: ItemItemInputs, train_batch: TaskBatch, config: ItemItemConfig) -> ItemItemScorer:
    """A fresh scorer on the training batch's device, standardised on its support sets."""
    model = ItemItemScorer(inputs.sim_train.shape[-1], inputs.sim_train, inputs.popularity,
                           inputs.item_category, hidden=config.hidden).to(train_batch.device)
    model.fit_feature_scaling(train_batch.support_x, train_batch.support_mask)
    return model


def meta_train_item_item(inputs: ItemItemInputs, train_batch: TaskBatch, val_tasks: EvalTasks | TaskBatch,
                         config: ItemItemConfig, seed: int = 0) -> nn.Module:
    """MAML / Meta-SGD on the scorer's head, early-stopped on validation AUC; ready to evaluate."""
    torch.manual_seed(seed)
    model = _scorer(inputs, train_batch, config)
    learner = build_learner(config.algorithm, model, loss_fn=LOSSES[config.loss], inner_steps=config.inner_steps,
                            inner_lr=config.inner_lr, adapt="head")
    outer = MetaTrainConfig(meta_batch_size=config.meta_batch_size, outer_lr=config.outer_lr,
                            meta_steps=config.meta_steps, eval_every=config.eval_every,
                            patience=config.patience, monitor="val_auc", seed=seed)
    val_batch = val_tasks.batch if isinstance(val_tasks, EvalTasks) else val_tasks
    MetaTrainer(learner, train_batch, with_item_item_features(val_batch, config), outer, disable=True).fit()
    model.set_similarity(inputs.sim_eval)
    return learner


def train_item_item_global(inputs: ItemItemInputs, train_batch: TaskBatch, config: ItemItemConfig,
                           seed: int = 0, epochs: int = 2) -> ItemItemScorer:
    """The same scorer trained on the pooled events of the training tasks (no per-task adaptation)."""
    torch.manual_seed(seed)
    model = _scorer(inputs, train_batch, config)
    train_supervised(model, *pool_events(train_batch), SupervisedConfig(epochs=epochs, seed=seed), disable=True)
    model.set_similarity(inputs.sim_eval)
    return model


__all__ = [
    "ITEM_ITEM_ALGORITHMS",
    "ItemItemConfig",
    "ItemItemInputs",
    "item_item_training_batch",
    "meta_train_item_item",
    "train_item_item_global",
    "with_item_item_features",
    "with_support_items",
]
