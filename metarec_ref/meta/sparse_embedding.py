"""Sparse row-wise fast weights for ``nn.Embedding`` / ``nn.EmbeddingBag``, and running a model on fast weights.

Adapting an embedding table densely gives every task its own copy of the whole table, so the
cost of a meta-step grows with the catalogue. Yet a task's support set reads only a handful of
rows, and only those rows get an inner-loop gradient: every other row of the adapted table
equals the shared one. So per task we

1. record which rows each adapted table's lookups read on the support set (one forward
   without a graph, the ids the model itself computes, hashed crosses included);
2. gather those rows into a task-local table ``(rows, dim)`` (a differentiable gather, whose
   backward is a scatter-add into the shared table);
3. run the model with each table's lookup routed through :func:`lookup_rows`: an id among the
   task's rows reads the local table, any other id reads the shared table.

The losses, and hence the meta-gradients, are the very same functions of the shared
parameters as on the dense path; the per-task cost follows the rows a task touches, not the
catalogue. Padding rows (``padding_idx``) are never gathered: they read the shared table
with no gradient, as in ``nn.Embedding``. Unknown ids (code 0) are ordinary rows, as today.

:func:`run_model` is the one entry point the inner loops use to call a module on a state dict.
It also sets the semantics of normalisation layers during meta-learning: BatchNorm in
training mode normalises with the current task's own batch statistics and neither reads nor
updates the running statistics (no statistics shared across tasks), on every path alike.
"""

from __future__ import annotations

import contextlib
import warnings
import weakref
from collections.abc import Iterator, Mapping

import torch
from torch import Tensor, nn
from torch.func import functional_call, vmap
from torch.fx.experimental.proxy_tensor import make_fx
from torch.nn import functional as F

from metarec_ref.batch import Features
from metarec_ref.meta.trace_cache import UNTRACEABLE_KEY, recurs

EMBEDDING_TYPES = (nn.Embedding, nn.EmbeddingBag)
_BN_BUFFERS = ("running_mean", "running_var", "num_batches_tracked")
_model_cache: weakref.WeakKeyDictionary[nn.Module, tuple] = weakref.WeakKeyDictionary()
_warned: set[str] = set()


def _module_maps(model: nn.Module) -> tuple[dict[str, nn.Module], list[tuple[str, nn.modules.batchnorm._BatchNorm]]]:
    """``(weight name -> embedding module, [(prefix, batch-norm module)])``, cached per model."""
    cached = _model_cache.get(model)
    if cached is None:
        tables, norms = {}, []
        for prefix, module in model.named_modules():
            dot = f"{prefix}." if prefix else ""
            if isinstance(module, EMBEDDING_TYPES):
                tables[f"{dot}weight"] = module
            elif isinstance(module, nn.modules.batchnorm._BatchNorm):
                norms.append((dot, module))
        cached = _model_cache[model] = (tables, norms)
    return cached


ROW_WISE_MIN_ROWS = 1024  # smaller tables adapt densely: copying them costs less than gathering rows


def sparse_table_names(model: nn.Module, adapted: Mapping[str, Tensor], min_rows: int = ROW_WISE_MIN_ROWS) -> list[str]:
    """The adapted parameters that are embedding tables able to take sparse row-wise fast weights.

    Tables with fewer than ``min_rows`` rows and no padding row stay dense (same numbers, less
    overhead). A table with
    ``max_norm`` (renormalises the shared table in place) or ``scale_grad_by_freq`` stays dense,
    with a one-time warning.
    """
    tables, _ = _module_maps(model)
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
    tables, _ = _module_maps(model)
    return [name for name, module in tables.items()
            if name in frozen and frozen[name].requires_grad and module.weight.shape[0] >= min_rows
            and module.max_norm is None and not module.scale_grad_by_freq]


SHARED_ROWS, SHARED_LOCAL = ":shared_rows", ":shared_local"  # suffixes of a frozen table's gathered rows


# --------------------------------------------------------------------------- lookups


