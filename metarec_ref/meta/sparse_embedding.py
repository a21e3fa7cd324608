"""Sparse row-wise fast weights for ``nn.Embedding`` / ``nn.EmbeddingBag``: which rows each task adapts.

Adapting an embedding table densely gives every task its own copy of the whole table, so the
cost of a meta-step grows with the catalogue. Yet a task's support set reads only a handful of
rows, and only those rows get an inner-loop gradient: every other row of the adapted table
equals the shared one. So per task we

1. record which rows each adapted table's lookups read on the support set (one forward
   without a graph, the ids the model itself computes, hashed crosses included);
2. gather those rows into a task-local table ``(rows, dim)`` (a differentiable gather, whose
   backward is a scatter-add into the shared table);
3. run the model with each table's lookup routed through
   :func:`~metarec_ref.meta.forward.lookup_rows`: an id among the task's rows reads the local
   table, any other id reads the shared table (see :func:`~metarec_ref.meta.forward.run_model`).

The losses, and hence the meta-gradients, are the very same functions of the shared
parameters as on the dense path; the per-task cost follows the rows a task touches, not the
catalogue. Padding rows (``padding_idx``) are never gathered: they read the shared table
with no gradient, as in ``nn.Embedding``. Unknown ids (code 0) are ordinary rows, as today.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping

import torch
from torch import Tensor, nn
from torch.func import vmap
from torch.fx.experimental.proxy_tensor import make_fx
from torch.nn import functional as F

from metarec_ref.batch import Features
from metarec_ref.meta.fast_weights import FastWeights, gather_rows
from metarec_ref.meta.forward import SHARED_LOCAL, SHARED_ROWS, module_maps, record_lookups
from metarec_ref.meta.trace_cache import TraceCache

_warned: set[str] = set()


ROW_WISE_MIN_ROWS = 1024  # smaller tables adapt densely: copying them costs less than gathering rows


def sparse_table_names(model: nn.Module, adapted: Mapping[str, Tensor], min_rows: int = ROW_WISE_MIN_ROWS) -> list[str]:
    """The adapted parameters that are embedding tables able to take sparse row-wise fast weights.

    Tables with fewer than ``min_rows`` rows and no padding row stay dense (same numbers, less
    overhead). A table with
    ``max_norm`` (renormalises the shared table in place) or ``scale_grad_by_freq`` stays dense,
    with a one-time warning.
    """
    tables, _ = module_maps(model)
    names = []
    for name in adapted:
        module = tables.get(name)
        # A padding row must learn nothing, which vmap's dense embedding backward ignores: row-wise always.
        if module is None or (module.weight.shape[0] < min_rows and module.padding_idx is None):
            continue
        if module.max_norm is not None or module.scale_grad_by_freq:
            if name not in _warned:
                _warned.add(name)
                warnings.warn(f"embedding {name!r} has max_norm or scale_grad_by_freq: it adapts densely "
                              "(sparse row-wise fast weights skip it)", stacklevel=3)
            continue
        names.append(name)
    return names


def shared_table_names(model: nn.Module, frozen: Mapping[str, Tensor], min_rows: int = ROW_WISE_MIN_ROWS) -> list[str]:
    """Embedding tables that are not adapted but get a meta-gradient, with at least ``min_rows`` rows.

    Each meta-step gathers the rows all its tasks read once (``SHARED_ROWS`` / ``SHARED_LOCAL``
    entries of the frozen state), so the table's meta-gradient is one scatter-add rather than one
    dense ``(rows, dim)`` embedding backward per lookup.
    """
    tables, _ = module_maps(model)
    return [name for name, module in tables.items()
            if name in frozen and frozen[name].requires_grad and module.weight.shape[0] >= min_rows
            and module.max_norm is None and not module.scale_grad_by_freq]


# --------------------------------------------------------------------------- rows per task


def touched_ids(model: nn.Module, params: Mapping[str, Tensor], names: list[str], x: Features,
                batched: bool, cache: TraceCache | None = None, trace: bool | str = False) -> dict[str, Tensor]:
    """Ids ``(tasks, n)`` each table in ``names`` reads when the model runs on ``x`` (leaves ``(tasks, k, ...)``).

    ``trace`` (batched path only, as for :class:`~metarec_ref.meta.tracing.BatchedTaskLoss`,
    with ``cache`` its cache): record the recording once per input signature, pruned to the
    ops that compute the ids, so replaying it skips the model's arithmetic.
    """
    with torch.no_grad():
        if batched:
            record = vmap(lambda st, xt: record_lookups(model, st, names, xt), in_dims=(None, 0), randomness="different")
            if not trace or cache is None or cache.untraceable:
                return record(params, x)
            key = ("rows", model.training, tuple(names), _shapes(params), _shapes(x))
            graph = cache.get(key, touch=False)
            if graph is None:
                if trace == "auto" and not cache.recurs(key):
                    return record(params, x)
                try:
                    graph = make_fx(record)(dict(params), x)
                except Exception:  # noqa: BLE001 - the task-loss trace warns about the same forward
                    return record(params, x)
                graph.graph.eliminate_dead_code()
                graph.recompile()
                cache.put(key, graph)
            return graph(dict(params), x)
        num_tasks = next(iter(x.values() if isinstance(x, dict) else [x])).shape[0]
        per_task = [
            record_lookups(model, params, names, {k: v[t] for k, v in x.items()} if isinstance(x, dict) else x[t])
            for t in range(num_tasks)
        ]
    width = max((ids[n].numel() for ids in per_task for n in names), default=0)
    return {n: torch.stack([F.pad(ids[n], (0, width - ids[n].numel()), value=-1) for ids in per_task]) for n in names}


def _shapes(x: Features | Mapping[str, Tensor]) -> tuple:
    leaves = sorted(x.items()) if isinstance(x, Mapping) else [("", x)]
    return tuple((k, tuple(v.shape), v.stride(), v.dtype, v.device) for k, v in leaves)


def unique_rows(ids: Tensor, num_rows: int, padding_idx: int | None) -> Tensor:
    """Sorted unique ids per task ``(tasks, R)``, padded with ``num_rows`` (a row that no id reads).

    Negative ids (recording padding) and ``padding_idx`` are left out. ``R`` is rounded up to a
    power of two so that a traced graph serves meta-batches of similar sizes.
    """
    sentinel = num_rows
    drop = ids < 0
    if padding_idx is not None:
        drop = drop | (ids == padding_idx)
    ordered = ids.masked_fill(drop, sentinel).sort(dim=1).values
    repeated = torch.zeros_like(ordered, dtype=torch.bool)
    repeated[:, 1:] = ordered[:, 1:] == ordered[:, :-1]
    ordered = ordered.masked_fill(repeated, sentinel).sort(dim=1).values
    count = int((ordered < sentinel).sum(1).max()) if ordered.numel() else 0
    width = 1 << max(count - 1, 0).bit_length()
    if width > ordered.shape[1]:
        ordered = F.pad(ordered, (0, width - ordered.shape[1]), value=sentinel)
    return ordered[:, :width].contiguous()


def sparse_start(
    model: nn.Module, state: FastWeights, xs: list[Features], batched: bool,
    cache: TraceCache | None = None, trace: bool | str = False, min_rows: int = ROW_WISE_MIN_ROWS,
) -> FastWeights:
    """Move the adapted embedding tables of ``state`` (not yet expanded) to task-local rows.

    ``xs``: every input the model will see with these fast weights and a gradient (support and
    query features, leaves ``(tasks, k, ...)``); the rows are those the model's lookups read on
    them. In the returned state, ``local`` holds, for each sparse table, the gathered local tables
    ``(tasks, R, dim)`` (the other entries untouched, no task dimension); ``frozen`` gains the
    shared tables; ``rows`` maps each sparse table to its sorted rows ``(tasks, R)``. Tables that
    are not adapted but take a meta-gradient (:func:`shared_table_names`) gain ``frozen`` entries
    ``name + SHARED_ROWS`` (the rows all tasks read, ``(R,)``) and ``name + SHARED_LOCAL`` (those
    rows, gathered once). No table either way: ``state`` unchanged. The model's lookups must
    depend on its inputs only (no random ids).
    ``cache``, ``trace``: a cache for a traced recording (see :func:`touched_ids`); ``min_rows``:
    see :func:`sparse_table_names`.
    """
    adapted, frozen = state.local, state.frozen
    names = sparse_table_names(model, adapted, min_rows)
    shared = shared_table_names(model, frozen, min_rows)
    if not names and not shared:
        return state
    tables, _ = module_maps(model)
    params = {**frozen, **{k: v.detach() for k, v in adapted.items()}}
    # Events are independent for the lookups: one recording over all inputs side by side.
    x = xs[0] if len(xs) == 1 else map_features_list(xs, lambda leaves: torch.cat(leaves, dim=1))
    ids = touched_ids(model, params, names + shared, x, batched, cache, trace)
    rows = {n: unique_rows(ids[n], adapted[n].shape[0], tables[n].padding_idx) for n in names}
    local = {n: gather_rows(adapted[n], rows[n]) for n in names}
    gathered = {}
    for n in shared:  # one set of rows for all tasks: the frozen table is the same for each
        every = unique_rows(ids[n].reshape(1, -1), frozen[n].shape[0], tables[n].padding_idx)[0]
        gathered.update({n + SHARED_ROWS: every, n + SHARED_LOCAL: gather_rows(frozen[n], every)})
    return FastWeights({**{k: v for k, v in adapted.items() if k not in rows}, **local},
                       {**frozen, **{n: adapted[n] for n in names}, **gathered}, rows)


def map_features_list(xs: list[Features], fn) -> Features:
    """Combine the same leaf of several feature dicts (or tensors) with ``fn(list of leaves)``."""
    if isinstance(xs[0], dict):
        return {k: fn([x[k] for x in xs]) for k in xs[0]}
    return fn(list(xs))


__all__ = [
    "ROW_WISE_MIN_ROWS",
    "shared_table_names",
    "sparse_start",
    "sparse_table_names",
    "touched_ids",
    "unique_rows",
]
