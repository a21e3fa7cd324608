"""Fast weights: pick the parameters that adapt, run inner loops, check tasks and losses.

The losses live in :mod:`metarec_ref.meta.losses`, the batched and traced task loss in
:mod:`metarec_ref.meta.tracing`.

Nothing here mutates a module. Parameters live in plain dicts ``name -> Tensor`` that are
passed to :func:`torch.func.functional_call`; an inner-loop step returns a *new* dict.

Two inner loops compute the same numbers:

- :func:`adapt_task` adapts one task: the readable reference, used by the loop path.
- :func:`adapt_tasks` adapts a whole meta-batch at once. Each adapted parameter is
  expanded to a leading task dimension, ``(tasks, *shape)`` (a stride-0 view, no copy);
  ``vmap`` runs only the forward pass and the per-task loss; one
  ``torch.autograd.grad`` of the *sum* of the task losses then gives, for each slice
  ``[t]`` of an expanded parameter, exactly task ``t``'s own gradient (task ``t``'s loss
  depends on slice ``t`` only). Taking the gradient outside ``vmap`` keeps the autograd
  graph made of plain batched kernels, which is several times faster than a ``vmap`` of a
  per-task ``grad`` and still works for any ``nn.Module`` that ``functional_call`` and
  ``vmap`` accept.

:func:`adapt_tasks` takes its task losses from :class:`~metarec_ref.meta.tracing.BatchedTaskLoss`,
which can also record the vmapped forward once and replay it (``trace=True``).

Frozen parameters (e.g. embedding tables when only the head adapts) are passed with
``in_dims=None``: every task reads the very same tensor, so nothing is copied per task.

Tasks of unequal size are padded to a common ``k`` and carry a boolean mask (True = real
event). Losses are mask-weighted means per task, so padded events get zero weight and zero
gradient. Padding values must be finite (zeros, id 0): a NaN times a zero weight is still
NaN. BatchNorm in training mode normalises each task with its own batch statistics (padded
events included, so prefer LayerNorm with ragged tasks) and never touches the running statistics
(see :func:`~metarec_ref.meta.sparse_embedding.run_model`); random ops such as dropout draw
independently per task.

Adapted embedding tables take row-wise fast weights when the caller asks for them (``rows``):
see :mod:`metarec_ref.meta.sparse_embedding`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Union

import torch
from torch import Tensor, nn

from metarec_ref.batch import Features, TaskBatch, map_features
from metarec_ref.meta.losses import LossFn, masked_bce_loss
from metarec_ref.meta.sparse_embedding import dense_tables, run_model
from metarec_ref.meta.tracing import BatchedTaskLoss

# What adapts in the inner loop: "all", "head", "dense", or a predicate on parameter names.
ParamFilter = Union[str, Callable[[str], bool]]
# One inner learning rate for all parameters, or one tensor per adapted parameter (Meta-SGD).
InnerLR = Union[float, Mapping[str, Tensor]]


# --------------------------------------------------------------------------- parameters


def _filter_fn(model: nn.Module, adapt: ParamFilter) -> Callable[[str], bool]:
    if callable(adapt):
        return adapt
    if adapt == "all":
        return lambda name: True
    if adapt == "head":
        return lambda name: name.startswith("head.")
    if adapt == "dense":
        embedding_weights = {
            f"{prefix}.weight" if prefix else "weight"
            for prefix, module in model.named_modules()
            if isinstance(module, (nn.Embedding, nn.EmbeddingBag))
        }
        return lambda name: name not in embedding_weights
    raise ValueError(
        f"adapt={adapt!r} is not a parameter filter; use 'all', 'head', 'dense' "
        "or a callable name -> bool"
    )


def select_params(
    model: nn.Module, adapt: ParamFilter = "all"
) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
    """Split a module's tensors into ``(adapted, frozen)`` dicts, by identity (no copies).

    ``adapted`` holds the parameters chosen by ``adapt``; ``frozen`` holds every other
    parameter and every buffer, so ``{**frozen, **adapted}`` is a full
    ``functional_call`` state. ``adapt``: "all"; "head" (names starting with ``head.``);
    "dense" (all but ``nn.Embedding`` weights); or a callable ``name -> bool``.
    """
    keep = _filter_fn(model, adapt)
    adapted: dict[str, Tensor] = {}
    frozen: dict[str, Tensor] = {}
    for name, param in model.named_parameters():
        (adapted if keep(name) else frozen)[name] = param
    if not adapted:
        names = [name for name, _ in model.named_parameters()]
        raise ValueError(
            f"adapt={adapt!r} selects no parameter of {type(model).__name__}; its parameters "
            f"are {names[:8]}{' ...' if len(names) > 8 else ''}. Use adapt='all' or a filter "
            "that matches at least one name (the 'head' filter needs names starting with 'head.')"
        )
    frozen.update(dict(model.named_buffers()))
    return adapted, frozen


class FastWeights:
    """Per-task adapted parameters (leading task dim) and the shared frozen tensors.

    ``rows`` maps each embedding table adapted row-wise (see
    :mod:`metarec_ref.meta.sparse_embedding`) to its sorted rows ``(tasks, R)``; ``local`` then
    holds that table's task-local rows ``(tasks, R, dim)`` and ``frozen`` the shared table.
    ``adapted`` gives every adapted parameter as a full ``(tasks, *shape)`` tensor (materialised
    on first use for row-wise tables); scoring reads ``local`` and never materialises.
    """

    def __init__(self, adapted: dict[str, Tensor], frozen: dict[str, Tensor], rows: dict[str, Tensor] | None = None):
        self.local = adapted
        self.frozen = frozen
        self.rows = rows or {}
        self._dense: dict[str, Tensor] | None = None if self.rows else adapted

    @property
    def adapted(self) -> dict[str, Tensor]:
        """name -> (tasks, *shape), full tables included."""
        if self._dense is None:
            self._dense = {
                k: dense_tables(v, self.frozen[k], self.rows[k]) if k in self.rows else v
                for k, v in self.local.items()
            }
        return self._dense

    @property
    def num_tasks(self) -> int:
        return int(next(iter(self.local.values())).shape[0])

    def detach(self) -> FastWeights:
        return FastWeights({k: v.detach() for k, v in self.local.items()}, self.frozen, self.rows)


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


# --------------------------------------------------------------------------- inner loops


def _task_loss(
    model: nn.Module, loss_fn: LossFn, adapted: dict[str, Tensor], frozen: dict[str, Tensor],
    x: Features, y: Tensor, mask: Tensor, rows: dict[str, Tensor] | None = None,
) -> Tensor:
    return loss_fn(run_model(model, frozen, adapted, x, rows), y, mask)


def _step(adapted: dict[str, Tensor], grads: tuple[Tensor, ...], inner_lr: InnerLR) -> dict[str, Tensor]:
    """One gradient step on a dict of fast weights; a new dict, inputs untouched."""
    if isinstance(inner_lr, Mapping):
        return {k: p - inner_lr[k] * g for (k, p), g in zip(adapted.items(), grads)}
    return {k: p.add(g, alpha=-inner_lr) for (k, p), g in zip(adapted.items(), grads)}


def adapt_task(
    model: nn.Module,
    adapted: dict[str, Tensor],
    frozen: dict[str, Tensor],
    x: Features,
    y: Tensor,
    mask: Tensor,
    loss_fn: LossFn = masked_bce_loss,
    inner_steps: int = 1,
    inner_lr: InnerLR = 0.01,
    create_graph: bool = True,
    rows: dict[str, Tensor] | None = None,
) -> tuple[dict[str, Tensor], Tensor]:
    """Adapt one task (leaves ``(k, ...)``); return fast weights and the losses ``(steps,)``.

    ``create_graph=True`` keeps the graph through every step (exact second-order
    meta-gradient); ``False`` treats each gradient as a constant (first order). ``rows``: the
    task's rows ``(R,)`` of each embedding table adapted row-wise (``adapted`` then holds its
    local rows, ``frozen`` the shared table).
    """
    # A detached start (evaluation, Reptile) becomes a fresh leaf sharing storage: no copy.
    fast = {k: p if p.requires_grad else p.detach().requires_grad_() for k, p in adapted.items()}
    losses = []
    for _ in range(inner_steps):
        loss = _task_loss(model, loss_fn, fast, frozen, x, y, mask, rows)
        grads = torch.autograd.grad(loss, list(fast.values()), create_graph=create_graph)
        fast = _step(fast, grads, inner_lr)
        losses.append(loss.detach())
    return fast, torch.stack(losses)


def expand_to_tasks(params: dict[str, Tensor], num_tasks: int) -> dict[str, Tensor]:
    """Stride-0 views ``(tasks, *shape)`` of each tensor: one slice per task, no copy."""
    return {k: p.unsqueeze(0).expand(num_tasks, *p.shape) for k, p in params.items()}


def adapt_tasks(
    model: nn.Module,
    adapted: dict[str, Tensor],
    frozen: dict[str, Tensor],
    x: Features,
    y: Tensor,
    mask: Tensor,
    loss_fn: LossFn = masked_bce_loss,
    inner_steps: int = 1,
    inner_lr: InnerLR = 0.01,
    create_graph: bool = True,
    task_losses: BatchedTaskLoss | None = None,
    rows: dict[str, Tensor] | None = None,
) -> tuple[dict[str, Tensor], Tensor]:
    """Adapt a meta-batch at once (leaves ``(tasks, k, ...)``); fast weights ``(tasks, ...)``.

    Returns the fast weights and the inner losses ``(steps, tasks)``. Same numbers as
    :func:`adapt_task` on each task; see the module docstring for the design. ``rows``: per
    embedding table adapted row-wise, its rows ``(tasks, R)``; ``adapted`` then already holds
    that table's local rows ``(tasks, R, dim)`` (see :func:`~metarec_ref.meta.sparse_embedding.sparse_start`).
    """
    num_tasks = y.shape[0]
    rows = rows or {}
    task_losses = task_losses or BatchedTaskLoss(model, loss_fn, frozen, rows=rows)
    fast = {**expand_to_tasks({k: v for k, v in adapted.items() if k not in rows}, num_tasks),
            **{k: adapted[k] for k in rows}}
    fast = {k: fast[k] for k in adapted}
    if task_losses.traces:  # one stride pattern at every step: one traced graph serves them all
        fast = {k: v if k in rows else v.contiguous() for k, v in fast.items()}
    # A detached start (evaluation, Reptile) is a leaf view: let autograd track it, no copy.
    fast = {k: p if p.requires_grad else p.requires_grad_() for k, p in fast.items()}
    losses = []
    for _ in range(inner_steps):
        loss = task_losses(fast, x, y, mask)  # (tasks,)
        # Task t's loss depends only on slice t, so the gradient of the sum w.r.t. the
        # (tasks, ...) tensors is every task's own gradient.
        grads = torch.autograd.grad(loss.sum(), list(fast.values()), create_graph=create_graph)
        fast = _step(fast, grads, inner_lr)
        losses.append(loss.detach())
    return fast, torch.stack(losses)


# --------------------------------------------------------------------------- NaN / inf


def fast_weight_totals(fast: dict[str, Tensor]) -> Tensor:
    """(tasks,) sum of every adapted entry per task: finite iff all entries are (barring overflow).

    Checking only the final fast weights is enough for the gradients: a NaN or inf added to
    a parameter stays non-finite through every later step.
    """
    total = None
    for p in fast.values():
        part = p.detach().flatten(1).sum(1)
        total = part if total is None else total + part
    return total


def raise_if_not_finite(
    model: nn.Module,
    adapted: dict[str, Tensor],
    frozen: dict[str, Tensor],
    batch: TaskBatch,
    loss_fn: LossFn,
    inner_steps: int,
    inner_lr: InnerLR,
    losses: Tensor,
    fast_totals: Tensor,
    query_loss: Tensor | None = None,
    rows: dict[str, Tensor] | None = None,
) -> None:
    """One cheap check after the batched computation; on failure, find the step and the task.

    A data-dependent check cannot raise from inside ``vmap``, so the fast path sums what
    it already has per task and syncs once. Only when that sum is not finite does it replay
    the inner loop without a graph and name the first bad step, task and quantity.
    ``losses``: inner losses ``(steps, tasks)``; ``fast_totals``: from
    :func:`fast_weight_totals`; ``query_loss``: ``(tasks,)`` or None; ``rows``: as for
    :func:`adapt_tasks` (``adapted`` then holds the local rows with a task dimension).
    """
    rows = rows or {}
    total = losses.sum(0) + fast_totals
    if query_loss is not None:
        total = total + query_loss.detach()
    ok = torch.isfinite(total)
    if bool(ok.all()):
        return
    with torch.enable_grad():
        for t in torch.nonzero(~ok).flatten().tolist():
            task = batch.select([t])
            x = map_features(task.support_x, lambda v: v[0])
            params = {k: (v[t] if k in rows else v).detach().requires_grad_() for k, v in adapted.items()}
            task_rows = {k: r[t] for k, r in rows.items()}
            lr = inner_lr if not isinstance(inner_lr, Mapping) else {
                k: (v[t] if k in rows else v).detach() for k, v in inner_lr.items()}
            for step in range(1, inner_steps + 1):
                loss = _task_loss(model, loss_fn, params, frozen, x, task.support_y[0], task.support_mask[0], task_rows)
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
    meta_loss: Callable[[TaskBatch], Tensor], batch: TaskBatch, optimizer: torch.optim.Optimizer
) -> float:
    """The plain outer update shared by gradient-trained learners: backpropagate, then step."""
    optimizer.zero_grad()
    loss = meta_loss(batch)
    loss.backward()
    optimizer.step()
    return float(loss.detach())


__all__ = [
    "FastWeights",
    "InnerLR",
    "NonFiniteInnerLoopError",
    "ParamFilter",
    "adapt_task",
    "adapt_tasks",
    "check_inner_loop_args",
    "batch_dtype_mismatch",
    "check_task_batch",
    "expand_to_tasks",
    "fast_weight_totals",
    "gradient_outer_step",
    "raise_if_not_finite",
    "select_params",
]