def lookup_rows(ids: Tensor, shared: Tensor, rows: Tensor, local: Tensor, padding_idx: int | None,
                complete: bool = False) -> Tensor:
    """Embeddings of ``ids``: from ``local`` where the id is in the sorted ``rows``, else from ``shared``.

    ``complete``: ``rows`` holds every id looked up (they were recorded on these very inputs), so
    with no padding row every id reads ``local`` and the shared branch is skipped.

    The shared branch carries no gradient: during meta-training ``rows`` holds every id the
    support and query sets read (padding ids aside, which get no gradient anyway), so it only
    serves padding and the scoring of new events after adaptation. Leaving the shared table out
    of the graph is what keeps a meta-step's cost independent of the catalogue size.
    """
    # clone(), not contiguous(): under vmap only a copy lays out ids expanded across tasks (else torch warns).
    pos = torch.searchsorted(rows, ids.clone()).clamp(max=rows.shape[-1] - 1)
    if complete and padding_idx is None:
        return F.embedding(pos, local)
    hit = rows[pos] == ids
    return torch.where(hit.unsqueeze(-1), F.embedding(pos, local), F.embedding(ids, shared.detach(), padding_idx))


def _bag_reduce(vectors: Tensor, ids: Tensor, module: nn.EmbeddingBag, offsets: Tensor | None,
                weights: Tensor | None) -> Tensor:
    """Reduce per-id vectors into bags the way ``F.embedding_bag`` does (sum, mean or max)."""
    keep = torch.ones_like(ids, dtype=vectors.dtype) if module.padding_idx is None else (ids != module.padding_idx).to(vectors.dtype)
    scale = keep if weights is None else keep * weights
    if ids.dim() == 2:  # fixed-length bags (bags, length)
        count = keep.sum(-1, keepdim=True)
        if module.mode == "max":
            masked = torch.where(keep.unsqueeze(-1) > 0, vectors, torch.full_like(vectors, -torch.inf))
            return torch.where(count > 0, masked.amax(-2), torch.zeros_like(masked[..., 0, :]))
        total = (vectors * scale.unsqueeze(-1)).sum(-2)
        return total / count.clamp(min=1) if module.mode == "mean" else total
    n_bags = offsets.shape[-1] - (1 if module.include_last_offset else 0)
    bag = torch.searchsorted(offsets, torch.arange(ids.shape[-1], device=ids.device), right=True) - 1
    zeros = vectors.new_zeros(n_bags, vectors.shape[-1])
    count = keep.new_zeros(n_bags).index_add(0, bag, keep).unsqueeze(-1)
    if module.mode == "max":
        masked = torch.where(keep.unsqueeze(-1) > 0, vectors, torch.full_like(vectors, -torch.inf))
        top = zeros.scatter_reduce(0, bag.unsqueeze(-1).expand_as(masked), masked, "amax", include_self=False)
        return torch.where(count > 0, top, zeros)
    total = zeros.index_add(0, bag, vectors * scale.unsqueeze(-1))
    return total / count.clamp(min=1) if module.mode == "mean" else total


class _Routing:
    """What the routed lookups read during one call: recorded ids, or rows and local tables."""

    def __init__(self, rows: Mapping[str, Tensor] | None = None, local: Mapping[str, Tensor] | None = None,
                 complete: bool = False):
        self.rows = rows or {}
        self.local = local or {}
        self.complete = complete
        self.recorded: dict[str, list[Tensor]] | None = None if rows is not None else {}


def _routed_forward(module: nn.Module, name: str, routing: _Routing):
    is_bag = isinstance(module, nn.EmbeddingBag)

    def forward(ids: Tensor, offsets: Tensor | None = None, per_sample_weights: Tensor | None = None) -> Tensor:
        if routing.recorded is not None:
            routing.recorded.setdefault(name, []).append(ids.reshape(-1))
            plain = type(module).forward
            return plain(module, ids, offsets, per_sample_weights) if is_bag else plain(module, ids)
        if name not in routing.rows:
            return type(module).forward(module, ids, offsets, per_sample_weights) if is_bag else type(module).forward(module, ids)
        vectors = lookup_rows(ids, module.weight, routing.rows[name], routing.local[name], module.padding_idx,
                              routing.complete)
        return _bag_reduce(vectors, ids, module, offsets, per_sample_weights) if is_bag else vectors

    return forward


@contextlib.contextmanager
def _routed(model: nn.Module, names, routing: _Routing) -> Iterator[None]:
    """Route the lookups of the embedding tables ``names`` through ``routing`` (restored on exit)."""
    tables, _ = _module_maps(model)
    swapped = []
    try:
        for name in names:
            module = tables[name]
            module.forward = _routed_forward(module, name, routing)
            swapped.append(module)
        yield
    finally:
        for module in swapped:
            del module.forward


