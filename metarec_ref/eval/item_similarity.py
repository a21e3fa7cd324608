"""Item-item similarity at catalogue scale: the binary user x item matrix kept sparse, its Gram
matrix ``G = X^T X`` computed in row blocks, and only the top neighbours of each item kept.

A dense ``(n_items, n_items)`` matrix is never built: at 60,000 items one would take 14-29 GB.
Each block of rows of ``G`` is counted from the pairs (item, item of one of its users); the cosine similarities of
its stored entries are computed, the ``neighbors`` largest of each row kept, and the block
dropped. The result is a sparse CSR matrix with at most ``n_items * neighbors`` entries. Blocks run
in as many worker threads as torch has (one in the pinned numerics) and are gathered in block
order, so the result does not depend on the number of threads.

Ties at the cut are broken towards the lower item code, so the kept set is deterministic.
"""

from __future__ import annotations

import warnings
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial

import numpy as np
import torch
from torch import Tensor

from metarec_ref.batch import UNKNOWN

# Upper bound on the stored entries of one block of Gram rows (a few hundred MB at most).
BLOCK_ENTRIES = 2_000_000
_COL_BITS = 31  # item codes below 2^31; positive float32 bit patterns fit in 31 bits too
_SIM_BITS_MAX = (1 << _COL_BITS) - 1
_BIN_SHIFT = 19  # similarity histogram bins: the float's exponent and 4 bits of its mantissa
_N_BINS = 1 << (31 - _BIN_SHIFT)
_HISTOGRAM_ROWS = 1024  # long rows histogrammed at once (rows x bins counts)


def _csr(crow: np.ndarray, col: np.ndarray, values: Tensor, shape: tuple[int, int]) -> Tensor:
    with warnings.catch_warnings():  # torch marks its sparse formats as beta; products are exact
        warnings.simplefilter("ignore", UserWarning)
        return torch.sparse_csr_tensor(torch.as_tensor(crow), torch.as_tensor(col), values, shape)


