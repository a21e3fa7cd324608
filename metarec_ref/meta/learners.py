"""The learner protocol the meta-trainer drives, and the learners by name.

:class:`MetaLearner` is what :class:`~metarec_ref.train.meta_trainer.MetaTrainer` and the
evaluation need from a learner. :data:`ALGORITHMS` maps a name (a notebook or command-line
parameter) to a learner class, the inner-loop fields that name fixes and the label results tables
show, so ``"fomaml"`` is ``MAML`` with ``first_order=True`` and nothing else special-cases a name.
:func:`build_learner` calls the learner's own constructor, so a learner built by name has the very
defaults of one built by its class.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol, runtime_checkable

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
      ``optimizer=None`` applies the learner's own update rule, when it has one;
    - ``own_outer_update``: whether it has one (Reptile's step of size ``outer_lr``);
    - ``adapt(batch)``: the per-task adapted state (fast weights, prototypes, ...), detached;
    - ``score(state, x)``: logits ``(tasks, n)`` of ``x`` (leaves ``(tasks, n, ...)``) under that state.
    """

    own_outer_update: ClassVar[bool]

    def meta_loss(self, batch: TaskBatch) -> Tensor: ...

    def outer_step(self, batch: TaskBatch, optimizer: torch.optim.Optimizer | None) -> float: ...

    def adapt(self, batch: TaskBatch) -> Any: ...

    def score(self, state: Any, x: Features) -> Tensor: ...


@dataclass(frozen=True)
class Algorithm:
    """A learner class, its label in results, and the inner-loop fields its name fixes (``inner_loop=False``: none)."""

    learner: type[nn.Module]
    label: str
    fixed: Mapping[str, Any] = field(default_factory=dict)
    inner_loop: bool = True


ALGORITHMS: dict[str, Algorithm] = {
    "maml": Algorithm(MAML, "MAML"),
    "fomaml": Algorithm(MAML, "FOMAML", {"first_order": True}),
    "metasgd": Algorithm(MetaSGD, "Meta-SGD"),
    "reptile": Algorithm(Reptile, "Reptile"),
    "protonet": Algorithm(ProtoNet, "ProtoNet", inner_loop=False),
    "matchingnet": Algorithm(MatchingNet, "MatchingNet", inner_loop=False),
}


def algorithm(name: str) -> Algorithm:
    """The registry entry of ``name``; an unknown name raises ValueError listing the known ones."""
    if name not in ALGORITHMS:
        raise ValueError(f"unknown algorithm {name!r}; choose one of {list(ALGORITHMS)}")
    return ALGORITHMS[name]


def build_learner(
    name: str,
    model: nn.Module,
    config: InnerLoopConfig | None = None,
    *,
    loss_fn: LossFn = masked_bce_loss,
    **kwargs,
) -> nn.Module:
    """A learner by name, one of :data:`ALGORITHMS`: the same learner as its class's constructor gives.

    Args:
        name: ``"maml"``, ``"fomaml"``, ``"metasgd"``, ``"reptile"``, ``"protonet"`` or ``"matchingnet"``.
        model: the base model, or the event encoder for learners without an inner loop
            (``protonet``, ``matchingnet``).
        config: the inner loop; None: the learner's own default (``Reptile`` takes 5 steps, the
            others :class:`InnerLoopConfig`'s). Learners without an inner loop do not read it.
        loss_fn: the per-task loss.
        **kwargs: further keywords of the learner: inner-loop fields applied over ``config``
            (e.g. ``inner_steps=2``) and the learner's own (e.g. Reptile's ``outer_lr``). The
            fields the name fixes (``"fomaml"``: ``first_order=True``) apply last; contradicting
            one raises ValueError.
    """
    entry = algorithm(name)
    if not entry.inner_loop:
        return entry.learner(model, loss_fn=loss_fn, **kwargs)
    clash = sorted(k for k, v in entry.fixed.items() if k in kwargs and kwargs[k] != v)
    if clash:
        raise ValueError(f"{name!r} fixes {dict(entry.fixed)}; drop {clash} or choose another algorithm")
    return entry.learner(model, loss_fn=loss_fn, config=config, **{**kwargs, **entry.fixed})


__all__ = ["ALGORITHMS", "Algorithm", "MetaLearner", "algorithm", "build_learner"]
