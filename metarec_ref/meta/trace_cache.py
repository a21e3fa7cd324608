"""Bookkeeping shared by the traced paths: which input signatures recur, which forwards failed to trace."""

from __future__ import annotations

MAX_TRACED_GRAPHS = 16  # input signatures kept per learner; each costs one trace
TRACE_AFTER = 3  # trace="auto" records a signature the third time it is met
UNTRACEABLE_KEY = "untraceable"  # cache key: this learner's forward failed to trace once
SEEN_KEY = "seen"  # cache key: how often each signature not yet traced was met (trace="auto")


def recurs(graphs: dict, key: tuple) -> bool:
    """Count a sighting of ``key`` in the cache ``graphs``; True once it was met ``TRACE_AFTER`` times."""
    seen = graphs.setdefault(SEEN_KEY, {})
    seen[key] = seen.get(key, 0) + 1
    if len(seen) > 64 * MAX_TRACED_GRAPHS:  # forget one-off signatures
        for old in [k for k, n in seen.items() if n == 1]:
            del seen[old]
    return seen[key] >= TRACE_AFTER


__all__ = ["MAX_TRACED_GRAPHS", "SEEN_KEY", "TRACE_AFTER", "UNTRACEABLE_KEY", "recurs"]
