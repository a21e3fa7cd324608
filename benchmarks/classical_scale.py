"""Classical baselines at catalogue scale: item-kNN (sparse top-k neighbours), EASE on the most
popular items, recent popularity, on a generated log of 1.5M events over 60,000 items.

Prints progress, then one JSON line: fit seconds, score seconds for 1,000 full-catalogue tasks,
peak RSS (MB), n_items, events.

    python benchmarks/classical_scale.py [--events 1500000] [--items 60000] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from metarec_ref.eval import EASE, ItemKNN, RecentPopularity, SupportItems, ease_fits, sparse_interactions
from metarec_ref.runtime import peak_rss_mb


def generate_log(n_events: int, n_items: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Zipf-like item popularity, users with log-normal history lengths, a year of timestamps."""
    rng = np.random.default_rng(seed)
    popularity = 1.0 / (np.arange(n_items - 1) + 20.0)
    lengths = np.clip(rng.lognormal(2.8, 1.1, size=n_events // 5), 1, 3000).astype(np.int64)
    lengths = lengths[: np.searchsorted(np.cumsum(lengths), n_events) + 1]
    users = np.repeat(np.arange(len(lengths)), lengths)[:n_events]
    # Codes 1..n_items-1 (0 is the unknown item), popularity shuffled across codes.
    items = 1 + rng.permutation(n_items - 1)[rng.choice(n_items - 1, size=len(users), p=popularity / popularity.sum())]
    times = np.datetime64("2024-01-01") + rng.integers(0, 365 * 86_400, len(users)).astype("timedelta64[s]")
    return users, items, times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_500_000)
    parser.add_argument("--items", type=int, default=60_000)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--neighbors", type=int, default=200)
    parser.add_argument("--ease-top-items", type=int, default=5_000)
    parser.add_argument("--tasks", type=int, default=1_000)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    users, items, times = generate_log(args.events, args.items)
    n = args.items

    start = time.perf_counter()
    inter = sparse_interactions((users, items), n_items=n)
    knn = ItemKNN.from_cooccurrence(inter, 10.0, neighbors=args.neighbors)
    knn_seconds = time.perf_counter() - start
    print(f"item-kNN: {knn_seconds:.1f} s, {knn.weights.values().numel():,} stored similarities, "
          f"peak {peak_rss_mb():.0f} MB", flush=True)

    del knn  # the grid below holds its own shrinkage-10 model
    start = time.perf_counter()
    knn_grid = ItemKNN.grid_from_cooccurrence(inter, [0.0, 5.0, 20.0, 100.0], args.neighbors)
    grid_seconds = time.perf_counter() - start
    print(f"item-kNN grid of {len(knn_grid)}: {grid_seconds:.1f} s, peak {peak_rss_mb():.0f} MB", flush=True)

    start = time.perf_counter()
    ease = EASE.fit((users, items), n_items=n, lam=200.0, top_items=args.ease_top_items)
    ease_seconds = time.perf_counter() - start
    print(f"EASE on the top {args.ease_top_items:,} items: {ease_seconds:.1f} s "
          f"(all {n:,} items fit: {ease_fits(n)})", flush=True)

    start = time.perf_counter()
    recent = RecentPopularity.fit((users, items, times), n_items=n, window_days=30)
    recent_seconds = time.perf_counter() - start

    rng = np.random.default_rng(1)
    k = 10
    support = SupportItems(torch.as_tensor(rng.choice(items, size=(args.tasks, k))),
                           torch.ones(args.tasks, k, dtype=torch.bool))
    catalogue = {"item": torch.arange(n).expand(256, n)}
    score_seconds = {}
    for name, method in (("knn", knn_grid[20.0]), ("ease", ease), ("recent", recent)):
        start = time.perf_counter()
        for first in range(0, args.tasks, 256):  # evaluation's chunks of 256 tasks
            chunk = SupportItems(support.items[first:first + 256], support.mask[first:first + 256])
            method.score(chunk, {"item": catalogue["item"][: len(chunk.items)]})
        score_seconds[name] = round(time.perf_counter() - start, 2)
    print(json.dumps({
        "fit_seconds": {"knn": round(knn_seconds, 2), "knn_grid_4": round(grid_seconds, 2),
                        "ease_top_items": round(ease_seconds, 2), "recent": round(recent_seconds, 2)},
        "score_seconds_1000_tasks": score_seconds,
        "peak_rss_mb": round(peak_rss_mb(), 1),
        "n_items": n,
        "events": int(len(items)),
        "neighbors": args.neighbors,
        "stored_similarities": int(knn_grid[20.0].weights.values().numel()),
        "ease_top_items": args.ease_top_items,
        "threads": args.threads,
    }))


if __name__ == "__main__":
    main()
