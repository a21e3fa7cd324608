"""EASE (Steck, 2019): a closed-form item-item model, ``B = I - P diag(1 / diag(P))`` with
``P = (G + lambda I)^-1`` and zero diagonal; a candidate scores the sum of the support items' rows.

The inverse is dense, so memory grows with the square of the catalogue: above ``max_items`` items,
fit it on the ``top_items`` most popular ones (:func:`ease_fits`, :func:`ease_memory_gb`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from metarec_ref.data.encoders import Encoders
from metarec_ref.eval.classical import EventsLike, ItemItemMethod, sparse_interactions
from metarec_ref.eval.item_similarity import Interactions
from metarec_ref.runtime import machine_memory_gb

# EASE inverts a dense (n, n) matrix: float32 above EASE_FLOAT64_ITEMS (float64 below), refused
# above EASE_MAX_ITEMS (two float32 copies at 15,000 items: 1.8 GB).
EASE_MAX_ITEMS = 15_000
EASE_FLOAT64_ITEMS = 4_096


def ease_memory_gb(n_items: int) -> float:
    """Peak memory of EASE's dense inverse over ``n_items`` items (two ``(n, n)`` matrices), in GB."""
    bytes_per_cell = 8 if n_items <= EASE_FLOAT64_ITEMS else 4
    return 2 * n_items ** 2 * bytes_per_cell / 1e9


def ease_fits(n_items: int, max_items: int = EASE_MAX_ITEMS) -> bool:
    """Whether EASE can be fitted on all ``n_items`` items (else use ``top_items`` or skip it)."""
    return n_items <= max_items


def _ease_too_big(n_items: int, max_items: int) -> str:
    return (
        f"EASE inverts a dense {n_items:,} x {n_items:,} matrix: about {ease_memory_gb(n_items):.1f} GB for "
        f"this catalogue of {n_items:,} items, above max_items={max_items:,} "
        f"({ease_memory_gb(max_items):.1f} GB). Fit it on the most popular items with "
        f"top_items={max_items:,} or fewer, or skip EASE (ease_fits(n_items) tells in advance)"
    )


class EASE(ItemItemMethod):
    """EASE: closed-form linear item-item model with L2 regularisation ``lam``; zero diagonal.
    Optionally fitted on the ``top_items`` most popular items only (others score the tie-break)."""

    @staticmethod
    def weights_from(gram: Tensor, lam: float = 100.0, dtype: torch.dtype | None = None,
                     in_place: bool = False) -> Tensor:
        """``B = I - P diag(1 / diag(P))`` with ``P = (G + lam I)^-1``, exact via Cholesky.

        dtype: float64 up to ``EASE_FLOAT64_ITEMS`` items, float32 above (halves the memory);
        in_place: overwrite ``gram`` (of that dtype) to keep only two ``(n, n)`` matrices alive.
        """
        if lam <= 0:
            raise ValueError(f"lam must be > 0 (it makes G + lam I invertible), got {lam}")
        n = gram.shape[0]
        dtype = dtype or (torch.float64 if n <= EASE_FLOAT64_ITEMS else torch.float32)
        g = gram if in_place and gram.dtype == dtype else gram.to(dtype, copy=True)
        g.diagonal().add_(lam)
        info = torch.empty((), dtype=torch.int32)
        torch.linalg.cholesky_ex(g, out=(g, info))  # G + lam I is symmetric positive definite
        if int(info):
            raise ValueError(f"G + lam I is not positive definite in {dtype} (lam={lam}); use a larger lam")
        p = torch.cholesky_inverse(g)
        del g
        p.div_(-p.diagonal().clone())  # column j divided by -P[j, j]
        p.fill_diagonal_(0.0)
        return p

    @classmethod
    def from_cooccurrence(cls, gram: Tensor, lam: float = 100.0, tie_break: float = 1e-6,
                          max_items: int = EASE_MAX_ITEMS) -> "EASE":
        if not ease_fits(gram.shape[0], max_items):
            raise ValueError(_ease_too_big(gram.shape[0], max_items))
        return cls(cls.weights_from(gram, lam), gram.diagonal(), tie_break)

    @classmethod
    def fit(cls, events: EventsLike, encoders: Encoders | None = None, *, lam: float = 100.0,
            n_items: int | None = None, tie_break: float = 1e-6, top_items: int | None = None,
            max_items: int = EASE_MAX_ITEMS) -> "EASE":
        """top_items: fit on the most popular items only (by users; ties: lower code)."""
        return cls.fit_grid(events, encoders, lambdas=[lam], n_items=n_items, tie_break=tie_break,
                            top_items=top_items, max_items=max_items)[lam]

    @classmethod
    def fit_grid(cls, events: EventsLike, encoders: Encoders | None = None, *, lambdas: Sequence[float],
                 n_items: int | None = None, tie_break: float = 1e-6, top_items: int | None = None,
                 max_items: int = EASE_MAX_ITEMS) -> dict[float, "EASE"]:
        """``{lam: EASE}`` for a tuning grid; the Gram matrix is rebuilt per value so that only two
        dense matrices are alive at a time."""
        return cls.grid_from_interactions(sparse_interactions(events, encoders, n_items), lambdas,
                                          tie_break=tie_break, top_items=top_items, max_items=max_items)

    @classmethod
    def grid_from_interactions(cls, inter: Interactions, lambdas: Sequence[float], *, tie_break: float = 1e-6,
                               top_items: int | None = None, max_items: int = EASE_MAX_ITEMS) -> dict[float, "EASE"]:
        """As :meth:`fit_grid`, from :func:`~metarec_ref.eval.classical.sparse_interactions` computed once
        (a grid extended value by value reads the events once)."""
        n = inter.n_items
        if top_items is None and not ease_fits(n, max_items):
            raise ValueError(_ease_too_big(n, max_items))
        if top_items is not None and not 1 <= top_items <= max_items:
            raise ValueError(f"top_items must lie in 1..max_items={max_items:,}, got {top_items}")
        counts = inter.item_counts
        items = None
        if top_items is not None and top_items < n:
            items = np.sort(np.argsort(-counts, kind="stable")[:top_items])
            inter = inter.restrict(items)
        for lam in lambdas:  # refuse bad values before any expensive work
            if lam <= 0:
                raise ValueError(f"lam must be > 0 (it makes G + lam I invertible), got {lam}")
        popularity = torch.as_tensor(counts, dtype=torch.float64)
        subset = None if items is None else torch.as_tensor(items)
        return {lam: cls(cls.weights_from(_dense_gram(inter), lam, in_place=True), popularity, tie_break,
                         items=subset, n_items=n) for lam in lambdas}


