"""MAML and its relatives: first-order MAML, Meta-SGD and Reptile, on any ``nn.Module``.

Every learner is an ``nn.Module`` wrapping a model and follows
:class:`~metarec_ref.meta.learners.MetaLearner`:

- ``meta_loss(batch)``: mean query loss after adapting each task on its support set,
  differentiable w.r.t. the learner's meta-parameters (``learner.parameters()``);
- ``outer_step(batch, optimizer)``: one meta-update, returns the meta-loss as a float;
- ``adapt(batch)``: per-task fast weights (:class:`FastWeights`, leading task dimension);
- ``score(state, x)``: logits of ``x`` (leaves ``(tasks, n, ...)``) under those fast weights.

A learner is built as ``MAML(model, loss_fn=..., config=..., inner_steps=..., ...)``: every
argument after the model is a keyword, the inner-loop ones are the fields of
:class:`InnerLoopConfig`, applied over ``config`` (or, without one, over the class's
``default_config``). :func:`~metarec_ref.meta.learners.build_learner` reaches the same constructor
by name, so both ways give the same learner (first-order MAML is ``MAML(model, first_order=True)``
or ``build_learner("fomaml", model)``).

The inner loop is functional (see :mod:`metarec_ref.meta.functional`): fast weights are dicts
of tensors passed to ``torch.func.functional_call``, so the wrapped module's parameters are
never mutated. ``batched=True`` adapts the whole meta-batch in one pass (parameters
expanded to a ``(tasks, ...)`` dimension, ``vmap`` over the forward only, one gradient of
the summed task losses); ``batched=False`` loops over tasks. Both give the same numbers.
``trace=True`` replays a recorded graph of the batched forward instead of re-running ``vmap``
at every step (faster, same numbers; see :class:`~metarec_ref.meta.tracing.BatchedTaskLoss`);
the default ``trace="auto"`` does so for input shapes that recur, and a forward that cannot be
traced runs untraced with a one-time warning. Adapted embedding tables take row-wise fast
weights by default (``sparse_embeddings=True``): each task gathers the rows its events read,
adapts those, and the meta-gradient scatters back into the shared table (same numbers as the
dense path; see :mod:`metarec_ref.meta.sparse_embedding`). BatchNorm layers in training mode
normalise with each task's own batch statistics and leave the running statistics untouched.
Tasks of unequal size arrive padded with a mask, and every loss is a mask-weighted mean; a model
whose output is not shaped like the labels (a ``(k, 1)`` head) is refused with the fix.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from functools import partial
from typing import ClassVar

import torch
from torch import Tensor, nn

from metarec_ref.batch import Features, TaskBatch, map_features
from metarec_ref.meta.fast_weights import FastWeights, InnerLR, ParamFilter, gather_rows, mean_table_change, select_params
from metarec_ref.meta.forward import score_fast_weights
from metarec_ref.meta.functional import (
    batch_dtype_mismatch,
    check_inner_loop_args,
    check_task_batch,
    explain_non_finite,
    gradient_outer_step,
    inner_loop,
    non_finite_tasks,
)
from metarec_ref.meta.losses import LossFn, masked_bce_loss
from metarec_ref.meta.sparse_embedding import ROW_WISE_MIN_ROWS, sparse_start
from metarec_ref.meta.trace_cache import TraceCache
from metarec_ref.meta.tracing import BatchedTaskLoss, task_loss


@dataclass(frozen=True)
class InnerLoopConfig:
    """How tasks adapt: steps, learning rate, order, which parameters, batched or looped.

    One config serves every gradient-based learner: Reptile reads it first order whatever
    ``first_order`` says. ``adapt``: "all", "head", "dense" or a predicate on parameter names.
    """

    inner_steps: int = 1
    inner_lr: float = 0.01
    first_order: bool = False
    adapt: ParamFilter = "all"
    batched: bool = True
    check_finite: bool = True  # one sync per call; False skips the NaN/inf check
    # Batched path: replay a recorded forward graph (see BatchedTaskLoss); "auto": for shapes that recur.
    trace: bool | str = "auto"
    sparse_embeddings: bool = True  # adapted embedding tables: per-task rows, not full copies
    sparse_min_rows: int = ROW_WISE_MIN_ROWS  # smaller tables adapt densely (cheaper, same numbers)

    def __post_init__(self) -> None:
        check_inner_loop_args(self.inner_steps, self.inner_lr)
        if self.trace not in (True, False, "auto"):
            raise ValueError(f"trace must be True, False or 'auto', got {self.trace!r}")

    def override(self, **changes) -> InnerLoopConfig:
        """A copy with ``changes`` applied; an unknown field raises ValueError naming the valid ones."""
        valid = [f.name for f in fields(self)]
        unknown = sorted(set(changes) - set(valid))
        if unknown:
            raise ValueError(f"unknown inner-loop option(s) {unknown}; InnerLoopConfig has the fields {valid}")
        return replace(self, **changes)


def _task(x: Features, t: int) -> Features:
    return map_features(x, lambda v: v[t])


def _check_device(model: nn.Module, batch: TaskBatch) -> None:
    param = next(model.parameters(), None)
    if param is not None and param.device != batch.device:
        raise ValueError(
            f"the batch is on {batch.device} but the model is on {param.device}; "
            f"call batch.to({str(param.device)!r}) or learner.to({str(batch.device)!r})"
        )


class MAML(nn.Module):
    """Model-Agnostic Meta-Learning (Finn et al., 2017), exact second order by default.

    The meta-parameters are the model's initial parameters; each task takes
    ``inner_steps`` gradient steps from them on its support set, and the meta-loss is the
    query loss of the adapted weights, differentiated through the inner steps
    (``first_order=True`` drops the second-order terms).

    Args:
        model: the base model; any ``nn.Module`` mapping features with leaves ``(k, ...)`` to one
            score per event ``(k,)``. Its parameters are the meta-parameters and are never
            mutated by the inner loop.
        loss_fn: per-task loss ``(scores (k,), labels (k,), mask (k,)) -> scalar``, a
            mask-weighted mean (default :func:`~metarec_ref.meta.losses.masked_bce_loss` on logits).
        config: the inner loop as an :class:`InnerLoopConfig`; None: the class's ``default_config``.
        trace_cache: the recorded graphs, shared with learners whose models are built alike (every
            point of a grid search: each records them once, not once per learner); None: its own.
            See :class:`~metarec_ref.meta.trace_cache.TraceCache`.
        **inner: :class:`InnerLoopConfig` fields applied over ``config`` (e.g. ``inner_steps=2``,
            ``inner_lr=0.1``, ``first_order=True``, ``adapt="head"``, ``batched=False``); an
            unknown name raises ValueError listing the fields.

    Example::

        learner = MAML(model, inner_steps=2, inner_lr=0.1)
        optimizer = adam(learner.parameters(), lr=1e-3)  # metarec_ref.runtime.adam
        loss = learner.outer_step(batch, optimizer)            # one meta-update
        scores = learner.score(learner.adapt(test), test.query_x)
    """

    default_config: ClassVar[InnerLoopConfig] = InnerLoopConfig()  # what ``config=None`` means
    own_outer_update: ClassVar[bool] = False  # outer_step needs an optimizer

    def __init__(
        self,
        model: nn.Module,
        *,
        loss_fn: LossFn = masked_bce_loss,
        config: InnerLoopConfig | None = None,
        trace_cache: TraceCache | None = None,
        **inner,
    ):
        super().__init__()
        if config is not None and not isinstance(config, InnerLoopConfig):
            raise ValueError(f"config must be an InnerLoopConfig or None, got {type(config).__name__}")
        self.model = model
        self.loss_fn = loss_fn
        self.config = self._inner_config(config, inner)
        select_params(model, self.config.adapt)  # fail now if the filter selects nothing
        if trace_cache is not None:
            trace_cache.claim(model, loss_fn)
        # input signature -> recorded forward (trace=True / "auto"); shared when given
        self._trace_cache = trace_cache if trace_cache is not None else TraceCache()

    @classmethod
    def _inner_config(cls, config: InnerLoopConfig | None, inner: dict) -> InnerLoopConfig:
        """The one rule every way of building a learner goes through: ``inner`` over ``config`` or the default."""
        return (config or cls.default_config).override(**inner)

    def inner_lr(self) -> InnerLR:
        """The inner learning rate(s); Meta-SGD returns one learned tensor per parameter."""
        return self.config.inner_lr

    # ------------------------------------------------------------------ protocol

    def meta_loss(self, batch: TaskBatch) -> Tensor:
        """Mean query loss after per-task adaptation; backpropagates to the meta-parameters.

        Second order by default: the graph runs through every inner gradient. With
        ``first_order`` each inner gradient is a constant, so d(fast weights)/d(start) = I.
        """
        start = FastWeights.of(self.model, self.config.adapt)
        _, query_loss = self._adapt(batch, start, create_graph=not self.config.first_order, query=True)
        return query_loss.mean()

    def outer_step(self, batch: TaskBatch, optimizer: torch.optim.Optimizer) -> float:
        """One meta-update: zero grads, backpropagate the meta-loss, step the optimizer."""
        return gradient_outer_step(self.meta_loss, batch, optimizer)

    def adapt(self, batch: TaskBatch) -> FastWeights:
        """Detached per-task fast weights for evaluation (works under ``torch.no_grad``)."""
        start = FastWeights.of(self.model, self.config.adapt, detach=True)
        with torch.enable_grad():
            state, _ = self._adapt(batch, start, create_graph=False, query=False)
        return state.detach()

    def score(self, state: FastWeights, x: Features) -> Tensor:
        """Logits ``(tasks, n)`` of ``x`` (leaves ``(tasks, n, ...)``) under adapted weights."""
        return score_fast_weights(self.model, state, x)

    # ------------------------------------------------------------------ inner loop

    def _adapt(self, batch: TaskBatch, start: FastWeights, *, create_graph: bool,
               query: bool) -> tuple[FastWeights, Tensor | None]:
        """Adapt every task from ``start``; the query losses ``(tasks,)`` only if ``query`` (else None)."""
        check_task_batch(batch)
        _check_device(self.model, batch)
        try:
            return self._adapt_all(batch, start, create_graph=create_graph, query=query)
        except RuntimeError as error:
            mismatch = batch_dtype_mismatch(self.model, batch)
            if mismatch is None:
                raise
            raise ValueError(mismatch) from error

    def _adapt_all(self, batch: TaskBatch, start: FastWeights, *, create_graph: bool,
                   query: bool) -> tuple[FastWeights, Tensor | None]:
        cfg = self.config
        if cfg.sparse_embeddings:  # embedding tables -> the rows each task reads
            inputs = [batch.support_x, batch.query_x] if query else [batch.support_x]
            start = sparse_start(self.model, start, inputs, cfg.batched, self._trace_cache, cfg.trace,
                                 cfg.sparse_min_rows)
        rows = start.rows
        lr = self.inner_lr()
        if rows and isinstance(lr, Mapping):  # Meta-SGD: the learned rates of those rows
            lr = {k: gather_rows(v, rows[k]) if k in rows else v for k, v in lr.items()}
        if cfg.batched:
            task_losses = BatchedTaskLoss(self.model, self.loss_fn, cfg.trace, self._trace_cache)
            expanded = start.expand(batch.num_tasks)
            if task_losses.traces:  # one stride pattern at every step: one traced graph serves them all
                expanded = expanded.with_local({k: v if k in rows else v.contiguous() for k, v in expanded.local.items()})
            fast, losses = inner_loop(lambda state: task_losses(state, batch.support_x, batch.support_y,
                                                                batch.support_mask),
                                      expanded, cfg.inner_steps, lr, create_graph)
            query_loss = task_losses(fast, batch.query_x, batch.query_y, batch.query_mask) if query else None
        else:
            fast, losses, query_loss = self._adapt_looped(batch, start, lr, create_graph, query)
        if cfg.check_finite:
            bad = non_finite_tasks(losses, fast, query_loss)
            if bad:
                explain_non_finite(partial(task_loss, self.model, self.loss_fn), start, batch, bad,
                                   cfg.inner_steps, lr, query_loss)
        return fast, query_loss

    def _adapt_looped(self, batch: TaskBatch, start: FastWeights, lr: InnerLR, create_graph: bool,
                      query: bool) -> tuple[FastWeights, Tensor, Tensor | None]:
        """One task at a time (the readable reference): fast weights, losses ``(steps, tasks)``, query losses."""
        loss_of = partial(task_loss, self.model, self.loss_fn)
        rows = start.rows
        per_task, step_losses, query_losses = [], [], []
        for t in range(batch.num_tasks):
            lr_t = {k: v[t] if k in rows else v for k, v in lr.items()} if rows and isinstance(lr, Mapping) else lr
            support = (_task(batch.support_x, t), batch.support_y[t], batch.support_mask[t])
            fast_t, losses_t = inner_loop(lambda state: loss_of(state, *support), start.for_task(t),
                                          self.config.inner_steps, lr_t, create_graph)
            if query:
                query_losses.append(loss_of(fast_t, _task(batch.query_x, t), batch.query_y[t], batch.query_mask[t]))
            per_task.append(fast_t)
            step_losses.append(losses_t)
        fast = FastWeights.stack(per_task, rows)
        return fast, torch.stack(step_losses, dim=1), torch.stack(query_losses) if query else None


def _lr_key(name: str) -> str:
    # Parameter names may not contain dots inside a ParameterDict.
    return name.replace(".", "__")


class MetaSGD(MAML):
    """Meta-SGD (Li et al., 2017): MAML plus one learned inner learning rate per weight.

    ``inner_lrs`` holds a tensor shaped like each adapted parameter, initialised to
    ``inner_lr``; it is a meta-parameter trained with the initialisation, and, as in the
    paper, it is not constrained to stay positive.

    Args:
        model: the base model, as for :class:`MAML`.
        loss_fn: per-task loss, as for :class:`MAML`.
        config: the inner loop (:class:`InnerLoopConfig`); its ``inner_lr`` is the learned rates'
            starting value. None: :class:`InnerLoopConfig` defaults.
        **inner: :class:`InnerLoopConfig` fields applied over ``config``.
    """

    def __init__(
        self, model: nn.Module, *, loss_fn: LossFn = masked_bce_loss, config: InnerLoopConfig | None = None, **inner
    ):
        super().__init__(model, loss_fn=loss_fn, config=config, **inner)
        adapted, _ = select_params(model, self.config.adapt)
        self.inner_lrs = nn.ParameterDict(
            {_lr_key(name): nn.Parameter(torch.full_like(p, self.config.inner_lr)) for name, p in adapted.items()}
        )

    def inner_lr(self) -> InnerLR:
        adapted, _ = select_params(self.model, self.config.adapt)
        return {name: self.inner_lrs[_lr_key(name)] for name in adapted}


TRAIN_ON = ("support+query", "support")  # what Reptile's inner steps train on


class Reptile(MAML):
    """Reptile (Nichol et al., 2018): move the initialisation toward the adapted weights.

    ``outer_step`` adapts every task on all of its events, support and query together, as
    published (``train_on="support"`` adapts on the support set only, an older behaviour of this
    library that gives Reptile a fraction of the data the other learners see), first order, no
    graph; then sets ``param.grad = param - mean_over_tasks(adapted)`` for each adapted parameter
    and calls ``optimizer.step()``: with plain SGD at learning rate ``outer_lr`` this is the
    Reptile update ``param += outer_lr * (mean_adapted - param)``, and any torch optimizer
    (Adam, ...) can consume the same direction. With ``optimizer=None`` the update uses
    ``self.outer_lr`` directly: Reptile has its own outer update (``own_outer_update``), which
    :class:`~metarec_ref.train.meta_trainer.MetaTrainer` applies with
    ``MetaTrainConfig(outer_update="learner")``. ``meta_loss`` is the query loss after adapting on
    the support set (as at test time), for monitoring only (detached: Reptile's update is not its
    gradient).

    Args:
        model: the base model, as for :class:`MAML`.
        loss_fn: per-task loss, as for :class:`MAML`.
        config: the inner loop (:class:`InnerLoopConfig`); None: ``Reptile.default_config``
            (5 inner steps). Reptile is first order by construction: a config's ``first_order``
            is not read (any config serves), and only an explicit ``first_order=False`` raises.
        outer_lr: the step size of Reptile's own update (``optimizer=None``), a number > 0.
        train_on: ``"support+query"`` (default, as published) or ``"support"``.
        **inner: :class:`InnerLoopConfig` fields applied over ``config``.
    """

    default_config: ClassVar[InnerLoopConfig] = InnerLoopConfig(inner_steps=5, first_order=True)
    own_outer_update: ClassVar[bool] = True  # outer_step(batch, None) steps by outer_lr

    def __init__(
        self,
        model: nn.Module,
        *,
        loss_fn: LossFn = masked_bce_loss,
        config: InnerLoopConfig | None = None,
        outer_lr: float = 0.1,
        train_on: str = "support+query",
        **inner,
    ):
        super().__init__(model, loss_fn=loss_fn, config=config, **inner)
        if train_on not in TRAIN_ON:
            raise ValueError(f"train_on must be one of {TRAIN_ON}, got {train_on!r}")
        self.train_on = train_on
        if not isinstance(outer_lr, (int, float)) or not outer_lr > 0:
            raise ValueError(f"outer_lr must be a number > 0, got {outer_lr!r}")
        self.outer_lr = float(outer_lr)

    @classmethod
    def _inner_config(cls, config: InnerLoopConfig | None, inner: dict) -> InnerLoopConfig:
        if inner.get("first_order", True) is not True:
            raise ValueError("Reptile is first order by construction; leave first_order out")
        return super()._inner_config(config, inner).override(first_order=True)

    def meta_loss(self, batch: TaskBatch) -> Tensor:
        """Mean query loss after adaptation, detached: for monitoring, not for backpropagation."""
        _, loss = self._adapt_detached(batch)
        return loss.mean()

    def _adapt_detached(self, batch: TaskBatch) -> tuple[FastWeights, Tensor]:
        """Fast weights and query losses ``(tasks,)`` from detached meta-parameters: no graph to the model."""
        start = FastWeights.of(self.model, self.config.adapt, detach=True)
        with torch.enable_grad():
            state, query_loss = self._adapt(batch, start, create_graph=False, query=True)
        return state.detach(), query_loss.detach()

    def reptile_direction(self, batch: TaskBatch) -> tuple[dict[str, Tensor], Tensor]:
        """``mean_t(adapted_t) - init`` per adapted parameter, and the mean loss after adaptation.

        The tasks adapt on ``train_on``: all their events (default) or the support set only.
        """
        if self.train_on == "support+query":
            batch = batch.with_query_in_support()
        state, query_loss = self._adapt_detached(batch)
        adapted, _ = select_params(self.model, self.config.adapt)
        # The mean of the changes, not the change of the mean: a weight no task moved gets exactly 0
        # (rounding in mean(adapted) - init would be amplified into real steps by Adam's scaling).
        # Row-wise tables: averaged from the rows the tasks read, never as full per-task copies.
        direction = {k: mean_table_change(state.local[k], p.detach(), state.rows[k]) if k in state.rows
                     else (state.local[k] - p.detach()).mean(0) for k, p in adapted.items()}
        return direction, query_loss.mean()

    def outer_step(self, batch: TaskBatch, optimizer: torch.optim.Optimizer | None = None) -> float:
        """One Reptile update (see the class docstring); returns the mean query loss."""
        direction, loss = self.reptile_direction(batch)
        adapted, _ = select_params(self.model, self.config.adapt)
        if optimizer is None:
            with torch.no_grad():
                for name, p in adapted.items():
                    p.add_(direction[name], alpha=self.outer_lr)
        else:
            optimizer.zero_grad()
            for name, p in adapted.items():
                p.grad = -direction[name]
            optimizer.step()
        return float(loss)


__all__ = ["MAML", "InnerLoopConfig", "MetaSGD", "Reptile"]
