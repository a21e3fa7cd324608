"""The inner loop on fast weights, the checks around it, and the plain outer update.

:func:`inner_loop` takes gradient steps on a :class:`~metarec_ref.meta.fast_weights.FastWeights`
state; nothing here mutates a module. Parameters live in plain dicts ``name -> Tensor``, run with
:func:`~metarec_ref.meta.forward.run_model` (``torch.func.functional_call``), and a step returns a
*new* dict. The same loop serves both paths of the learners, which compute the same numbers:

- one task at a time: the state has no task dimension and the loss is one task's (a scalar);
  the readable reference, used by the loop path;
- a whole meta-batch at once: each adapted parameter is expanded to a leading task dimension,
  ``(tasks, *shape)`` (a stride-0 view, no copy); ``vmap`` runs only the forward pass and the
  per-task loss (:class:`~metarec_ref.meta.tracing.BatchedTaskLoss`); one
  ``torch.autograd.grad`` of the *sum* of the task losses then gives, for each slice ``[t]`` of
  an expanded parameter, exactly task ``t``'s own gradient (task ``t``'s loss depends on slice
  ``t`` only). Taking the gradient outside ``vmap`` keeps the autograd graph made of plain
  batched kernels, which is several times faster than a ``vmap`` of a per-task ``grad`` and still
  works for any ``nn.Module`` that ``functional_call`` and ``vmap`` accept.

Frozen parameters (e.g. embedding tables when only the head adapts) are shared by every task, so
nothing is copied per task.

Tasks of unequal size are padded to a common ``k`` and carry a boolean mask (True = real
event). Losses are mask-weighted means per task, so padded events get zero weight and zero
gradient. Padding values must be finite (zeros, id 0): a NaN times a zero weight is still
NaN. BatchNorm in training mode normalises each task with its own batch statistics (padded
events included, so prefer LayerNorm with ragged tasks) and never touches the running statistics
(see :func:`~metarec_ref.meta.forward.run_model`); random ops such as dropout draw
independently per task.

Adapted embedding tables take row-wise fast weights when the state carries ``rows``: see
:mod:`metarec_ref.meta.sparse_embedding`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import torch
from torch import Tensor, nn

from metarec_ref.batch import Features, TaskBatch, map_features
from metarec_ref.meta.fast_weights import FastWeights, InnerLR


# --------------------------------------------------------------------------- checks


def _leaves(x: Features) -> dict[str, Tensor]:
    return dict(x) if isinstance(x, dict) else {"<tensor>": x}


def check_task_batch(batch: TaskBatch) -> None:
    """Raise ValueError when support and query disagree in keys, shapes or task counts."""
    tasks = batch.num_tasks
    for part in ("support", "query"):
        x, y, mask = (getattr(batch, f"{part}_{f}") for f in ("x", "y", "mask"))
        if y.dim() != 2 or mask.shape != y.shape:
            raise ValueError(
                f"{part}_y and {part}_mask must both have shape (tasks, events); got "
                f"{tuple(y.shape)} and {tuple(mask.shape)}"
            )
        if mask.dtype != torch.bool:
            raise ValueError(f"{part}_mask must be a bool tensor (True = real event), got {mask.dtype}")
        if y.shape[0] != tasks:
            raise ValueError(
                f"{part}_y has {y.shape[0]} tasks but support_y has {tasks}; "
                "support and query must hold the same tasks in the same order"
            )
        for key, leaf in _leaves(x).items():
            if tuple(leaf.shape[:2]) != tuple(y.shape):
                raise ValueError(
                    f"{part}_x[{key!r}] has leading shape {tuple(leaf.shape[:2])} but {part}_y has "
                    f"{tuple(y.shape)}; every feature needs shape (tasks, events, ...)"
                )
    support, query = _leaves(batch.support_x), _leaves(batch.query_x)
    if support.keys() != query.keys():
        raise ValueError(
            f"support_x has features {sorted(support)} but query_x has {sorted(query)}; "
            "give both the same feature keys"
        )
    for key in support:
        if support[key].shape[2:] != query[key].shape[2:] or support[key].dtype != query[key].dtype:
            raise ValueError(
                f"feature {key!r}: support has trailing shape {tuple(support[key].shape[2:])} "
                f"({support[key].dtype}), query has {tuple(query[key].shape[2:])} "
                f"({query[key].dtype}); they must match"
            )


def batch_dtype_mismatch(model: nn.Module, batch: TaskBatch) -> str | None:
    """Why a forward failed, when a float feature or label's dtype differs from the model's (else None)."""
    param = next((p for p in model.parameters() if p.is_floating_point()), None)
    if param is None:
        return None
    leaves = {f"{part}_x[{key!r}]": leaf for part, x in (("support", batch.support_x), ("query", batch.query_x))
              for key, leaf in _leaves(x).items()}
    leaves.update(support_y=batch.support_y, query_y=batch.query_y)
    for name, leaf in leaves.items():
        if leaf.is_floating_point() and leaf.dtype != param.dtype:
            return (f"the batch's {name} is {leaf.dtype} but the model's parameters are {param.dtype}; give both "
                    f"one dtype: learner.to({leaf.dtype}), or build the batch's float features and labels as "
                    f"{param.dtype}")
    return None


def check_inner_loop_args(inner_steps: int, inner_lr: float) -> None:
    """Raise ValueError for ``inner_steps < 1`` or a non-positive inner learning rate."""
    if isinstance(inner_steps, bool) or not isinstance(inner_steps, int) or inner_steps < 1:
        raise ValueError(f"inner_steps must be an int >= 1, got {inner_steps!r}")
    if not isinstance(inner_lr, (int, float)) or not inner_lr > 0 or inner_lr == float("inf"):
        raise ValueError(f"inner_lr must be a finite number > 0, got {inner_lr!r}")


class NonFiniteInnerLoopError(ValueError):
    """An inner-loop loss or gradient became NaN or inf."""


# --------------------------------------------------------------------------- inner loop


def _step(adapted: dict[str, Tensor], grads: tuple[Tensor, ...], inner_lr: InnerLR) -> dict[str, Tensor]:
    """One gradient step on a dict of fast weights; a new dict, inputs untouched."""
    if isinstance(inner_lr, Mapping):
        return {k: p - inner_lr[k] * g for (k, p), g in zip(adapted.items(), grads)}
    return {k: p.add(g, alpha=-inner_lr) for (k, p), g in zip(adapted.items(), grads)}


def inner_loop(
    losses: Callable[[FastWeights], Tensor],
    start: FastWeights,
    inner_steps: int,
    inner_lr: InnerLR,
    create_graph: bool = True,
) -> tuple[FastWeights, Tensor]:
    """Take ``inner_steps`` gradient steps from ``start``; return the fast weights and the losses ``(steps, ...)``.

    ``losses(state)`` is the support loss of one task (a scalar) or of every task ``(tasks,)``
    (the state then carries a task dimension, see the module docstring). ``create_graph=True``
    keeps the graph through every step (exact second-order meta-gradient); ``False`` treats each
    gradient as a constant (first order).
    """
    # A detached start (evaluation, Reptile) becomes a fresh leaf sharing storage: no copy.
    fast = start.with_local({k: p if p.requires_grad else p.detach().requires_grad_() for k, p in start.local.items()})
    history = []
    for _ in range(inner_steps):
        loss = losses(fast)
        # Task t's loss depends only on slice t, so the gradient of the sum w.r.t. the
        # (tasks, ...) tensors is every task's own gradient.
        grads = torch.autograd.grad(loss.sum(), list(fast.local.values()), create_graph=create_graph)
        fast = fast.with_local(_step(fast.local, grads, inner_lr))
        history.append(loss.detach())
    return fast, torch.stack(history)


# --------------------------------------------------------------------------- NaN / inf


def non_finite_tasks(losses: Tensor, fast: FastWeights, query_loss: Tensor | None = None) -> list[int]:
    """The tasks whose inner losses ``(steps, tasks)``, fast weights or query loss hold a NaN or inf.

    A data-dependent check cannot raise from inside ``vmap``, so this sums what the batched
    computation already has per task and syncs once. Checking only the final fast weights is
    enough for the gradients: a NaN or inf added to a parameter stays non-finite through every
    later step.
    """
    total = losses.sum(0)
    for p in fast.local.values():
        total = total + p.detach().flatten(1).sum(1)
    if query_loss is not None:
        total = total + query_loss.detach()
    ok = torch.isfinite(total)
    return [] if bool(ok.all()) else torch.nonzero(~ok).flatten().tolist()


def explain_non_finite(
    loss_of: Callable[[FastWeights, Features, Tensor, Tensor], Tensor],
    start: FastWeights,
    batch: TaskBatch,
    tasks: list[int],
    inner_steps: int,
    inner_lr: InnerLR,
    query_loss: Tensor | None = None,
) -> None:
    """Replay the inner loop of ``tasks`` without a graph; raise naming the first bad step, task and quantity.

    ``loss_of(state, x, y, mask)``: one task's loss; ``start``: the state before expansion (as for
    :meth:`FastWeights.for_task`); ``inner_lr``: with row-wise tables, rates already gathered per task.
    """
    rows = start.rows
    with torch.enable_grad():
        for t in tasks:
            task = batch.select([t])
            x = map_features(task.support_x, lambda v: v[0])
            state = start.for_task(t)
            params = {k: v.detach().requires_grad_() for k, v in state.local.items()}
            lr = inner_lr if not isinstance(inner_lr, Mapping) else {
                k: (v[t] if k in rows else v).detach() for k, v in inner_lr.items()}
            for step in range(1, inner_steps + 1):
                loss = loss_of(state.with_local(params), x, task.support_y[0], task.support_mask[0])
                if not torch.isfinite(loss):
                    raise NonFiniteInnerLoopError(
                        f"inner-loop loss is {loss.item()} at step {step} of {inner_steps} for task {t}; "
                        "check that task's features and labels, or lower inner_lr"
                    )
                grads = torch.autograd.grad(loss, list(params.values()))
                for (name, _), g in zip(params.items(), grads):
                    if not torch.isfinite(g).all():
                        raise NonFiniteInnerLoopError(
                            f"inner-loop gradient of {name!r} is not finite at step {step} of "
                            f"{inner_steps} for task {t}; lower inner_lr or check that task's data"
                        )
                params = {k: v.detach().requires_grad_() for k, v in _step(params, grads, lr).items()}
            if query_loss is not None and not torch.isfinite(query_loss[t]):
                raise NonFiniteInnerLoopError(
                    f"query loss is {query_loss[t].item()} for task {t} after {inner_steps} inner "
                    "steps; check that task's query features and labels, or lower inner_lr"
                )


def gradient_outer_step(
    meta_loss: Callable[[TaskBatch], Tensor], batch: TaskBatch, optimizer: torch.optim.Optimizer | None
) -> float:
    """The plain outer update shared by gradient-trained learners: backpropagate, then step."""
    if optimizer is None:
        raise ValueError("this learner has no outer update of its own: give outer_step an optimizer "
                         "(MetaTrainConfig(outer_update='optimizer'))")
    optimizer.zero_grad()
    loss = meta_loss(batch)
    loss.backward()
    optimizer.step()
    return float(loss.detach())


__all__ = [
    "NonFiniteInnerLoopError",
    "batch_dtype_mismatch",
    "check_inner_loop_args",
    "check_task_batch",
    "explain_non_finite",
    "gradient_outer_step",
    "inner_loop",
    "non_finite_tasks",
]
