"""The learner protocol the meta-trainer drives, and the learners by name.

:class:`MetaLearner` is what :class:`~metarec_ref.train.meta_trainer.MetaTrainer` and the
evaluation need from a learner. :data:`ALGORITHMS` maps a name (a notebook or command-line
parameter) to a learner class and the inner-loop fields that name fixes, so ``"fomaml"`` is
``MAML`` with ``first_order=True`` and nothing else special-cases a name.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import torch
from torch import Tensor, nn

from metarec_ref.batch import Features, TaskBatch
from metarec_ref.meta.losses import LossFn, masked_bce_loss
from metarec_ref.meta.maml import MAML, InnerLoopConfig, MetaSGD, Reptile
from metarec_ref.meta.metric_based import MatchingNet, ProtoNet


@runtime_checkable
class MetaLearner(Protocol):
    """What the meta-trainer drives; every learner here is also an ``nn.Module``.

    - ``meta_loss(batch)``: mean query loss after adapting each task on its support set;
    - ``outer_step(batch, optimizer)``: one meta-update, returns the meta-loss as a float;
    - ``adapt(batch)``: the per-task adapted state (fast weights, prototypes, ...), detached;
    - ``score(state, x)``: logits ``(tasks, n)`` of ``x`` (leaves ``(tasks, n, ...)``) under that state.
    """

    def meta_loss(self, batch: TaskBatch) -> Tensor: ...

    def outer_step(self, batch: TaskBatch, optimizer: torch.optim.Optimizer) -> float: ...

    def adapt(self, batch: TaskBatch) -> Any: ...

    def score(self, state: Any, x: Features) -> Tensor: ...


@dataclass(frozen=True)
class Algorithm:
    """A learner class, and the inner-loop fields its name fixes (``inner_loop=False``: none)."""

    learner: type[nn.Module]
    fixed: Mapping[str, Any] = field(default_factory=dict)
    inner_loop: bool = True


ALGORITHMS: dict[str, Algorithm] = {
    "maml": Algorithm(MAML),
    "fomaml": Algorithm(MAML, {"first_order": True}),
    "metasgd": Algorithm(MetaSGD),
    "reptile": Algorithm(Reptile, {"first_order": True}),
    "protonet": Algorithm(ProtoNet, inner_loop=False),
    "matchingnet": Algorithm(MatchingNet, inner_loop=False),
}


def build_learner(
    algorithm: str,
    model: nn.Module,
    inner: InnerLoopConfig | None = None,
    *,
    loss_fn: LossFn = masked_bce_loss,
    **kwargs,
) -> nn.Module:
    """A learner by name, one of :data:`ALGORITHMS`.

    ``model`` is the base model, or the event encoder for learners without an inner loop
    (``protonet``, ``matchingnet``), which ignore ``inner``. The name's fixed fields apply over
    ``inner``; ``kwargs`` go to the learner (e.g. Reptile's ``outer_lr``).
    """
    if algorithm not in ALGORITHMS:
        raise ValueError(f"unknown algorithm {algorithm!r}; choose one of {list(ALGORITHMS)}")
    entry = ALGORITHMS[algorithm]
    if not entry.inner_loop:
        return entry.learner(model, loss_fn=loss_fn, **kwargs)
    config = (inner or InnerLoopConfig()).override(**entry.fixed)
    return entry.learner.from_config(model, config, loss_fn=loss_fn, **kwargs)


__all__ = ["ALGORITHMS", "Algorithm", "MetaLearner", "build_learner"]
