"""Metric-based meta-learners for binary preference tasks: Prototypical and Matching Networks.

Both embed events with an ``encoder`` (any ``nn.Module`` mapping features with leaves
``(n, ...)`` to embeddings ``(n, d)``) and adapt to a task without gradient steps: the
support set's labelled events *are* the adaptation. They follow the same protocol as
:class:`metarec_ref.meta.maml.MAML` (``meta_loss``, ``outer_step``, ``adapt``, ``score``), so
they run on the same :class:`~metarec_ref.batch.TaskBatch` meta-batches. Like the
gradient-based learners, they take every argument after the encoder as a keyword.

Padding: support and query are padded to common sizes with a mask (True = real event).
Padded support events get zero weight in prototypes and zero attention; padded query
events get zero weight in the loss.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor, nn
from torch.func import vmap

from metarec_ref.batch import Features, TaskBatch
from metarec_ref.meta.functional import check_task_batch, gradient_outer_step
from metarec_ref.meta.losses import LossFn, masked_bce_loss


def embed_events(encoder: nn.Module, x: Features) -> Tensor:
    """Embed events with leaves ``(tasks, n, ...)`` as ``(tasks, n, d)`` (tasks and n flattened)."""
    leaves = list(x.values()) if isinstance(x, dict) else [x]
    tasks, n = leaves[0].shape[:2]
    if isinstance(x, dict):
        flat: Features = {k: v.reshape(tasks * n, *v.shape[2:]) for k, v in x.items()}
    else:
        flat = x.reshape(tasks * n, *x.shape[2:])
    embeddings = encoder(flat)
    if embeddings.dim() != 2 or embeddings.shape[0] != tasks * n:
        raise ValueError(
            f"encoder must map {tasks * n} events to embeddings of shape (events, d); got "
            f"{tuple(embeddings.shape)}"
        )
    return embeddings.reshape(tasks, n, -1)


def _per_task_loss(loss_fn: LossFn, logits: Tensor, y: Tensor, mask: Tensor) -> Tensor:
    return vmap(loss_fn)(logits, y, mask)  # (tasks,)


def _check_task_count(x: Features, num_tasks: int) -> None:
    for leaf in x.values() if isinstance(x, dict) else [x]:
        if leaf.dim() < 2 or leaf.shape[0] != num_tasks:
            raise ValueError(
                f"x has a leaf of shape {tuple(leaf.shape)} but the state holds {num_tasks} tasks; "
                "give x leaves of shape (tasks, n, ...) in the order of the adapted batch"
            )


class _MetricLearner(nn.Module):
    """Shared protocol: the meta-loss is the query loss of ``score(adapt(batch), query_x)``."""

    own_outer_update: ClassVar[bool] = False  # outer_step needs an optimizer

    def __init__(self, encoder: nn.Module, *, loss_fn: LossFn = masked_bce_loss):
        super().__init__()
        self.encoder = encoder
        self.loss_fn = loss_fn

    def adapt(self, batch: TaskBatch):  # pragma: no cover - abstract
        raise NotImplementedError

    def score(self, state, x: Features) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def meta_loss(self, batch: TaskBatch) -> Tensor:
        """Mean per-task query loss; backpropagates to the encoder (and temperature)."""
        logits = self.score(self.adapt(batch), batch.query_x)
        return _per_task_loss(self.loss_fn, logits, batch.query_y, batch.query_mask).mean()

    def outer_step(self, batch: TaskBatch, optimizer: torch.optim.Optimizer) -> float:
        """One meta-update: zero grads, backpropagate the meta-loss, step the optimizer."""
        return gradient_outer_step(self.meta_loss, batch, optimizer)


@dataclass
class Prototypes:
    """Per-task class prototypes ``(tasks, d)`` and whether each class had support events."""

    positive: Tensor
    negative: Tensor
    has_positive: Tensor  # (tasks,) bool
    has_negative: Tensor  # (tasks,) bool


class ProtoNet(_MetricLearner):
    """Prototypical Networks (Snell et al., 2017) for binary preferences.

    A task's prototypes are the mean embeddings of its positive and of its negative support
    events; a query's logit is ``d(q, p_neg) - d(q, p_pos)`` with squared Euclidean ``d``.
    A task whose support lacks a class drops that class's term: with positives only the
    logit is ``-d(q, p_pos)`` (closer to what the user liked scores higher), with negatives
    only it is ``d(q, p_neg)``, and with no real support event it is 0 (probability 0.5).
    """

    def adapt(self, batch: TaskBatch) -> Prototypes:
        """Prototypes of each task's support set."""
        check_task_batch(batch)
        embeddings = embed_events(self.encoder, batch.support_x)  # (tasks, k, d)
        real = batch.support_mask
        positive = (batch.support_y > 0.5) & real
        negative = (batch.support_y <= 0.5) & real

        def mean_of(selected: Tensor) -> tuple[Tensor, Tensor]:
            weight = selected.to(embeddings.dtype)
            count = weight.sum(1, keepdim=True)  # (tasks, 1)
            return (weight.unsqueeze(-1) * embeddings).sum(1) / count.clamp_min(1.0), count.squeeze(1) > 0

        p_pos, has_pos = mean_of(positive)
        p_neg, has_neg = mean_of(negative)
        return Prototypes(p_pos, p_neg, has_pos, has_neg)

    def score(self, state: Prototypes, x: Features) -> Tensor:
        """Logits ``(tasks, n)`` of events ``x`` (leaves ``(tasks, n, ...)``)."""
        _check_task_count(x, state.positive.shape[0])
        queries = embed_events(self.encoder, x)  # (tasks, n, d)
        d_pos = ((queries - state.positive.unsqueeze(1)) ** 2).sum(-1)
        d_neg = ((queries - state.negative.unsqueeze(1)) ** 2).sum(-1)
        has_pos = state.has_positive.to(queries.dtype).unsqueeze(1)
        has_neg = state.has_negative.to(queries.dtype).unsqueeze(1)
        return d_neg * has_neg - d_pos * has_pos