# EASE's default memory budget: this share of the machine's memory, at most EASE_DEFAULT_MAX_GB.
EASE_MEMORY_SHARE = 1 / 128
EASE_DEFAULT_MAX_GB = 0.5


def default_ease_memory_gb() -> float:
    """EASE's memory budget when none is given: a 128th of the machine's memory, at most 0.5 GB
    (0.19 GB, about 4,900 items, on a 24 GB machine).

    The budget bounds the time too, which grows with the cube of the items kept: at 5,000 items a
    regularisation value takes about 2 seconds on two cores and 8 on one pinned thread; at 10,000,
    about 10 and 60.
    """
    return round(min(machine_memory_gb() * EASE_MEMORY_SHARE, EASE_DEFAULT_MAX_GB), 2)


def ease_items_within(memory_gb: float) -> int:
    """The largest catalogue whose EASE inverse (:func:`ease_memory_gb`) fits in ``memory_gb``."""
    if not memory_gb > 0:
        raise ValueError(f"memory_gb must be > 0, got {memory_gb!r}")
    in_float64 = min(EASE_FLOAT64_ITEMS, math.isqrt(int(memory_gb * 1e9 / 16)))  # two (n, n) of 8 bytes
    in_float32 = math.isqrt(int(memory_gb * 1e9 / 8))  # of 4 bytes, above EASE_FLOAT64_ITEMS
    n = in_float32 if in_float32 > EASE_FLOAT64_ITEMS else in_float64
    while n > 1 and ease_memory_gb(n) > memory_gb:
        n -= 1
    return n


def _dense_gram(inter: Interactions) -> Tensor:
    """``G`` as a dense matrix in EASE's working dtype, filled block by block."""
    n = inter.n_items
    gram = torch.zeros(n, n, dtype=torch.float64 if n <= EASE_FLOAT64_ITEMS else torch.float32)
    for start, stop in inter.row_blocks():
        gram[start:stop] = inter.gram_rows(start, stop).to_dense()
    return gram


__all__ = [
    "EASE",
    "EASE_DEFAULT_MAX_GB",
    "EASE_FLOAT64_ITEMS",
    "EASE_MAX_ITEMS",
    "EASE_MEMORY_SHARE",
    "default_ease_memory_gb",
    "ease_fits",
    "ease_items_within",
    "ease_memory_gb",
]
