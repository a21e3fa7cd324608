"""The residual meta-learner's pipeline: full-ranking tasks, classical scores as features, training.

- :class:`RankingTasks`: per task the support item codes, the candidate items and the query items
  (full ranking over the catalogue); from :class:`~metarec_ref.eval.evaluate.EvalTasks`
  (:meth:`RankingTasks.from_eval_tasks`) or from a log, each customer's first ``K`` distinct
  products against the next new ones (:func:`first_products_tasks`).
- :class:`ScorerBank`: item-kNN, EASE, recent and all-time popularity, whose catalogue scores are
  the features of :class:`~metarec_ref.models.residual_mixture.ResidualMixture`, with the
  leave-one-out features of the support loss.
- :func:`fit_global_mixture`: mixture weights over the scorers, one set for every customer.
- :func:`fit_sharpness`: the scale that turns the base scores into logits for the listwise losses.
- :func:`meta_train_residual`: Meta-SGD on the residual (outer Adam on the item embeddings and the
  step sizes through the inner steps), keeping the state with the best validation NDCG@10.
- :func:`residual_metrics`: per-task NDCG@10 / HR@10 of the model after ``steps`` inner steps
  (``steps=0``: the base score, i.e. the classical scorer or the global mixture).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from metarec_ref.batch import UNKNOWN
from metarec_ref.data.encoders import Encoders
from metarec_ref.eval.classical import ItemItemMethod, RecentPopularity
from metarec_ref.eval.evaluate import EvalTasks
from metarec_ref.eval.metrics import per_task_hit_rate, per_task_ndcg
from metarec_ref.models.item_item import support_item_codes
from metarec_ref.models.residual_mixture import ResidualMixture, listwise_nll
from metarec_ref.runtime import adam
from metarec_ref.train.checkpoints import train_keeping_best


@dataclass
class RankingTasks:
    """Full-ranking tasks: support codes ``(tasks, K)`` (0 = padding), candidates and relevant
    items, bool ``(tasks, n_items)`` (candidates exclude the support and unknown items)."""

    support: Tensor
    candidates: Tensor
    relevant: Tensor

    def __post_init__(self) -> None:
        t = self.support.shape[0]
        for name in ("candidates", "relevant"):
            mask = getattr(self, name)
            if mask.dim() != 2 or mask.shape[0] != t or mask.dtype != torch.bool:
                raise ValueError(f"{name} must be bool (tasks={t}, n_items), got {mask.dtype} {tuple(mask.shape)}")
        self.relevant = self.relevant & self.candidates

    @property
    def num_tasks(self) -> int:
        return int(self.support.shape[0])

    @property
    def support_mask(self) -> Tensor:
        return self.support != UNKNOWN

    def select(self, index) -> RankingTasks:
        return RankingTasks(self.support[index], self.candidates[index], self.relevant[index])

    @classmethod
    def from_eval_tasks(cls, tasks: EvalTasks, max_support: int | None = None) -> RankingTasks:
        """The positive support items, candidates and relevant items of full-ranking EvalTasks."""
        if not tasks.has_ranking:
            raise ValueError("EvalTasks without ranking inputs; build them with EvalTasks.from_catalog")
        return cls(support_item_codes(tasks.batch, max_support).cpu(), tasks.candidates.cpu(), tasks.relevant.cpu())


def first_products_tasks(events: pd.DataFrame, encoders: Encoders, k: int, n_query: int,
                         available: Tensor | None = None) -> RankingTasks:
    """One task per customer: the first ``k`` distinct known products as support, the next up to
    ``n_query`` new products as query; customers without a query product are left out.

    available: bool ``(n_items,)`` items that may be ranked (default: every known item).
    """
    missing = [c for c in ("user_id", "item_id", "timestamp") if c not in events.columns]
    if missing:
        raise ValueError(f"column '{missing[0]}' is missing; found {list(events.columns)}")
    if k < 1 or n_query < 1:
        raise ValueError(f"k and n_query must be >= 1, got {k} and {n_query}")
    n_items = encoders.spec.n_items
    if available is None:
        available = torch.ones(n_items, dtype=torch.bool)
        available[UNKNOWN] = False
    ordered = events.sort_values(["user_id", "timestamp"], kind="stable")
    codes = encoders.encode_items(ordered["item_id"])
    frame = pd.DataFrame({"user": ordered["user_id"].to_numpy(), "item": codes})
    frame = frame[frame["item"] != UNKNOWN].drop_duplicates(["user", "item"])  # first purchase of each product
    frame["rank"] = frame.groupby("user", sort=False).cumcount()
    frame = frame[frame["rank"] < k + n_query]
    sizes = frame.groupby("user", sort=False)["rank"].max() + 1
    users = sizes.index[sizes > k]
    frame = frame[frame["user"].isin(users)]
    task = pd.Index(users).get_indexer(frame["user"])
    support = torch.zeros(len(users), k, dtype=torch.int64)
    relevant = torch.zeros(len(users), n_items, dtype=torch.bool)
    in_support = frame["rank"].to_numpy() < k
    support[task[in_support], frame["rank"].to_numpy()[in_support]] = torch.as_tensor(frame["item"].to_numpy()[in_support])
    relevant[task[~in_support], frame["item"].to_numpy()[~in_support]] = True
    candidates = available[None, :].repeat(len(users), 1)
    candidates.scatter_(1, support, False)
    candidates[:, UNKNOWN] = False
    tasks = RankingTasks(support, candidates, relevant)
    return tasks.select(tasks.relevant.any(1))


class ScorerBank:
    """Classical scorers whose catalogue scores are the features ``(tasks, n_items, F)``.

    item_item: methods scored from the support items (item-kNN, EASE); vectors: fixed scores
    ``(n_items,)`` (recent popularity, all-time popularity). ``names`` label the features in order.
    """

    def __init__(self, names: Sequence[str], item_item: Sequence[ItemItemMethod], vectors: Sequence[Tensor]):
        if len(names) != len(item_item) + len(vectors):
            raise ValueError(f"{len(names)} names for {len(item_item) + len(vectors)} scorers")
        self.names = tuple(names)
        self.item_item = list(item_item)
        self.vectors = [torch.as_tensor(v, dtype=torch.float32) for v in vectors]
        # Dense rows for the leave-one-out features: one gather per task instead of one sum per slot.
        self._dense = [m.dense_weights().float().cpu() for m in self.item_item]

    @classmethod
    def from_methods(cls, knn: ItemItemMethod, ease: ItemItemMethod, recent: RecentPopularity,
                     popularity: RecentPopularity) -> ScorerBank:
        return cls(("item-kNN", "EASE", "recent popularity", "popularity"), [knn, ease],
                   [recent.scores, popularity.scores])

    @property
    def n_features(self) -> int:
        return len(self.names)

    @property
    def n_items(self) -> int:
        return int(self.vectors[0].shape[0]) if self.vectors else self.item_item[0].n_items

    def features(self, support: Tensor, mask: Tensor) -> Tensor:
        """``(tasks, n_items, F)``: each scorer's catalogue scores for support codes ``(tasks, K)``."""
        parts = [m.catalogue_scores(support, mask).float().cpu() for m in self.item_item]
        parts += [v[None, :].expand(support.shape[0], -1) for v in self.vectors]
        return torch.stack(parts, dim=-1)

    def loo_inputs(self, tasks: RankingTasks, max_slots: int | None = None) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Leave-one-out inputs of the support loss: features ``(tasks, K, n_items, F)`` computed
        without slot ``j``, its target (support item ``j``), exclusions and the real-slot mask."""
        support, mask = tasks.support, tasks.support_mask
        slots = support.shape[1] if max_slots is None else min(max_slots, support.shape[1])
        t = support.shape[0]
        parts = []
        for method, dense in zip(self.item_item, self._dense):
            rows = dense[support] * mask[..., None]  # (t, k, n_items)
            # Without slot j: the sum over the support minus row j (same scores up to rounding).
            parts.append(rows.sum(1, keepdim=True) - rows[:, :slots] + method.prior.float().cpu())
        n_items = tasks.candidates.shape[1]
        parts += [v.expand(t, slots, n_items) for v in self.vectors]
        features = torch.stack(parts, dim=-1)
        targets = torch.zeros(t, slots, n_items, dtype=torch.bool)
        targets.scatter_(2, support[:, :slots, None], True)
        slot_mask = mask[:, :slots]
        targets &= slot_mask[..., None]
        exclude = (~tasks.candidates)[:, None, :].expand(t, slots, n_items) & ~targets
        return features, targets, exclude, slot_mask


def feature_scale(features: Tensor, candidates: Tensor) -> Tensor:
    """Standard deviation of each feature over candidate items (the update's units), floored."""
    values = features[candidates]  # (cells, F)
    return values.std(0).clamp(min=1e-6)


def per_task_ranking(scores: Tensor, tasks: RankingTasks, k: int = 10, hit_rate: bool = True) -> dict[str, Tensor]:
    """``{"ndcg@k": (tasks,), "hr@k": (tasks,)}`` of scores ``(tasks, n_items)`` over the candidates."""
    out = {f"ndcg@{k}": per_task_ndcg(scores, tasks.relevant, tasks.candidates, k=k)}
    if hit_rate:
        out[f"hr@{k}"] = per_task_hit_rate(scores, tasks.relevant, tasks.candidates, k=k)
    return out


def residual_metrics(model: ResidualMixture, bank: ScorerBank, tasks: RankingTasks, steps: int,
                     max_slots: int = 10, chunk_size: int = 64, hit_rate: bool = True) -> dict[str, Tensor]:
    """Per-task NDCG@10 (and HR@10) of ``model`` after ``steps`` inner steps on each support set."""
    parts: dict[str, list[Tensor]] = {}
    for start in range(0, tasks.num_tasks, chunk_size):
        chunk = tasks.select(slice(start, start + chunk_size))
        if steps > 0:
            delta, user = model.adapt(*bank.loo_inputs(chunk, max_slots), steps=steps)
        else:
            delta, user = model.zero_state(chunk.num_tasks)
        with torch.no_grad():
            scores = model.scores(bank.features(chunk.support, chunk.support_mask), delta, user)
        for name, values in per_task_ranking(scores, chunk, hit_rate=hit_rate).items():
            parts.setdefault(name, []).append(values)
    return {name: torch.cat(values) for name, values in parts.items()}


def fit_global_mixture(bank: ScorerBank, tasks: RankingTasks, scale: Tensor, init: Tensor,
                       steps: int = 200, lr: float = 0.05, seed: int = 0) -> Tensor:
    """One set of mixture weights (features' units) minimising the query listwise loss on ``tasks``.

    init: starting weights in the features' units (e.g. the best single scorer, one-hot).
    """
    torch.manual_seed(seed)
    features = bank.features(tasks.support, tasks.support_mask)
    model = ResidualMixture(init, scale, features.shape[1], emb_dim=0)
    delta = torch.zeros(bank.n_features, requires_grad=True)
    optimizer = adam([delta], lr=lr)
    user = torch.zeros(tasks.num_tasks, 0)
    for _ in range(steps):
        optimizer.zero_grad()
        loss = model.query_loss(features, tasks.relevant, ~tasks.candidates, delta.expand(tasks.num_tasks, -1), user)
        loss.backward()
        optimizer.step()
    return (model.base + delta.detach() / scale).clone()


def fit_sharpness(base: Tensor, bank: ScorerBank, tasks: RankingTasks, max_tasks: int = 256,
                  log10_grid: Sequence[float] = tuple(x / 4 for x in range(-8, 33))) -> float:
    """The ``t`` that minimises the query listwise loss of ``t * (features . base)`` on ``tasks``.

    A positive scale never changes the ranking; it makes the base scores logits, so that the
    losses of :class:`ResidualMixture` measure how well a move ranks, not how much contrast it adds.
    The grid runs over powers of ten (default 1e-2 to 1e8 in quarter decades).
    """
    part = tasks.select(slice(0, max_tasks))
    scores = (bank.features(part.support, part.support_mask) * base).sum(-1)
    has = (part.relevant & part.candidates).any(1)
    if not bool(has.any()):
        raise ValueError("no task has a query item among its candidates: nothing to fit the sharpness on")

    def loss(log10_t: float) -> float:
        return float(listwise_nll(10.0 ** log10_t * scores, part.relevant, ~part.candidates)[has].mean())

    return 10.0 ** min(log10_grid, key=loss)


@dataclass
class ResidualConfig:
    """Inner loop (steps, starting Meta-SGD step size), correction width, outer loop."""

    inner_steps: int = 1
    init_lr: float = 0.01
    emb_dim: int = 8
    meta_steps: int = 100
    meta_batch_size: int = 32
    outer_lr: float = 0.01  # item embeddings
    step_size_lr: float = 0.05  # the log step sizes: they may move by a factor of e in 20 steps
    eval_every: int = 25
    max_slots: int = 10  # support items used as leave-one-out targets

    def __post_init__(self) -> None:
        if self.inner_steps < 1:
            raise ValueError(f"inner_steps must be >= 1 to meta-train (0 steps is the base score), got {self.inner_steps}")


def meta_train_residual(base: Tensor, scale: Tensor, train_bank: ScorerBank, train_tasks: RankingTasks,
                        val_bank: ScorerBank, val_tasks: RankingTasks, config: ResidualConfig,
                        seed: int = 0) -> tuple[ResidualMixture, float]:
    """Meta-SGD on the residual; returns the model of the evaluation (before training included)
    with the best validation NDCG@10 and that NDCG. ``train_bank`` should be fitted without the training tasks' customers."""
    torch.manual_seed(seed)
    n_items = train_tasks.candidates.shape[1]
    model = ResidualMixture(base, scale, n_items, emb_dim=config.emb_dim, init_lr=config.init_lr,
                            sharpness=fit_sharpness(base, train_bank, train_tasks))
    optimizer = adam([
        {"params": [model.item_emb], "lr": config.outer_lr},
        {"params": [model.log_lr_delta, model.log_lr_user], "lr": config.step_size_lr},
    ])
    generator = torch.Generator().manual_seed(seed)

    def validation_ndcg() -> float:
        values = residual_metrics(model, val_bank, val_tasks, config.inner_steps, config.max_slots, hit_rate=False)
        return float(np.nanmean(values["ndcg@10"].numpy()))

    def batch_loss(_step: int) -> Tensor:
        index = torch.randperm(train_tasks.num_tasks, generator=generator)[:config.meta_batch_size]
        batch = train_tasks.select(index)
        delta, user = model.adapt(*train_bank.loo_inputs(batch, config.max_slots), steps=config.inner_steps,
                                  create_graph=True)
        features = train_bank.features(batch.support, batch.support_mask)
        return model.query_loss(features, batch.relevant, ~batch.candidates, delta, user)

    best_val = train_keeping_best(model, optimizer, batch_loss, validation_ndcg, config.meta_steps, config.eval_every)
    return model, best_val


__all__ = [
    "RankingTasks",
    "ResidualConfig",
    "ScorerBank",
    "feature_scale",
    "first_products_tasks",
    "fit_global_mixture",
    "fit_sharpness",
    "meta_train_residual",
    "per_task_ranking",
    "residual_metrics",
]
