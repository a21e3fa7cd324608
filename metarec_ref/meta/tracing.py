"""The batched task loss, and recording it once as a graph of plain aten ops (``trace=True``).

:class:`BatchedTaskLoss` gives the per-task losses of a meta-batch under ``vmap``. With
``trace=True`` it records that vmapped forward once per input signature with ``make_fx`` and
replays the graph: the same numbers with fewer Python calls and autograd nodes per step, for
modules whose ``forward`` depends only on its tensors. :func:`drop_identity_ops` prunes the
no-op reshapes and ``x * 1`` that ``vmap`` leaves in such a graph.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import torch
from torch import Tensor, nn
from torch.func import vmap
from torch.fx.experimental.proxy_tensor import make_fx

from metarec_ref.batch import Features
from metarec_ref.meta.losses import LossFn
from metarec_ref.meta.sparse_embedding import run_model
from metarec_ref.meta.trace_cache import (
    MAX_TRACED_GRAPHS,
    SEEN_KEY,
    TRACE_AFTER,
    UNTRACEABLE_KEY,
)
from metarec_ref.meta.trace_cache import recurs as _recurs


class BatchedTaskLoss:
    """Per-task losses of a meta-batch under ``vmap``: ``(adapted (tasks, ...), x, y, mask) -> (tasks,)``.

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
    that says why. ``graphs`` is the cache to keep across calls. ``rows``: the rows
    ``(tasks, R)`` of embedding tables adapted row-wise (see
    :mod:`metarec_ref.meta.sparse_embedding`). Random ops (dropout) draw independently per
    task (``vmap(randomness="different")``).
    """

    def __init__(
        self, model: nn.Module, loss_fn: LossFn, frozen: dict[str, Tensor],
        trace: bool | str = False, graphs: dict | None = None, rows: dict[str, Tensor] | None = None,
    ):
        def one_task(
            adapted: dict[str, Tensor], frozen: dict[str, Tensor], x: Features, y: Tensor, mask: Tensor
        ) -> Tensor:
            return loss_fn(run_model(model, frozen, adapted, x), y, mask)

        def one_task_rows(
            adapted: dict[str, Tensor], rows: dict[str, Tensor], frozen: dict[str, Tensor],
            x: Features, y: Tensor, mask: Tensor,
        ) -> Tensor:
            return loss_fn(run_model(model, frozen, adapted, x, rows), y, mask)

        # Frozen tensors are shared by every task (in_dims=None): never copied per task.
        if rows:
            self._losses = vmap(one_task_rows, in_dims=(0, 0, None, 0, 0, 0), randomness="different")
        else:
            self._losses = vmap(one_task, in_dims=(0, None, 0, 0, 0), randomness="different")
        self._model = model
        self._frozen = frozen
        self._rows = rows or {}
        self._trace = trace
        self._graphs = graphs if graphs is not None else {}

    def __call__(self, adapted: dict[str, Tensor], x: Features, y: Tensor, mask: Tensor) -> Tensor:
        args = (adapted, self._rows, self._frozen, x, y, mask) if self._rows else (adapted, self._frozen, x, y, mask)
        if not self._trace or self._graphs.get(UNTRACEABLE_KEY):
            return self._losses(*args)
        key = (self._model.training, _signature(args))
        graph = self._graphs.get(key)
        if graph is None:
            if self._trace == "auto" and not _recurs(self._graphs, key):
                return self._losses(*args)
            graph = self._record(args)
            if graph is None:
                return self._untraced(args)
            self._graphs[key] = graph
            traced = [k for k in self._graphs if k not in (UNTRACEABLE_KEY, SEEN_KEY)]
            if len(traced) > MAX_TRACED_GRAPHS:  # drop the least recently used signature
                del self._graphs[traced[0]]
        else:  # most recently used last
            self._graphs[key] = self._graphs.pop(key)
        return graph(*args)

    @property
    def traces(self) -> bool:
        """True when this loss records graphs (``trace=True`` or ``"auto"``)."""
        return bool(self._trace)

    def _untraced(self, args: tuple) -> Tensor:
        try:
            return self._losses(*args)
        except Exception as err:
            raise RuntimeError(
                f"{type(self._model).__name__}.forward fails under vmap, traced or not ({type(err).__name__}: "
                f"{err}); use trace=False and batched=False (the looped path runs any forward)"
            ) from err

    def _record(self, args: tuple) -> Callable[..., Tensor] | None:
        detached = tuple(_map_tensors(a, Tensor.detach) for a in args)
        try:
            with torch.no_grad():
                graph = make_fx(self._losses)(*detached)
        except Exception as err:  # noqa: BLE001 - any failure to trace: run untraced from now on
            self._graphs[UNTRACEABLE_KEY] = True
            name = type(self._model).__name__
            if name not in _warned_untraceable:
                _warned_untraceable.add(name)
                warnings.warn(
                    f"trace=True could not trace {name}.forward under vmap ({type(err).__name__}: "
                    f"{str(err).splitlines()[0] if str(err) else ''}); running it untraced (same numbers, "
                    "slower). Pass trace=False to silence this", stacklevel=4,
                )
            return None
        drop_identity_ops(graph)
        return graph


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


__all__ = ["MAX_TRACED_GRAPHS", "TRACE_AFTER", "BatchedTaskLoss", "drop_identity_ops"]