def _norm_state(model: nn.Module) -> dict[str, None]:
    """BatchNorm in training mode: batch statistics only, running statistics neither read nor updated."""
    _, norms = _module_maps(model)
    return {f"{dot}{b}": None for dot, module in norms if module.training for b in _BN_BUFFERS}


def run_model(model: nn.Module, frozen: Mapping[str, Tensor], adapted: Mapping[str, Tensor], x: Features,
              rows: Mapping[str, Tensor] | None = None, complete: bool = True) -> Tensor:
    """``model(x)`` on the state ``{**frozen, **adapted}``; tables in ``rows`` read their local rows.

    For a name in ``rows``, ``adapted[name]`` is the task-local table ``(len(rows[name]), dim)``
    and ``frozen[name]`` the shared table. A frozen table with ``SHARED_ROWS`` / ``SHARED_LOCAL``
    entries in ``frozen`` (see :func:`sparse_start`) reads the rows gathered once for all tasks.
    ``complete``: ``rows`` were recorded on ``x`` (or on inputs including it), so every id is
    among them; False when scoring new events.
    """
    norms = _norm_state(model)
    shared = {k[: -len(SHARED_ROWS)]: v for k, v in frozen.items() if k.endswith(SHARED_ROWS)}
    if not rows and not shared:
        return functional_call(model, {**frozen, **adapted, **norms}, (x,))
    rows = rows or {}
    state = {**{k: v for k, v in frozen.items() if not k.endswith((SHARED_ROWS, SHARED_LOCAL))},
             **{k: v for k, v in adapted.items() if k not in rows}, **norms}
    local = {**{k: frozen[k + SHARED_LOCAL] for k in shared}, **{k: adapted[k] for k in rows}}
    routing = _Routing({**shared, **rows}, local, complete)
    with _routed(model, list(routing.rows), routing):
        return functional_call(model, state, (x,))


# --------------------------------------------------------------------------- rows per task


def _record_ids(model: nn.Module, state: Mapping[str, Tensor], names: list[str], x: Features) -> dict[str, Tensor]:
    routing = _Routing()
    with _routed(model, names, routing):
        functional_call(model, {**state, **_norm_state(model)}, (x,))
    device = next(iter(state.values())).device
    empty = torch.zeros(0, dtype=torch.long, device=device)
    return {n: torch.cat(routing.recorded[n]).long() if n in routing.recorded else empty for n in names}


