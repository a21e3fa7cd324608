"""The batched task loss, and recording it once as a graph of plain aten ops (``trace=True``).

:class:`BatchedTaskLoss` gives the per-task losses of a meta-batch under ``vmap``. With
``trace=True`` it records that vmapped forward once per input signature with ``make_fx`` and
replays the graph: the same numbers with fewer Python calls and autograd nodes per step, for
modules whose ``forward`` depends only on its tensors. :func:`drop_identity_ops` prunes the
no-op reshapes and ``x * 1`` that ``vmap`` leaves in such a graph.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn
from torch.func import functional_call, vmap
from torch.fx.experimental.proxy_tensor import make_fx

from metarec_ref.batch import Features
from metarec_ref.meta.losses import LossFn


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


__all__ = ["BatchedTaskLoss", "MAX_TRACED_GRAPHS", "drop_identity_ops"]
