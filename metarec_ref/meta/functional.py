"""Fast weights: pick the parameters that adapt, run inner loops, check tasks and losses.

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

With ``trace=True`` (:class:`BatchedTaskLoss`), the vmapped forward is recorded once per input
signature as a graph of plain aten ops and replayed: the same numbers with fewer Python calls
and autograd nodes per step, for modules whose ``forward`` depends only on its tensors.

Frozen parameters (e.g. embedding tables when only the head adapts) are passed with
``in_dims=None``: every task reads the very same tensor, so nothing is copied per task.

Tasks of unequal size are padded to a common ``k`` and carry a boolean mask (True = real
event). Losses are mask-weighted means per task, so padded events get zero weight and zero
gradient. Padding values must be finite (zeros, id 0): a NaN times a zero weight is still
NaN. Models must not mix events of a task (no BatchNorm), or padding would leak.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call, vmap
from torch.fx.experimental.proxy_tensor import make_fx

from metarec_ref.batch import Features, TaskBatch, map_features

# What adapts in the inner loop: "all", "head", "dense", or a predicate on parameter names.
ParamFilter = Union[str, Callable[[str], bool]]
# A per-task loss: (logits or predictions (k,), targets (k,), mask (k,) bool) -> scalar.
LossFn = Callable[[Tensor, Tensor, Tensor], Tensor]
# One inner learning rate for all parameters, or one tensor per adapted parameter (Meta-SGD).
InnerLR = Union[float, Mapping[str, Tensor]]


# --------------------------------------------------------------------------- losses


def masked_bce_loss(logits: Tensor, y: Tensor, mask: Tensor) -> Tensor:
    """Binary cross-entropy on logits, averaged over real (mask=True) events; 0 if none.

    Written as ``softplus(x) - y * x``, the same function as
    ``F.binary_cross_entropy_with_logits`` (equal to float rounding) and just as stable, but
    three ops instead of the dozen that one decomposes into under ``vmap``: the second-order
    backward of every inner step has far fewer nodes to walk.
    """
    weight = mask.to(logits.dtype)
    losses = F.softplus(logits) - y.to(logits.dtype) * logits
    return (losses * weight).sum() / weight.sum().clamp_min(1.0)


def masked_mse_loss(pred: Tensor, y: Tensor, mask: Tensor) -> Tensor:
    """Squared error averaged over real (mask=True) events; 0 if none."""
    weight = mask.to(pred.dtype)
    return ((pred - y.to(pred.dtype)) ** 2 * weight).sum() / weight.sum().clamp_min(1.0)


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


@dataclass
class FastWeights:
    """Per-task adapted parameters (leading task dim) and the shared frozen tensors."""

    adapted: dict[str, Tensor]  # name -> (tasks, *shape)
    frozen: dict[str, Tensor]  # name -> shape, the module's own tensors

    @property
    def num_tasks(self) -> int:
        return int(next(iter(self.adapted.values())).shape[0])

    def detach(self) -> "FastWeights":
        return FastWeights({k: v.detach() for k, v in self.adapted.items()}, self.frozen)


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
    x: Features, y: Tensor, mask: Tensor,
) -> Tensor:
    return loss_fn(functional_call(model, {**frozen, **adapted}, (x,)), y, mask)


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
) -> tuple[dict[str, Tensor], Tensor]:
    """Adapt one task (leaves ``(k, ...)``); return fast weights and the losses ``(steps,)``.

    ``create_graph=True`` keeps the graph through every step (exact second-order
    meta-gradient); ``False`` treats each gradient as a constant (first order).
    """
    # A detached start (evaluation, Reptile) becomes a fresh leaf sharing storage: no copy.
    fast = {k: p if p.requires_grad else p.detach().requires_grad_() for k, p in adapted.items()}
    losses = []
    for _ in range(inner_steps):
        loss = _task_loss(model, loss_fn, fast, frozen, x, y, mask)
        grads = torch.autograd.grad(loss, list(fast.values()), create_graph=create_graph)
        fast = _step(fast, grads, inner_lr)
        losses.append(loss.detach())
    return fast, torch.stack(losses)


class BatchedTaskLoss:
    """Per-task losses of a meta-batch under ``vmap``: ``(adapted (tasks, ...), x, y, mask) -> (tasks,)``.

    Built once per learner call so the vmapped function is not re-created at every step.
    ``trace=True`` records the vmapped forward once per input signature (shapes, dtypes,
    devices, ``model.training``) with ``make_fx`` and then replays that graph of plain
    aten ops: same kernels and numbers, without the per-call cost of ``vmap`` and
    ``functional_call`` in Python. A trace freezes everything but the tensors and that
    signature, so use it only for modules whose ``forward`` reads no other Python state
    that changes between calls. ``graphs`` is the cache to keep across calls.
    """

    def __init__(
        self, model: nn.Module, loss_fn: LossFn, frozen: dict[str, Tensor],
        trace: bool = False, graphs: dict | None = None,
    ):
        def one_task(
            adapted: dict[str, Tensor], frozen: dict[str, Tensor], x: Features, y: Tensor, mask: Tensor
        ) -> Tensor:
            return loss_fn(functional_call(model, {**frozen, **adapted}, (x,)), y, mask)

        # Frozen tensors are shared by every task (in_dims=None): never copied per task.
        self._losses = vmap(one_task, in_dims=(0, None, 0, 0, 0))
        self._model = model
        self._frozen = frozen
        self._trace = trace
        self._graphs = graphs if graphs is not None else {}

    def __call__(self, adapted: dict[str, Tensor], x: Features, y: Tensor, mask: Tensor) -> Tensor:
        args = (adapted, self._frozen, x, y, mask)
        if not self._trace:
            return self._losses(*args)
        key = (self._model.training, _signature(args))
        graph = self._graphs.get(key)
        if graph is None:
            graph = self._graphs[key] = self._record(args)
            if len(self._graphs) > MAX_TRACED_GRAPHS:  # drop the oldest signature
                del self._graphs[next(iter(self._graphs))]
        return graph(*args)

    def _record(self, args: tuple) -> Callable[..., Tensor]:
        detached = tuple(_map_tensors(a, Tensor.detach) for a in args)
        try:
            with torch.no_grad():
                graph = make_fx(self._losses)(*detached)
        except Exception as err:
            raise RuntimeError(
                f"trace=True could not trace {type(self._model).__name__}.forward under vmap "
                f"({type(err).__name__}: {err}); use trace=False"
            ) from err
        drop_identity_ops(graph)
        return graph


MAX_TRACED_GRAPHS = 16  # input signatures kept per learner; each costs one trace

_aten = torch.ops.aten
# Ops that return a view of their first argument: writing through them writes the argument.
_VIEW_OPS = {
    _aten.view.default, _aten._unsafe_view.default, _aten.expand.default, _aten.reshape.default,
    _aten.transpose.int, _aten.t.default, _aten.permute.default, _aten.squeeze.dim,
    _aten.squeeze.dims, _aten.unsqueeze.default, _aten.slice.Tensor, _aten.select.int,
    _aten.as_strided.default, _aten.alias.default,
}
_RESHAPES = {_aten.view.default, _aten._unsafe_view.default, _aten.expand.default, _aten.reshape.default}


def _is_inplace(node: torch.fx.Node) -> bool:
    target = node.target
    return node.op == "call_function" and isinstance(target, torch._ops.OpOverload) and (
        target._schema.name.endswith("_") or bool(target._schema.arguments and target._schema.arguments[0].is_write)
    )


def drop_identity_ops(graph: torch.fx.GraphModule) -> int:
    """Remove ops that return their input unchanged (a reshape to the same shape and strides, ``x * 1``).

    ``vmap`` leaves many of them in a trace; each one costs an autograd node in every inner
    step and more in the second-order backward. Values are untouched. ``x * 1`` makes a copy,
    so it stays when an in-place op writes into that copy or into ``x`` (through any view).
    Returns how many were removed.
    """
    nodes = list(graph.graph.nodes)
    written = {n.args[0] for n in nodes if _is_inplace(n) and n.args and isinstance(n.args[0], torch.fx.Node)}

    def written_through(node: torch.fx.Node) -> bool:
        """True when an in-place op writes ``node``'s memory, through any view of it or of its base."""
        while node.target in _VIEW_OPS and isinstance(node.args[0], torch.fx.Node):
            node = node.args[0]
        todo, seen = [node], set()
        while todo:
            current = todo.pop()
            if current in written:
                return True
            seen.add(current)
            todo += [u for u in current.users if u.target in _VIEW_OPS and u not in seen]
        return False

    removed = 0
    for node in nodes:
        if node.op != "call_function" or not node.args or not isinstance(node.args[0], torch.fx.Node):
            continue
        source, out = node.args[0].meta.get("val"), node.meta.get("val")
        if not isinstance(source, Tensor) or not isinstance(out, Tensor):
            continue
        same = source.shape == out.shape and source.stride() == out.stride() and source.dtype == out.dtype
        identity = same and (
            node.target in _RESHAPES
            or (node.target == _aten.mul.Scalar and node.args[1] == 1
                and not written_through(node) and not written_through(node.args[0]))
        )
        if identity:
            node.replace_all_uses_with(node.args[0])
            graph.graph.erase_node(node)
            removed += 1
    if removed:
        graph.recompile()
    return removed