@dataclass
class SupportSet:
    """Per-task normalised support embeddings ``(tasks, k, d)`` with labels and mask ``(tasks, k)``."""

    embeddings: Tensor
    labels: Tensor
    mask: Tensor


class MatchingNet(_MetricLearner):
    """Matching Networks (Vinyals et al., 2016) for binary preferences.

    A query attends over the task's real support events with
    ``softmax(temperature * cosine(q, s_j))``; the attention-weighted mean of the support
    labels is its probability of a positive, returned as a logit (clamped to
    ``[eps, 1 - eps]``). The temperature is learned (stored as its log). A task with no
    real support event scores 0 (probability 0.5).
    """

    def __init__(
        self,
        encoder: nn.Module,
        *,
        loss_fn: LossFn = masked_bce_loss,
        init_temperature: float = 10.0,
        eps: float = 1e-4,
    ):
        super().__init__(encoder, loss_fn=loss_fn)
        if not init_temperature > 0:
            raise ValueError(f"init_temperature must be > 0, got {init_temperature!r}")
        if not 0 < eps < 0.5:
            raise ValueError(f"eps must be in (0, 0.5), got {eps!r}")
        self.log_temperature = nn.Parameter(torch.tensor(math.log(init_temperature)))
        self.eps = eps

    def adapt(self, batch: TaskBatch) -> SupportSet:
        """The embedded, normalised support set of each task."""
        check_task_batch(batch)
        embeddings = nn.functional.normalize(embed_events(self.encoder, batch.support_x), dim=-1)
        return SupportSet(embeddings, batch.support_y, batch.support_mask)

    def attention(self, state: SupportSet, x: Features) -> Tensor:
        """Weights ``(tasks, n, k)`` of each event of ``x`` over its task's support events.

        ``softmax(temperature * cosine)`` over the real support events: each row sums to 1, padded
        support events get 0 (a task with no real support event gets a row of zeros).
        """
        _check_task_count(x, state.embeddings.shape[0])
        queries = nn.functional.normalize(embed_events(self.encoder, x), dim=-1)  # (tasks, n, d)
        sims = queries @ state.embeddings.transpose(1, 2) * self.log_temperature.exp()  # (tasks, n, k)
        real = state.mask.unsqueeze(1)  # (tasks, 1, k)
        sims = sims.masked_fill(~real, torch.finfo(sims.dtype).min)
        return torch.softmax(sims, dim=-1) * real  # all-padding rows become zeros

    def score(self, state: SupportSet, x: Features) -> Tensor:
        """Logits ``(tasks, n)`` of events ``x`` (leaves ``(tasks, n, ...)``)."""
        attention = self.attention(state, x)
        prob = (attention * state.labels.to(attention.dtype).unsqueeze(1)).sum(-1)
        has_support = state.mask.any(1, keepdim=True)  # (tasks, 1)
        prob = torch.where(has_support, prob.clamp(self.eps, 1 - self.eps), torch.full_like(prob, 0.5))
        return torch.log(prob) - torch.log1p(-prob)


__all__ = ["MatchingNet", "ProtoNet", "Prototypes", "SupportSet", "embed_events"]
