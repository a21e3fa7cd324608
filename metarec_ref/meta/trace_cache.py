"""The cache of the traced paths: recorded graphs by input signature, and what ``trace="auto"`` has seen.

One :class:`TraceCache` per learner holds the graphs of its batched task loss and of its row
recording (:func:`~metarec_ref.meta.sparse_embedding.touched_ids`), how often each signature not
yet traced was met, and whether the learner's forward failed to trace once. A copy of a learner
(``copy.deepcopy``) starts with an empty cache and records its own graphs when its shapes recur.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

MAX_TRACED_GRAPHS = 16  # input signatures kept per learner; each costs one trace
TRACE_AFTER = 3  # trace="auto" records a signature the third time it is met


@dataclass
class TraceCache:
    """Recorded graphs by input signature (least recently used first) and the sightings of ``trace="auto"``."""

    graphs: dict[tuple, Callable] = field(default_factory=dict)
    seen: dict[tuple, int] = field(default_factory=dict)  # signatures not yet traced -> sightings
    untraceable: bool = False  # the learner's forward failed to trace once: never try again

    def __len__(self) -> int:
        return len(self.graphs)

    def __deepcopy__(self, memo: dict) -> TraceCache:
        """An empty cache that remembers only whether the forward failed to trace.

        A recorded graph is a cache, not state: the copy re-records it on demand (same numbers).
        Deep-copying the graphs themselves would copy torch's internal pytree specs, which
        raises a FutureWarning in recent torch versions.
        """
        return TraceCache(untraceable=self.untraceable)

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


__all__ = ["MAX_TRACED_GRAPHS", "TRACE_AFTER", "TraceCache"]
