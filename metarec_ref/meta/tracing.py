"""The batched task loss, and recording it once as a graph of plain aten ops (``trace=True``).

:class:`BatchedTaskLoss` gives the per-task losses of a meta-batch under ``vmap``. With
``trace=True`` it records that vmapped forward once per input signature with ``make_fx`` and
replays the graph: the same numbers with fewer Python calls and autograd nodes per step, for
modules whose ``forward`` depends only on its tensors. :func:`drop_identity_ops` prunes the
no-op reshapes and ``x * 1`` that ``vmap`` leaves in such a graph. :func:`task_loss` is the loss
of one task, the function the batched loss vmaps and the looped path calls.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import torch
from torch import Tensor, nn
from torch.func import vmap
from torch.fx.experimental.proxy_tensor import make_fx

from metarec_ref.batch import Features, PredictionShapeError, check_prediction_shape
from metarec_ref.meta.fast_weights import FastWeights
from metarec_ref.meta.forward import run_model
from metarec_ref.meta.losses import LossFn
from metarec_ref.meta.trace_cache import MAX_TRACED_GRAPHS, TRACE_AFTER, TraceCache


def task_loss(model: nn.Module, loss_fn: LossFn, state: FastWeights, x: Features, y: Tensor, mask: Tensor) -> Tensor:
    """The loss of one task: ``loss_fn(model(x) on state, y, mask)``; a prediction not shaped like ``y`` is refused."""
    pred = run_model(model, state, x)
    check_prediction_shape(pred, y, mask)  # also for a custom loss_fn, which might broadcast
    return loss_fn(pred, y, mask)


class BatchedTaskLoss:
    """Per-task losses of a meta-batch under ``vmap``: ``(state (tasks, ...), x, y, mask) -> (tasks,)``.

    Built once per learner call so the vmapped function is not re-created at every step.
    ``trace=True`` records the vmapped forward once per input signature (shapes, dtypes,
    devices, ``model.training``) with ``make_fx`` and then replays that graph of plain
    aten ops: same kernels and numbers, without the per-call cost of ``vmap`` and
    ``functional_call`` in Python. A trace freezes everything but the tensors and that
    signature, so use it only for modules whose ``forward`` reads no other Python state
    that changes between calls. ``trace="auto"`` (the learners' default) records a signature
    only once it recurs (``TRACE_AFTER`` calls), so one-off shapes such as evaluation batches
    of varying sizes never pay for a trace. A forward that cannot be traced (data-dependent Python
    control flow, ``.item()``, ...) falls back to the untraced call, with a one-time warning
    that says why. ``cache`` keeps the graphs across calls. The state's ``rows`` (row-wise
    embedding tables, see :mod:`metarec_ref.meta.sparse_embedding`) carry a task dimension like
    its ``local``; its ``frozen`` tensors are shared by every task (never copied). Random ops
    (dropout) draw independently per task (``vmap(randomness="different")``).
    """

    def __init__(self, model: nn.Module, loss_fn: LossFn, trace: bool | str = False, cache: TraceCache | None = None):
        def one_task(adapted: dict[str, Tensor], frozen: dict[str, Tensor], x: Features, y: Tensor,
                     mask: Tensor) -> Tensor:
            return task_loss(model, loss_fn, FastWeights(adapted, frozen), x, y, mask)

        def one_task_rows(adapted: dict[str, Tensor], rows: dict[str, Tensor], frozen: dict[str, Tensor],
                          x: Features, y: Tensor, mask: Tensor) -> Tensor:
            return task_loss(model, loss_fn, FastWeights(adapted, frozen, rows), x, y, mask)

        # Frozen tensors are shared by every task (in_dims=None): never copied per task.
        self._plain = vmap(one_task, in_dims=(0, None, 0, 0, 0), randomness="different")
        self._with_rows = vmap(one_task_rows, in_dims=(0, 0, None, 0, 0, 0), randomness="different")
        self._model = model
        self._trace = trace
        self._cache = cache if cache is not None else TraceCache()

    def __call__(self, state: FastWeights, x: Features, y: Tensor, mask: Tensor) -> Tensor:
        if state.rows:
            losses, args = self._with_rows, (state.local, state.rows, state.frozen, x, y, mask)
        else:
            losses, args = self._plain, (state.local, state.frozen, x, y, mask)
        if not self._trace or self._cache.untraceable:
            return losses(*args)
        key = (self._model.training, _signature(args))
        graph = self._cache.get(key)
        if graph is None:
            if self._trace == "auto" and not self._cache.recurs(key):
                return losses(*args)
            graph = self._record(losses, args)
            if graph is None:
                return self._untraced(losses, args)
            self._cache.put(key, graph, limit=MAX_TRACED_GRAPHS)
        return graph(*args)

    @property
    def traces(self) -> bool:
        """True when this loss records graphs (``trace=True`` or ``"auto"``)."""
        return bool(self._trace)

    def _untraced(self, losses: Callable[..., Tensor], args: tuple) -> Tensor:
        try:
            return losses(*args)
        except PredictionShapeError:
            raise
        except Exception as err:
            raise RuntimeError(
                f"{type(self._model).__name__}.forward fails under vmap, traced or not ({type(err).__name__}: "
                f"{err}); use trace=False and batched=False (the looped path runs any forward)"
            ) from err

    def _record(self, losses: Callable[..., Tensor], args: tuple) -> Callable[..., Tensor] | None:
        detached = tuple(_map_tensors(a, Tensor.detach) for a in args)
        try:
            with torch.no_grad():
                graph = make_fx(losses)(*detached)
        except PredictionShapeError:  # the model's fault, not the tracer's: say so as it is
            raise
        except Exception as err:  # noqa: BLE001 - any failure to trace: run untraced from now on
            return self._give_up(err)
        drop_identity_ops(graph)
        return graph

    def _give_up(self, err: Exception) -> None:
        self._cache.untraceable = True
        name = type(self._model).__name__
        if name not in _warned_untraceable:
            _warned_untraceable.add(name)
            warnings.warn(
                f"trace=True could not trace {name}.forward under vmap ({type(err).__name__}: "
                f"{str(err).splitlines()[0] if str(err) else ''}); running it untraced (same numbers, "
                "slower). Pass trace=False to silence this", stacklevel=5,
            )
        return None


_warned_untraceable: set[str] = set()

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
    """What a trace depends on: dict keys and each tensor's shape, strides, dtype and device."""
    def describe(t: Tensor) -> tuple:
        return (tuple(t.shape), t.stride(), t.dtype, t.device)

    return tuple(
        tuple((k, describe(v)) for k, v in a.items()) if isinstance(a, dict) else describe(a)
        for a in args
    )


__all__ = ["MAX_TRACED_GRAPHS", "TRACE_AFTER", "BatchedTaskLoss", "drop_identity_ops", "task_loss"]