@dataclass
class Interactions:
    """The binary user x item matrix ``X`` (who had which item), in both orientations as CSR arrays.

    ``user_ptr``/``user_items``: the items of each user (sorted); ``item_ptr``/``item_users``: the
    users of each item (sorted). The unknown item code is dropped.
    """

    user_ptr: np.ndarray
    user_items: np.ndarray
    item_ptr: np.ndarray
    item_users: np.ndarray
    n_items: int

    @classmethod
    def from_codes(cls, users: np.ndarray, items: np.ndarray, n_items: int,
                   drop_unknown: bool = True) -> "Interactions":
        """From event codes (repeats count once); ``users`` are any non-negative integers."""
        users = np.asarray(users, dtype=np.int64)
        items = np.asarray(items, dtype=np.int64)
        if drop_unknown:
            known = items != UNKNOWN
            users, items = users[known], items[known]
        users = np.unique(users, return_inverse=True)[1].reshape(-1) if len(users) else users
        n_users = int(users.max()) + 1 if len(users) else 0
        pairs = np.unique(users * n_items + items)  # sorted by user, then item
        pair_users, pair_items = pairs // n_items, pairs % n_items
        by_item = np.argsort(pair_items, kind="stable")  # users stay sorted within each item
        return cls(
            user_ptr=_pointers(pair_users, n_users),
            user_items=pair_items,
            item_ptr=_pointers(pair_items, n_items),
            item_users=pair_users[by_item],
            n_items=n_items,
        )

    @property
    def n_users(self) -> int:
        return len(self.user_ptr) - 1

    @property
    def item_counts(self) -> np.ndarray:
        """Users per item: the diagonal of ``G``."""
        return np.diff(self.item_ptr)

    def restrict(self, items: np.ndarray) -> "Interactions":
        """Only the given item codes, renumbered ``0..len(items)-1`` in the given order."""
        position = np.full(self.n_items, -1, dtype=np.int64)
        position[items] = np.arange(len(items))
        user_of_pair = np.repeat(np.arange(self.n_users), np.diff(self.user_ptr))
        new_items = position[self.user_items]
        kept = new_items >= 0
        return Interactions.from_codes(user_of_pair[kept], new_items[kept], len(items), drop_unknown=False)

    def user_matrix(self) -> Tensor:
        """``X`` as a float32 CSR tensor ``(n_users, n_items)``."""
        ones = torch.ones(len(self.user_items), dtype=torch.float32)
        return _csr(self.user_ptr, self.user_items, ones, (self.n_users, self.n_items))

    def gram_rows(self, start: int, stop: int) -> Tensor:
        """Rows ``start:stop`` of ``G`` as a float32 CSR tensor (exact counts below 2^24 users).

        Every (item of the block, item of one of its users) pair is listed and counted: memory in
        proportion to the block's work, with no dense accumulator (torch's sparse product keeps one).
        """
        lo, hi = self.item_ptr[start], self.item_ptr[stop]
        users = self.item_users[lo:hi]
        row_of_user = np.repeat(np.arange(stop - start), np.diff(self.item_ptr[start:stop + 1]))
        lengths = np.diff(self.user_ptr)[users]
        first = np.cumsum(lengths) - lengths
        offset = np.arange(int(lengths.sum())) - np.repeat(first, lengths)
        cols = self.user_items[np.repeat(self.user_ptr[users], lengths) + offset]
        keys, counts = np.unique(np.repeat(row_of_user, lengths) * self.n_items + cols, return_counts=True)
        crow = _pointers(keys // self.n_items, stop - start)
        return _csr(crow, keys % self.n_items, torch.as_tensor(counts.astype(np.float32)),
                    (stop - start, self.n_items))

    def row_blocks(self, max_entries: int = BLOCK_ENTRIES) -> list[tuple[int, int]]:
        """Consecutive row ranges whose Gram rows take at most about ``max_entries`` products.

        Row ``i`` of ``G`` takes the sum of its users' history lengths in products (its result holds
        at most ``n_items`` of them), so popular items get small blocks and rare ones large blocks.
        """
        history = np.diff(self.user_ptr)
        per_pair = history[self.item_users]
        running = np.concatenate([[0], np.cumsum(per_pair)])
        work = running[self.item_ptr[1:]] - running[self.item_ptr[:-1]]
        # gram_rows lists every (user, item) product of a row before counting them, so the row's
        # work, not its (at most n_items) result entries, is what a block must bound.
        bound = work.astype(np.int64) + 1
        ends = np.cumsum(bound)
        blocks, start = [], 0
        while start < self.n_items:
            budget = (ends[start - 1] if start else 0) + max_entries
            stop = max(int(np.searchsorted(ends, budget, side="right")), start + 1)
            blocks.append((start, stop))
            start = stop
        return blocks


def _pointers(sorted_rows: np.ndarray, n_rows: int) -> np.ndarray:
    ptr = np.zeros(n_rows + 1, dtype=np.int64)
    np.cumsum(np.bincount(sorted_rows, minlength=n_rows), out=ptr[1:])
    return ptr


# A row block of G: (start, stop, make), where make() returns rows start:stop as a CSR tensor.
GramBlock = tuple[int, int, Callable[[], Tensor]]


def _dense_rows(gram: Tensor, start: int, stop: int) -> Tensor:
    with warnings.catch_warnings():  # torch marks its sparse formats as beta; the copy is exact
        warnings.simplefilter("ignore", UserWarning)
        return gram[start:stop].to(torch.float64).to_sparse_csr()


def dense_gram_blocks(gram: Tensor, rows: int = 2048) -> list[GramBlock]:
    """Row blocks of a dense Gram matrix as CSR tensors (the small-catalogue path)."""
    spans = [(start, min(start + rows, gram.shape[0])) for start in range(0, gram.shape[0], rows)]
    return [(start, stop, partial(_dense_rows, gram, start, stop)) for start, stop in spans]


def interaction_gram_blocks(interactions: Interactions) -> list[GramBlock]:
    """Row blocks of ``G``, each counted from the sparse interactions when it is made."""
    return [(start, stop, partial(interactions.gram_rows, start, stop)) for start, stop in interactions.row_blocks()]


def _in_order(work: Callable, items: Iterable, workers: int) -> Iterator:
    """``work`` over ``items``, at most ``workers`` at a time in threads, results in the items' order.

    numpy releases the GIL in its sorts, searches and array arithmetic, so blocks overlap; at most
    ``workers`` blocks are held at once. With one worker everything runs in this thread.
    """
    if workers <= 1:
        yield from map(work, items)
        return
    with ThreadPoolExecutor(workers) as pool:
        running = deque()
        for item in items:
            running.append(pool.submit(work, item))
            if len(running) >= workers:
                yield running.popleft().result()
        while running:
            yield running.popleft().result()


def _top_per_row(rows: np.ndarray, sims: np.ndarray, lengths: np.ndarray, neighbors: int) -> np.ndarray:
    """Which entries to keep: every entry of rows with at most ``neighbors`` entries, and the
    ``neighbors`` largest (ties: lower column) of longer rows. ``rows`` are block-local and sorted,
    columns ascending within a row, similarities non-negative.

    A histogram of each long row's similarities finds the bin holding its ``neighbors``-th largest:
    entries above that bin are kept, below it dropped, and only the bin's own entries are sorted.
    """
    keep = np.ones(len(rows), dtype=bool)
    long_rows = np.flatnonzero(lengths > neighbors)
    if len(long_rows) == 0:
        return keep
    starts = np.concatenate([[0], np.cumsum(lengths)])
    for group in np.array_split(long_rows, -(-len(long_rows) // _HISTOGRAM_ROWS)):
        span = slice(starts[group[0]], starts[group[-1] + 1])  # rows are sorted: one slice
        local = np.searchsorted(group, rows[span])  # position of each entry's row in the group
        mine = group[np.minimum(local, len(group) - 1)] == rows[span]  # entries of long rows
        entry = np.flatnonzero(mine) + span.start
        keep[entry] = _top_of_long_rows(local[mine], sims[entry].view(np.int32), len(group), neighbors)
    return keep


def _top_of_long_rows(row: np.ndarray, bits: np.ndarray, n_rows: int, neighbors: int) -> np.ndarray:
    """As :func:`_top_per_row` for rows that all have more than ``neighbors`` entries (``row`` sorted)."""
    bins = bits >> _BIN_SHIFT
    counts = np.bincount(row * _N_BINS + bins, minlength=n_rows * _N_BINS).reshape(n_rows, _N_BINS)
    at_or_above = np.cumsum(counts[:, ::-1], axis=1)[:, ::-1]
    # The cut bin: the highest bin that, with the bins above it, holds `neighbors` entries.
    cut = _N_BINS - 1 - np.argmax(at_or_above[:, ::-1] >= neighbors, axis=1)
    above = np.where(cut + 1 < _N_BINS, at_or_above[np.arange(n_rows), np.minimum(cut + 1, _N_BINS - 1)], 0)
    keep = bins > cut[row]
    tied = np.flatnonzero(bins == cut[row])
    # Within the cut bin: the largest similarities first, the lower column on ties (a stable sort).
    key = (row[tied].astype(np.int64) << _COL_BITS) | (_SIM_BITS_MAX - bits[tied].astype(np.int64))
    order = tied[np.argsort(key, kind="stable")]
    first = np.searchsorted(row[order], np.arange(n_rows))
    rank = np.arange(len(order)) - first[row[order]]
    keep[order[rank < (neighbors - above)[row[order]]]] = True
    return keep


def topk_similarity(
    blocks: Iterable[GramBlock],
    counts: np.ndarray,
    n_items: int,
    shrinkages: Sequence[float],
    neighbors: int | None = 200,
    workers: int | None = None,
) -> list[Tensor]:
    """Cosine with shrinkage ``G[i, j] / (sqrt(G[i, i] G[j, j]) + shrinkage)``, zero diagonal,
    keeping the ``neighbors`` largest per row (``None``: all), for each shrinkage.

    blocks: ``(start, stop, make)`` with ``make()`` the rows of ``G`` as CSR; counts: the diagonal of
    ``G``; workers: blocks processed at once (None: torch's thread count, one in the pinned
    numerics). Returns one float32 CSR tensor ``(n_items, n_items)`` per shrinkage, from a single
    pass over the blocks; the result does not depend on ``workers``.
    """
    if any(s < 0 for s in shrinkages):
        raise ValueError(f"shrinkage must be >= 0, got {list(shrinkages)}")
    if neighbors is not None and neighbors < 1:
        raise ValueError(f"neighbors must be >= 1 or None (all), got {neighbors}")
    norms = np.sqrt(np.clip(np.asarray(counts, dtype=np.float64), 0, None))
    block_top = partial(_block_top, norms=norms, n_items=n_items, shrinkages=shrinkages, neighbors=neighbors)
    parts: list[list[tuple[np.ndarray, np.ndarray, np.ndarray]]] = [[] for _ in shrinkages]
    for kept in _in_order(block_top, blocks, workers or torch.get_num_threads()):
        for part, block_part in zip(parts, kept):
            part.append(block_part)
    return [_assemble(part, n_items) for part in parts]


def _block_top(block: GramBlock, *, norms: np.ndarray, n_items: int, shrinkages: Sequence[float],
               neighbors: int | None) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """One row block's kept entries ``(rows, columns, similarities)``, one triple per shrinkage."""
    start, stop, make = block
    csr = make()
    crow = csr.crow_indices().numpy()
    cols = csr.col_indices().numpy().astype(np.int64)
    gram = csr.values().numpy().astype(np.float64)
    rows = np.repeat(np.arange(stop - start), np.diff(crow))
    # Canonical order (row, column): products need not sort columns within a row.
    order = np.argsort(rows * n_items + cols, kind="stable")
    rows, cols, gram = rows[order], cols[order], gram[order]
    off_diagonal = (cols != rows + start) & (gram != 0)
    rows, cols, gram = rows[off_diagonal], cols[off_diagonal], gram[off_diagonal]
    lengths = np.bincount(rows, minlength=stop - start)
    outer = norms[rows + start] * norms[cols]
    kept = []
    for shrinkage in shrinkages:
        sims = (gram / np.maximum(outer + shrinkage, 1e-12)).astype(np.float32)
        keep = np.ones(len(rows), dtype=bool) if neighbors is None else _top_per_row(rows, sims, lengths, neighbors)
        # int32 codes halve what the kept parts hold until they are assembled.
        kept.append(((rows[keep] + start).astype(np.int32), cols[keep].astype(np.int32), sims[keep]))
    return kept


def _assemble(part: list[tuple[np.ndarray, np.ndarray, np.ndarray]], n_items: int) -> Tensor:
    rows = np.concatenate([p[0] for p in part]) if part else np.zeros(0, dtype=np.int64)
    cols = np.concatenate([p[1] for p in part]) if part else np.zeros(0, dtype=np.int64)
    sims = np.concatenate([p[2] for p in part]) if part else np.zeros(0, dtype=np.float32)
    part.clear()
    return _csr(_pointers(rows, n_items), cols.astype(np.int64), torch.as_tensor(sims), (n_items, n_items))


def sparse_row_sums(weights: Tensor, items: Tensor, mask: Tensor) -> Tensor:
    """``(tasks, n_items)``: for each task the sum of the CSR ``weights`` rows of its masked items."""
    n_items = weights.shape[1]
    crow, cols, values = weights.crow_indices(), weights.col_indices(), weights.values()
    task = torch.arange(items.shape[0], device=items.device)[:, None].expand_as(items)[mask]
    item = items[mask]
    starts, lengths = crow[item], crow[item + 1] - crow[item]
    total = int(lengths.sum())
    out = torch.zeros(items.shape[0] * n_items, dtype=values.dtype, device=values.device)
    if total:
        # Entry positions of every selected row, laid end to end.
        row_of_entry = torch.repeat_interleave(torch.arange(len(item), device=items.device), lengths)
        first = torch.cumsum(lengths, 0) - lengths
        entry = starts[row_of_entry] + torch.arange(total, device=items.device) - first[row_of_entry]
        out.index_add_(0, task[row_of_entry] * n_items + cols[entry], values[entry])
    return out.view(items.shape[0], n_items)


__all__ = [
    "Interactions",
    "GramBlock",
    "dense_gram_blocks",
    "interaction_gram_blocks",
    "sparse_row_sums",
    "topk_similarity",
]
