"""The cache of the traced paths: recorded graphs by input signature, and what ``trace="auto"`` has seen.

One :class:`TraceCache` per learner holds the graphs of its batched task loss and of its row
recording (:func:`~metarec_ref.meta.sparse_embedding.touched_ids`), how often each signature not
yet traced was met, and whether the learner's forward failed to trace once. A copy of a learner
(``copy.deepcopy``, or a pickle sent to another process) starts with an empty cache and records
its own graphs when its shapes recur.

Learners whose models are built alike can share one cache (``MAML(..., trace_cache=cache)``):
every point of a grid search, every training seed. A graph reads every parameter from the fast
weights, so it serves any model of the same structure; :meth:`TraceCache.claim` refuses a model
of another structure (class, layer sizes, parameter shapes, plain attributes) or with buffers,
which a graph would hold as constants.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field

from torch import nn

MAX_TRACED_GRAPHS = 16  # input signatures kept per learner; each costs one trace
TRACE_AFTER = 3  # trace="auto" records a signature the third time it is met


@dataclass
class TraceCache:
    """Recorded graphs by input signature (least recently used first) and the sightings of ``trace="auto"``."""

    graphs: dict[tuple, Callable] = field(default_factory=dict)
    seen: dict[tuple, int] = field(default_factory=dict)  # signatures not yet traced -> sightings
    untraceable: bool = False  # the learner's forward failed to trace once: never try again
    structure: tuple | None = None  # of the models whose graphs these are, once claimed (see claim)

    def __len__(self) -> int:
        return len(self.graphs)

    def __deepcopy__(self, memo: dict) -> TraceCache:
        """An empty cache that remembers only whether the forward failed to trace.

        A recorded graph is a cache, not state: the copy re-records it on demand (same numbers).
        Deep-copying the graphs themselves would copy torch's internal pytree specs, which
        raises a FutureWarning in recent torch versions.
        """
        return TraceCache(untraceable=self.untraceable)

    def __getstate__(self) -> dict:
        """Pickled (e.g. to another process) as an empty cache, like :meth:`__deepcopy__`."""
        return {"graphs": {}, "seen": {}, "untraceable": self.untraceable, "structure": None}

    def claim(self, model: nn.Module, loss_fn: Callable) -> None:
        """Use this cache for ``model`` and ``loss_fn``: the first claim records their structure,
        later ones must match it (ValueError otherwise, as for a model with buffers)."""
        buffers = [name for name, _ in model.named_buffers()]
        if buffers:
            raise ValueError(f"{type(model).__name__} has buffers {buffers[:3]}, which a traced graph holds as "
                             "constants; give each learner its own trace cache (trace_cache=None)")
        structure = model_structure(model, loss_fn)
        if self.structure is None:
            self.structure = structure
        elif structure != self.structure:
            raise ValueError(f"this trace cache holds graphs of another model or loss than {type(model).__name__} "
                             f"with {getattr(loss_fn, '__name__', loss_fn)!r}; share a cache only between learners "
                             "whose models are built alike (trace_cache=None gives each its own)")

    def recurs(self, key: tuple) -> bool:
        """Count a sighting of ``key``; True once it was met ``TRACE_AFTER`` times."""
        self.seen[key] = self.seen.get(key, 0) + 1
        if len(self.seen) > 64 * MAX_TRACED_GRAPHS:  # forget one-off signatures
            for old in [k for k, n in self.seen.items() if n == 1]:
                del self.seen[old]
        return self.seen[key] >= TRACE_AFTER

    def get(self, key: tuple, *, touch: bool = True) -> Callable | None:
        """The graph recorded for ``key`` (None if none); ``touch`` marks it most recently used."""
        graph = self.graphs.get(key)
        if graph is not None and touch:
            self.graphs[key] = self.graphs.pop(key)
        return graph

    def put(self, key: tuple, graph: Callable, *, limit: int | None = None) -> None:
        """Keep ``graph`` for ``key``; beyond ``limit`` graphs, drop the least recently used one."""
        self.graphs[key] = graph
        if limit is not None and len(self.graphs) > limit:
            del self.graphs[next(iter(self.graphs))]


def model_structure(model: nn.Module, loss_fn: Callable) -> tuple:
    """What a traced graph of ``model`` and ``loss_fn`` depends on besides its input tensors: every
    submodule's class and plain attributes (sizes, flags, dataclass settings), every parameter's
    name, shape and dtype, and the loss function itself."""
    def plain(value) -> bool:
        return isinstance(value, (bool, int, float, str, bytes, type(None))) or (
            isinstance(value, tuple) and all(plain(v) for v in value))

    modules = tuple(
        (name, type(module).__module__, type(module).__qualname__, tuple(sorted(
            (key, repr(value)) for key, value in vars(module).items()
            if key != "training" and not key.startswith("_")
            and (plain(value) or (dataclasses.is_dataclass(value) and not isinstance(value, type))))))
        for name, module in model.named_modules())
    params = tuple((name, tuple(p.shape), p.dtype) for name, p in model.named_parameters())
    return modules, params, loss_fn


__all__ = ["MAX_TRACED_GRAPHS", "TRACE_AFTER", "TraceCache", "model_structure"]