def _map_tensors(obj, fn: Callable[[Tensor], Tensor]):
    return {k: fn(v) for k, v in obj.items()} if isinstance(obj, dict) else fn(obj)


def _signature(args: tuple) -> tuple:
    """What a trace depends on: dict keys and each tensor's shape, dtype and device."""
    def describe(t: Tensor) -> tuple:
        return (tuple(t.shape), t.dtype, t.device)

    return tuple(
        tuple((k, describe(v)) for k, v in a.items()) if isinstance(a, dict) else describe(a)
        for a in args
    )


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
) -> tuple[dict[str, Tensor], Tensor]:
    """Adapt a meta-batch at once (leaves ``(tasks, k, ...)``); fast weights ``(tasks, ...)``.

    Returns the fast weights and the inner losses ``(steps, tasks)``. Same numbers as
    :func:`adapt_task` on each task; see the module docstring for the design.
    """
    num_tasks = y.shape[0]
    task_losses = task_losses or BatchedTaskLoss(model, loss_fn, frozen)
    fast = expand_to_tasks(adapted, num_tasks)
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
) -> None:
    """One cheap check after the batched computation; on failure, find the step and the task.

    A data-dependent check cannot raise from inside ``vmap``, so the fast path sums what
    it already has per task and syncs once. Only when that sum is not finite does it replay
    the inner loop without a graph and name the first bad step, task and quantity.
    ``losses``: inner losses ``(steps, tasks)``; ``fast_totals``: from
    :func:`fast_weight_totals`; ``query_loss``: ``(tasks,)`` or None.
    """
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
            params = {k: v.detach().requires_grad_() for k, v in adapted.items()}
            lr = inner_lr if not isinstance(inner_lr, Mapping) else {k: v.detach() for k, v in inner_lr.items()}
            for step in range(1, inner_steps + 1):
                loss = _task_loss(model, loss_fn, params, frozen, x, task.support_y[0], task.support_mask[0])
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


__all__ = [
    "BatchedTaskLoss",
    "FastWeights",
    "InnerLR",
    "LossFn",
    "NonFiniteInnerLoopError",
    "ParamFilter",
    "adapt_task",
    "adapt_tasks",
    "check_inner_loop_args",
    "check_task_batch",
    "drop_identity_ops",
    "expand_to_tasks",
    "fast_weight_totals",
    "masked_bce_loss",
    "masked_mse_loss",
    "raise_if_not_finite",
    "select_params",
]


def gradient_outer_step(
    meta_loss: Callable[[TaskBatch], Tensor], batch: TaskBatch, optimizer: torch.optim.Optimizer
) -> float:
    """The plain outer update shared by gradient-trained learners: backpropagate, then step."""
    optimizer.zero_grad()
    loss = meta_loss(batch)
    loss.backward()
    optimizer.step()
    return float(loss.detach())
