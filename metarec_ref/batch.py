"""Task batches and feature specs: the contract shared by data, models and the meta core."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Union

import torch
from torch import Tensor

UNKNOWN = 0  # reserved code for unseen ids and padding, in every vocabulary

# A model input: one tensor, or a dict of tensors sharing leading dimensions.
Features = Union[Tensor, dict[str, Tensor]]


class PredictionShapeError(ValueError):
    """A prediction's shape differs from its labels' (a loss would broadcast them silently)."""


def check_prediction_shape(pred: Tensor, y: Tensor, mask: Tensor | None = None) -> None:
    """ValueError unless a prediction, its labels (and mask) share one shape.

    A loss would broadcast a ``(k, 1)`` output against ``(k,)`` labels into a ``(k, k)`` table and
    return a wrong number without a word; the message names both shapes and the fix.
    """
    if pred.shape == y.shape and (mask is None or mask.shape == y.shape):
        return
    if pred.shape != y.shape:
        fix = ("squeeze the last dimension: end the model with nn.Flatten(-2) or return out.squeeze(-1)"
               if pred.shape[:-1] == y.shape and pred.shape[-1:] == (1,)
               else "make the model return one score per event, shaped like the labels")
        raise PredictionShapeError(f"the prediction has shape {tuple(pred.shape)} but the labels have shape {tuple(y.shape)}; "
                         f"a loss would broadcast them into a wrong value: {fix}")
    raise PredictionShapeError(f"the mask has shape {tuple(mask.shape)} but the labels have shape {tuple(y.shape)}; "
                     "give one mask entry per event (True = real, False = padding)")


def map_features(x: Features, fn) -> Features:
    """Apply ``fn`` to a tensor or to every tensor of a feature dict."""
    if isinstance(x, dict):
        return {k: fn(v) for k, v in x.items()}
    return fn(x)


@dataclass(frozen=True)
class FeatureSpec:
    """Sizes a recommender model needs to build its embedding tables.

    Feature dicts use these keys: ``item``, ``category``, ``scenario`` (int64 ids) and
    ``dense`` (float32, last dimension ``n_dense``), plus ``user`` (int64 ids) when
    ``n_users > 0``. ``n_users = 0`` means no user feature: models then score an event from
    the item side and its context only.
    """

    n_items: int
    n_categories: int
    n_scenarios: int
    n_dense: int
    n_users: int = 0


@dataclass
class TaskBatch:
    """A meta-batch of tasks, padded to common support / query sizes.

    Leaves of ``support_x`` have shape ``(tasks, k, ...)``; ``support_y`` and
    ``support_mask`` have shape ``(tasks, k)``. Query fields likewise with ``q``.
    ``mask`` is True for real events and False for padding.
    """

    support_x: Features
    support_y: Tensor
    support_mask: Tensor
    query_x: Features
    query_y: Tensor
    query_mask: Tensor
    task_ids: Tensor | None = None

    @property
    def num_tasks(self) -> int:
        return int(self.support_y.shape[0])

    @property
    def device(self) -> torch.device:
        return self.support_y.device

    def to(self, device: torch.device | str) -> "TaskBatch":
        move = lambda t: t.to(device)  # noqa: E731
        return TaskBatch(
            support_x=map_features(self.support_x, move),
            support_y=move(self.support_y),
            support_mask=move(self.support_mask),
            query_x=map_features(self.query_x, move),
            query_y=move(self.query_y),
            query_mask=move(self.query_mask),
            task_ids=None if self.task_ids is None else move(self.task_ids),
        )

    def select(self, index: Tensor | slice | list[int]) -> "TaskBatch":
        """The sub-batch of tasks at ``index`` (first dimension)."""
        take = lambda t: t[index]  # noqa: E731
        return TaskBatch(
            support_x=map_features(self.support_x, take),
            support_y=take(self.support_y),
            support_mask=take(self.support_mask),
            query_x=map_features(self.query_x, take),
            query_y=take(self.query_y),
            query_mask=take(self.query_mask),
            task_ids=None if self.task_ids is None else take(self.task_ids),
        )

    def with_query_in_support(self) -> "TaskBatch":
        """Each task's support and query events together as its support set (query unchanged).

        Reptile trains on all of a task's data this way. Feature dicts must share keys.
        """
        if isinstance(self.support_x, dict) != isinstance(self.query_x, dict):
            raise ValueError("support_x and query_x must both be tensors or both be dicts")
        if isinstance(self.support_x, dict):
            if set(self.support_x) != set(self.query_x):
                raise ValueError(
                    f"support and query features differ: {sorted(self.support_x)} vs {sorted(self.query_x)}"
                )
            support_x = {k: torch.cat([v, self.query_x[k]], dim=1) for k, v in self.support_x.items()}
        else:
            support_x = torch.cat([self.support_x, self.query_x], dim=1)
        return TaskBatch(
            support_x=support_x,
            support_y=torch.cat([self.support_y, self.query_y], dim=1),
            support_mask=torch.cat([self.support_mask, self.query_mask], dim=1),
            query_x=self.query_x,
            query_y=self.query_y,
            query_mask=self.query_mask,
            task_ids=self.task_ids,
        )

    def __len__(self) -> int:
        return self.num_tasks


__all__ = ["UNKNOWN", "Features", "FeatureSpec", "PredictionShapeError", "TaskBatch", "check_prediction_shape", "map_features"]
