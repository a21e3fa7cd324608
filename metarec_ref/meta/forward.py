"""Running a module on fast weights: ``functional_call``, the normalisation rule, routed table lookups.

:func:`run_model` is the one entry point every inner loop, the batched task loss and scoring use
to call a module on a :class:`~metarec_ref.meta.fast_weights.FastWeights` state. It sets two rules
for every path alike:

- normalisation: BatchNorm in training mode normalises with the current task's own batch
  statistics and neither reads nor updates the running statistics (no statistics shared across
  tasks);
- row-wise embedding tables: a table in ``state.rows`` reads its task-local rows, any other id
  the shared table (:func:`lookup_rows`); see :mod:`metarec_ref.meta.sparse_embedding`.

The lookups are routed by swapping each table's ``forward`` for the duration of one call
(restored on exit); the same routing, in recording mode, tells which ids a model reads
(:func:`record_lookups`).
"""

from __future__ import annotations

import contextlib
import weakref
from collections.abc import Iterator, Mapping

import torch
from torch import Tensor, nn
from torch.func import functional_call, vmap
from torch.nn import functional as F

from metarec_ref.batch import Features
from metarec_ref.meta.fast_weights import FastWeights

EMBEDDING_TYPES = (nn.Embedding, nn.EmbeddingBag)
_BN_BUFFERS = ("running_mean", "running_var", "num_batches_tracked")
_model_cache: weakref.WeakKeyDictionary[nn.Module, tuple] = weakref.WeakKeyDictionary()
# Suffixes of the frozen entries of a table that is not adapted but gathered once per meta-step.
SHARED_ROWS, SHARED_LOCAL = ":shared_rows", ":shared_local"


def module_maps(model: nn.Module) -> tuple[dict[str, nn.Module], list[tuple[str, nn.modules.batchnorm._BatchNorm]]]:
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


def _norm_state(model: nn.Module) -> dict[str, None]:
    """BatchNorm in training mode: batch statistics only, running statistics neither read nor updated."""
    _, norms = module_maps(model)
    return {f"{dot}{b}": None for dot, module in norms if module.training for b in _BN_BUFFERS}


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
    tables, _ = module_maps(model)
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


# --------------------------------------------------------------------------- the call


def run_model(model: nn.Module, state: FastWeights, x: Features, complete: bool = True) -> Tensor:
    """``model(x)`` on the parameters ``{**state.frozen, **state.local}``; tables in ``state.rows`` read their rows.

    For a name in ``state.rows``, ``state.local[name]`` is the task-local table
    ``(len(rows[name]), dim)`` and ``state.frozen[name]`` the shared table. A frozen table with
    ``SHARED_ROWS`` / ``SHARED_LOCAL`` entries in ``state.frozen`` (see
    :func:`~metarec_ref.meta.sparse_embedding.sparse_start`) reads the rows gathered once for all
    tasks. ``complete``: the rows were recorded on ``x`` (or on inputs including it), so every id is
    among them; False when scoring new events.
    """
    frozen, adapted, rows = state.frozen, state.local, state.rows
    norms = _norm_state(model)
    shared = {k[: -len(SHARED_ROWS)]: v for k, v in frozen.items() if k.endswith(SHARED_ROWS)}
    if not rows and not shared:
        return functional_call(model, {**frozen, **adapted, **norms}, (x,))
    params = {**{k: v for k, v in frozen.items() if not k.endswith((SHARED_ROWS, SHARED_LOCAL))},
              **{k: v for k, v in adapted.items() if k not in rows}, **norms}
    local = {**{k: frozen[k + SHARED_LOCAL] for k in shared}, **{k: adapted[k] for k in rows}}
    routing = _Routing({**shared, **rows}, local, complete)
    with _routed(model, list(routing.rows), routing):
        return functional_call(model, params, (x,))


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
        return run_model(model, FastWeights(adapted, state.frozen, rows), xt, complete=False)

    return vmap(one_task, randomness="different")(state.local, state.rows, x)


def record_lookups(model: nn.Module, params: Mapping[str, Tensor], names: list[str], x: Features) -> dict[str, Tensor]:
    """The ids ``(n,)`` each embedding table in ``names`` reads when ``model`` runs on ``x`` with ``params``."""
    routing = _Routing()
    with _routed(model, names, routing):
        functional_call(model, {**params, **_norm_state(model)}, (x,))
    device = next(iter(params.values())).device
    empty = torch.zeros(0, dtype=torch.long, device=device)
    return {n: torch.cat(routing.recorded[n]).long() if n in routing.recorded else empty for n in names}


__all__ = [
    "EMBEDDING_TYPES",
    "SHARED_LOCAL",
    "SHARED_ROWS",
    "lookup_rows",
    "module_maps",
    "record_lookups",
    "run_model",
    "score_fast_weights",
]
