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
:class:`InnerLoopConfig` (first-order MAML is ``MAML(model, first_order=True)``).

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
Tasks of unequal size arrive padded with a mask, and every loss is a mask-weighted mean.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from typing import ClassVar

import torch
from torch import Tensor, nn
from torch.func import vmap

from metarec_ref.batch import Features, TaskBatch, map_features
from metarec_ref.meta.functional import (
    FastWeights,
    InnerLR,
    ParamFilter,
    adapt_task,
    adapt_tasks,
    check_inner_loop_args,
    batch_dtype_mismatch,
    check_task_batch,
    fast_weight_totals,
    gradient_outer_step,
    raise_if_not_finite,
    select_params,
)
from metarec_ref.meta.losses import LossFn, masked_bce_loss
from metarec_ref.meta.sparse_embedding import (
    ROW_WISE_MIN_ROWS,
    gather_rows,
    mean_table_change,
    run_model,
    sparse_start,
)
from metarec_ref.meta.tracing import BatchedTaskLoss


@dataclass(frozen=True)
class InnerLoopConfig:
    """How tasks adapt: steps, learning rate, order, which parameters, batched or looped."""

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
    """

    default_config: ClassVar[InnerLoopConfig] = InnerLoopConfig()  # what ``config=None`` means

    def __init__(
        self,
        model: nn.Module,
        *,
        loss_fn: LossFn = masked_bce_loss,
        config: InnerLoopConfig | None = None,
        **inner,
    ):
        """``inner``: :class:`InnerLoopConfig` fields, applied over ``config`` (or the defaults)."""
        super().__init__()
        if config is not None and not isinstance(config, InnerLoopConfig):
            raise ValueError(f"config must be an InnerLoopConfig or None, got {type(config).__name__}")
        self.model = model
        self.loss_fn = loss_fn
        self.config = (config or self.default_config).override(**inner)
        self._traced_graphs: dict = {}  # input signature -> recorded forward (trace=True)
        select_params(model, self.config.adapt)  # fail now if the filter selects nothing

    @classmethod
    def from_config(cls, model: nn.Module, config: InnerLoopConfig, **kwargs) -> MAML:
        """Build the learner from an :class:`InnerLoopConfig`; ``kwargs``: the other keywords."""
        return cls(model, config=config, **kwargs)

    # ------------------------------------------------------------------ inner loop

    def inner_lr(self) -> InnerLR:
        """The inner learning rate(s); Meta-SGD returns one learned tensor per parameter."""
        return self.config.inner_lr

    def adapt_for_meta_loss(self, batch: TaskBatch) -> tuple[FastWeights, Tensor]:
        """Fast weights and query losses ``(tasks,)`` that backpropagate to the meta-parameters.

        Second order by default: the graph runs through every inner gradient. With
        ``first_order`` each inner gradient is a constant, so d(fast weights)/d(start) = I.
        """
        adapted, frozen = select_params(self.model, self.config.adapt)
        return self._inner_loop(batch, adapted, frozen, create_graph=not self.config.first_order, query=True)

    def adapt_detached(self, batch: TaskBatch) -> tuple[FastWeights, Tensor]:
        """Fast weights and query losses from detached meta-parameters: no graph to the model."""
        adapted, frozen = select_params(self.model, self.config.adapt)
        start = {k: p.detach() for k, p in adapted.items()}
        return self._inner_loop(batch, start, frozen, create_graph=False, query=True)

    def _inner_loop(
        self, batch: TaskBatch, adapted: dict[str, Tensor], frozen: dict[str, Tensor], *,
        create_graph: bool, query: bool,
    ) -> tuple[FastWeights, Tensor | None]:
        """Adapt every task from ``adapted``; the query losses only if ``query`` (else None)."""
        check_task_batch(batch)
        _check_device(self.model, batch)
        try:
            return self._adapt_all(batch, adapted, frozen, create_graph=create_graph, query=query)
        except RuntimeError as error:
            mismatch = batch_dtype_mismatch(self.model, batch)
            if mismatch is None:
                raise
            raise ValueError(mismatch) from error

    def _adapt_all(
        self, batch: TaskBatch, adapted: dict[str, Tensor], frozen: dict[str, Tensor], *,
        create_graph: bool, query: bool,
    ) -> tuple[FastWeights, Tensor | None]:
        cfg = self.config
        rows: dict[str, Tensor] = {}
        if cfg.sparse_embeddings:  # embedding tables -> the rows each task reads
            inputs = [batch.support_x, batch.query_x] if query else [batch.support_x]
            adapted, frozen, rows = sparse_start(
                self.model, adapted, frozen, inputs, cfg.batched, self._traced_graphs, cfg.trace, cfg.sparse_min_rows)
        lr = self.inner_lr()
        if rows and isinstance(lr, Mapping):  # Meta-SGD: the learned rates of those rows
            lr = {k: gather_rows(v, rows[k]) if k in rows else v for k, v in lr.items()}
        if cfg.batched:
            task_losses = BatchedTaskLoss(self.model, self.loss_fn, frozen, cfg.trace, self._traced_graphs, rows)
            fast, losses = adapt_tasks(
                self.model, adapted, frozen, batch.support_x, batch.support_y, batch.support_mask,
                self.loss_fn, cfg.inner_steps, lr, create_graph, task_losses, rows,
            )
            query_loss = task_losses(fast, batch.query_x, batch.query_y, batch.query_mask) if query else None
            totals = fast_weight_totals(fast) if cfg.check_finite else None
        else:
            per_task, step_losses, query_losses, totals_list = [], [], [], []
            for t in range(batch.num_tasks):
                rows_t = {k: r[t] for k, r in rows.items()}
                start_t = {k: v[t] if k in rows else v for k, v in adapted.items()}
                lr_t = {k: v[t] if k in rows else v for k, v in lr.items()} if rows and isinstance(lr, Mapping) else lr
                fast_t, losses_t = adapt_task(
                    self.model, start_t, frozen, _task(batch.support_x, t), batch.support_y[t],
                    batch.support_mask[t], self.loss_fn, cfg.inner_steps, lr_t, create_graph, rows_t,
                )
                if query:
                    logits = run_model(self.model, frozen, fast_t, _task(batch.query_x, t), rows_t)
                    query_losses.append(self.loss_fn(logits, batch.query_y[t], batch.query_mask[t]))
                if cfg.check_finite:
                    totals_list.append(sum(p.detach().sum() for p in fast_t.values()))
                per_task.append(fast_t)
                step_losses.append(losses_t)
            fast = {k: torch.stack([f[k] for f in per_task]) for k in adapted}
            losses = torch.stack(step_losses, dim=1)
            query_loss = torch.stack(query_losses) if query else None
            totals = torch.stack(totals_list) if cfg.check_finite else None
        if cfg.check_finite:
            raise_if_not_finite(self.model, adapted, frozen, batch, self.loss_fn, cfg.inner_steps,
                                lr, losses, totals, query_loss, rows)
        return FastWeights(fast, frozen, rows), query_loss

    # ------------------------------------------------------------------ protocol

    def meta_loss(self, batch: TaskBatch) -> Tensor:
        """Mean query loss after per-task adaptation; backpropagates to the meta-parameters."""
        _, query_loss = self.adapt_for_meta_loss(batch)
        return query_loss.mean()

    def outer_step(self, batch: TaskBatch, optimizer: torch.optim.Optimizer) -> float:
        """One meta-update: zero grads, backpropagate the meta-loss, step the optimizer."""
        return gradient_outer_step(self.meta_loss, batch, optimizer)

    def adapt(self, batch: TaskBatch) -> FastWeights:
        """Detached per-task fast weights for evaluation (works under ``torch.no_grad``)."""
        adapted, frozen = select_params(self.model, self.config.adapt)
        start = {k: p.detach() for k, p in adapted.items()}
        with torch.enable_grad():
            state, _ = self._inner_loop(batch, start, frozen, create_graph=False, query=False)
        return state.detach()

    def score(self, state: FastWeights, x: Features) -> Tensor:
        """Logits ``(tasks, n)`` of ``x`` (leaves ``(tasks, n, ...)``) under adapted weights."""
        return score_fast_weights(self.model, state, x)


def score_fast_weights(model: nn.Module, state: FastWeights, x: Features) -> Tensor:
    """Run ``model`` on each task's inputs with that task's fast weights (``vmap``)."""
    leaves = x.values() if isinstance(x, dict) else [x]
    for leaf in leaves:
        if leaf.dim() < 2 or leaf.shape[0] != state.num_tasks:
            raise ValueError(
                f"x has a leaf of shape {tuple(leaf.shape)} but the state holds {state.num_tasks} "
                "tasks; give x leaves of shape (tasks, n, ...) in the order of the adapted batch"
            )

    def one_task(adapted: dict[str, Tensor], rows: dict[str, Tensor], xt: Features) -> Tensor:
        return run_model(model, state.frozen, adapted, xt, rows, complete=False)

    return vmap(one_task, randomness="different")(state.local, state.rows, x)


def _lr_key(name: str) -> str:
    # Parameter names may not contain dots inside a ParameterDict.
    return name.replace(".", "__")


class MetaSGD(MAML):
    """Meta-SGD (Li et al., 2017): MAML plus one learned inner learning rate per weight.

    ``inner_lrs`` holds a tensor shaped like each adapted parameter, initialised to
    ``inner_lr``; it is a meta-parameter trained with the initialisation, and, as in the
    paper, it is not constrained to stay positive.
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
    library that gives Reptile a fraction of the data the other learners see), first order, no graph; then
    sets ``param.grad = param - mean_over_tasks(adapted)`` for each adapted parameter and
    calls ``optimizer.step()``: with plain SGD at learning rate ``outer_lr`` this is the
    Reptile update ``param += outer_lr * (mean_adapted - param)``, and any torch optimizer
    (Adam, ...) can consume the same direction. With ``optimizer=None`` the update uses
    ``self.outer_lr`` directly. ``meta_loss`` is the query loss after adapting on the support set
    (as at test time), for monitoring only (detached: Reptile's update is not its gradient). Reptile is first order by
    construction: its config has ``first_order=True``, and ``first_order=False`` raises.
    """

    default_config: ClassVar[InnerLoopConfig] = InnerLoopConfig(inner_steps=5, first_order=True)

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
        if not self.config.first_order:
            raise ValueError("Reptile is first order by construction; give it first_order=True or leave it out")
        if not isinstance(outer_lr, (int, float)) or not outer_lr > 0:
            raise ValueError(f"outer_lr must be a number > 0, got {outer_lr!r}")
        self.outer_lr = float(outer_lr)

    def meta_loss(self, batch: TaskBatch) -> Tensor:
        """Mean query loss after adaptation, detached: for monitoring, not for backpropagation."""
        with torch.enable_grad():
            _, query_loss = self.adapt_detached(batch)
        return query_loss.detach().mean()

    def reptile_direction(self, batch: TaskBatch) -> tuple[dict[str, Tensor], Tensor]:
        """``mean_t(adapted_t) - init`` per adapted parameter, and the mean loss after adaptation.

        The tasks adapt on ``train_on``: all their events (default) or the support set only.
        """
        if self.train_on == "support+query":
            batch = batch.with_query_in_support()
        with torch.enable_grad():
            state, query_loss = self.adapt_detached(batch)
        adapted, _ = select_params(self.model, self.config.adapt)
        state = state.detach()
        # The mean of the changes, not the change of the mean: a weight no task moved gets exactly 0
        # (rounding in mean(adapted) - init would be amplified into real steps by Adam's scaling).
        # Row-wise tables: averaged from the rows the tasks read, never as full per-task copies.
        direction = {k: mean_table_change(state.local[k], p.detach(), state.rows[k]) if k in state.rows
                     else (state.local[k] - p.detach()).mean(0) for k, p in adapted.items()}
        return direction, query_loss.detach().mean()

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


__all__ = ["MAML", "InnerLoopConfig", "MetaSGD", "Reptile", "score_fast_weights"]
