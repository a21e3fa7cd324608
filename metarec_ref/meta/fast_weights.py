"""Fast weights: the state an inner loop adapts, as one object.

:class:`FastWeights` holds what every inner-loop function passes around: the adapted parameters
(``local``), the shared tensors read as they are (``frozen``: every other parameter and every
buffer) and, for embedding tables adapted row by row, the rows each task adapts (``rows``). Nothing
here mutates a module: parameters live in plain dicts ``name -> Tensor`` that
:func:`~metarec_ref.meta.forward.run_model` passes to ``torch.func.functional_call``, and a step
returns a *new* state.

A row-wise table (see :mod:`metarec_ref.meta.sparse_embedding`) keeps its task-local rows
``(tasks, R, dim)`` in ``local``, its sorted row ids ``(tasks, R)`` in ``rows`` and the shared
table in ``frozen``; :func:`gather_rows`, :func:`dense_tables` and :func:`mean_table_change` move
between the two forms.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Union

import torch
from torch import Tensor, nn
from torch.nn import functional as F

# What adapts in the inner loop: "all", "head", "dense", or a predicate on parameter names.
ParamFilter = Union[str, Callable[[str], bool]]
# One inner learning rate for all parameters, or one tensor per adapted parameter (Meta-SGD).
InnerLR = Union[float, Mapping[str, Tensor]]


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


@dataclass(frozen=True)
class FastWeights:
    """Adapted parameters, the shared frozen tensors, and the rows of row-wise tables.

    ``local``: the adapted parameters, with a leading task dimension once expanded (or adapted);
    ``frozen``: every other tensor, shared by all tasks; ``rows``: each embedding table adapted
    row-wise -> its sorted rows ``(tasks, R)`` (``local`` then holds that table's task-local rows
    ``(tasks, R, dim)`` and ``frozen`` the shared table). :attr:`adapted` gives every adapted
    parameter as a full ``(tasks, *shape)`` tensor (materialised on first use for row-wise
    tables); scoring reads ``local`` and never materialises.
    """

    local: dict[str, Tensor]
    frozen: dict[str, Tensor]
    rows: dict[str, Tensor] = field(default_factory=dict)

    @classmethod
    def of(cls, model: nn.Module, adapt: ParamFilter = "all", *, detach: bool = False) -> FastWeights:
        """The starting state of ``model``: its parameters picked by ``adapt`` (see :func:`select_params`).

        ``detach``: start from detached copies (no graph to the model: evaluation, Reptile).
        """
        adapted, frozen = select_params(model, adapt)
        if detach:
            adapted = {k: p.detach() for k, p in adapted.items()}
        return cls(adapted, frozen)

    @property
    def adapted(self) -> dict[str, Tensor]:
        """name -> ``(tasks, *shape)``, full tables included."""
        return {k: dense_tables(v, self.frozen[k], self.rows[k]) if k in self.rows else v
                for k, v in self.local.items()}

    @property
    def num_tasks(self) -> int:
        return int(next(iter(self.local.values())).shape[0])

    def with_local(self, local: dict[str, Tensor]) -> FastWeights:
        """The same frozen tensors and rows around new adapted parameters."""
        return replace(self, local=local)

    def detach(self) -> FastWeights:
        return self.with_local({k: v.detach() for k, v in self.local.items()})

    def expand(self, num_tasks: int) -> FastWeights:
        """One stride-0 slice per task ``(tasks, *shape)`` of each adapted parameter (no copy).

        Row-wise tables already carry their task dimension and are kept as they are.
        """
        return self.with_local({k: v if k in self.rows else v.unsqueeze(0).expand(num_tasks, *v.shape)
                                for k, v in self.local.items()})

    def for_task(self, t: int) -> FastWeights:
        """Task ``t`` of a state not yet expanded: its rows of row-wise tables, the rest shared."""
        return FastWeights({k: v[t] if k in self.rows else v for k, v in self.local.items()}, self.frozen,
                           {k: r[t] for k, r in self.rows.items()})

    @classmethod
    def stack(cls, tasks: list[FastWeights], rows: dict[str, Tensor]) -> FastWeights:
        """One state ``(tasks, ...)`` from per-task states adapted on their own (``rows``: all tasks')."""
        local = {k: torch.stack([state.local[k] for state in tasks]) for k in tasks[0].local}
        return cls(local, tasks[0].frozen, rows)


# --------------------------------------------------------------------------- row-wise tables


def gather_rows(table: Tensor, rows: Tensor) -> Tensor:
    """The task-local tables ``(tasks, R, dim)``: a gather whose backward scatter-adds into ``table``."""
    return F.embedding(rows.clamp(max=table.shape[0] - 1), table)


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
    "FastWeights",
    "InnerLR",
    "ParamFilter",
    "dense_tables",
    "gather_rows",
    "mean_table_change",
    "select_params",
]