def touched_ids(model: nn.Module, state: Mapping[str, Tensor], names: list[str], x: Features,
                batched: bool, graphs: dict | None = None, trace: bool | str = False) -> dict[str, Tensor]:
    """Ids ``(tasks, n)`` each table in ``names`` reads when the model runs on ``x`` (leaves ``(tasks, k, ...)``).

    ``trace`` (batched path only, as for :class:`~metarec_ref.meta.tracing.BatchedTaskLoss`,
    with ``graphs`` its cache): record the recording once per input signature, pruned to the
    ops that compute the ids, so replaying it skips the model's arithmetic.
    """
    with torch.no_grad():
        if batched:
            record = vmap(lambda st, xt: _record_ids(model, st, names, xt), in_dims=(None, 0), randomness="different")
            if not trace or graphs is None or graphs.get(UNTRACEABLE_KEY):
                return record(state, x)
            key = ("rows", model.training, tuple(names), _shapes(state), _shapes(x))
            graph = graphs.get(key)
            if graph is None:
                if trace == "auto" and not recurs(graphs, key):
                    return record(state, x)
                try:
                    graph = make_fx(record)(dict(state), x)
                except Exception:  # noqa: BLE001 - the task-loss trace warns about the same forward
                    return record(state, x)
                graph.graph.eliminate_dead_code()
                graph.recompile()
                graphs[key] = graph
            return graph(dict(state), x)
        num_tasks = next(iter(x.values() if isinstance(x, dict) else [x])).shape[0]
        per_task = [
            _record_ids(model, state, names, {k: v[t] for k, v in x.items()} if isinstance(x, dict) else x[t])
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


def gather_rows(table: Tensor, rows: Tensor) -> Tensor:
    """The task-local tables ``(tasks, R, dim)``: a gather whose backward scatter-adds into ``table``."""
    return F.embedding(rows.clamp(max=table.shape[0] - 1), table)


def sparse_start(
    model: nn.Module, adapted: dict[str, Tensor], frozen: dict[str, Tensor], xs: list[Features], batched: bool,
    graphs: dict | None = None, trace: bool | str = False, min_rows: int = ROW_WISE_MIN_ROWS,
) -> tuple[dict[str, Tensor], dict[str, Tensor], dict[str, Tensor]]:
    """Move the adapted embedding tables to task-local rows: ``(adapted, frozen, rows)``.

    ``xs``: every input the model will see with these fast weights and a gradient (support and
    query features, leaves ``(tasks, k, ...)``); the rows are those the model's lookups read on
    them. ``adapted`` then holds, for each sparse table, the gathered local tables ``(tasks, R, dim)``
    (the other entries untouched, no task dimension); ``frozen`` gains the shared tables; ``rows``
    maps each sparse table to its sorted rows ``(tasks, R)``. Tables that are not adapted but take
    a meta-gradient (:func:`shared_table_names`) gain ``frozen`` entries ``name + SHARED_ROWS``
    (the rows all tasks read, ``(R,)``) and ``name + SHARED_LOCAL`` (those rows, gathered once).
    No table either way: inputs unchanged and ``rows == {}``. The model's lookups must depend on
    its inputs only (no random ids).
    ``graphs``, ``trace``: a cache for a traced recording (see :func:`touched_ids`); ``min_rows``:
    see :func:`sparse_table_names`.
    """
    names = sparse_table_names(model, adapted, min_rows)
    shared = shared_table_names(model, frozen, min_rows)
    if not names and not shared:
        return adapted, frozen, {}
    tables, _ = _module_maps(model)
    state = {**frozen, **{k: v.detach() for k, v in adapted.items()}}
    # Events are independent for the lookups: one recording over all inputs side by side.
    x = xs[0] if len(xs) == 1 else map_features_list(xs, lambda leaves: torch.cat(leaves, dim=1))
    ids = touched_ids(model, state, names + shared, x, batched, graphs, trace)
    rows = {n: unique_rows(ids[n], adapted[n].shape[0], tables[n].padding_idx) for n in names}
    local = {n: gather_rows(adapted[n], rows[n]) for n in names}
    gathered = {}
    for n in shared:  # one set of rows for all tasks: the frozen table is the same for each
        every = unique_rows(ids[n].reshape(1, -1), frozen[n].shape[0], tables[n].padding_idx)[0]
        gathered.update({n + SHARED_ROWS: every, n + SHARED_LOCAL: gather_rows(frozen[n], every)})
    return ({**{k: v for k, v in adapted.items() if k not in rows}, **local},
            {**frozen, **{n: adapted[n] for n in names}, **gathered}, rows)


def map_features_list(xs: list[Features], fn) -> Features:
    """Combine the same leaf of several feature dicts (or tensors) with ``fn(list of leaves)``."""
    if isinstance(xs[0], dict):
        return {k: fn([x[k] for x in xs]) for k in xs[0]}
    return fn(list(xs))


def dense_tables(local: Tensor, shared: Tensor, rows: Tensor) -> Tensor:
    """Materialise per-task full tables ``(tasks, N, dim)``: the shared table with each task's rows replaced."""
    tasks = local.shape[0]
    start = gather_rows(shared, rows)
    delta = shared.new_zeros(tasks, shared.shape[0] + 1, shared.shape[1])
    delta = delta.scatter_add(1, rows.unsqueeze(-1).expand_as(local), local - start)
    return shared.unsqueeze(0) + delta[:, :-1]


def mean_table_change(local: Tensor, shared: Tensor, rows: Tensor) -> Tensor:
    """``mean_t(dense_tables(...)[t]) - shared`` ``(N, dim)``, computed from the rows alone.

    Rows no task read change by zero; the cost is the tasks' rows plus one table, not tasks x table.
    """
    change = shared.new_zeros(shared.shape[0] + 1, shared.shape[1])
    change.index_add_(0, rows.reshape(-1), (local - gather_rows(shared, rows)).reshape(-1, shared.shape[1]))
    return change[:-1] / local.shape[0]


__all__ = [
    "EMBEDDING_TYPES",
    "ROW_WISE_MIN_ROWS",
    "dense_tables",
    "gather_rows",
    "lookup_rows",
    "mean_table_change",
    "run_model",
    "shared_table_names",
    "sparse_start",
    "sparse_table_names",
    "touched_ids",
    "unique_rows",
]
