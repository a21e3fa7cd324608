"""Time and peak memory to validate a 1M-interaction synthetic log and cut meta-learning tasks.

Run: ``python benchmarks/build_tasks.py [--interactions 1000000]``. Target: under 30 s and 2 GB on
2 CPU cores. The last output line is one JSON object; ``seconds`` covers validation, the temporal
cold-start split, encoders and tasks with negatives turned into tensors (generation excluded), all
through ``build_cold_start_tasks``, the pipeline every experiment uses.
"""

from __future__ import annotations

import argparse
import json
import time

from metarec_ref.data import NegativeSampling, SyntheticConfig, generate
from metarec_ref.recipes import ColdStartCut, build_cold_start_tasks
from metarec_ref.runtime import peak_rss_mb

CELLS = ("new_user_existing_item", "new_user_new_item")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--interactions", type=int, default=1_000_000)
    parser.add_argument("--k-support", type=int, default=5)
    parser.add_argument("--n-query", type=int, default=10)
    parser.add_argument("--n-neg", type=int, default=1)
    args = parser.parse_args()

    n = args.interactions
    config = SyntheticConfig(n_users=max(50, n // 50), n_items=max(100, n // 200), n_interactions=n)
    start = time.perf_counter()
    log = generate(config)
    generate_s = time.perf_counter() - start

    stages = {}
    clock = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        stages[name] = round(now - clock, 3)
        clock = now

    # Same user, item and second twice is possible; validation drops (and reports) such rows.
    negatives = NegativeSampling(args.n_neg) if args.n_neg else None
    cut = ColdStartCut(args.k_support, args.n_query, negatives, cut_quantile=0.8, cells=CELLS, available_items_only=True)
    tasks = build_cold_start_tasks(log.events, cut, validate=True, on_stage=lap)
    seconds = sum(stages.values())
    test_tasks = sum(by_k[args.k_support].batch.num_tasks for by_k in tasks.test.values())
    test_positives = sum(int(by_k[args.k_support].relevant.sum()) for by_k in tasks.test.values())

    for name, value in stages.items():
        print(f"{name:>10}: {value:7.2f} s")
    print(f"train tasks {tasks.train.num_tasks}, validation tasks {tasks.val.num_tasks}, "
          f"test tasks {test_tasks}, test positives {test_positives}")
    print(json.dumps({
        "interactions": len(log.events),
        "after_validation": len(tasks.events),
        "seconds": round(seconds, 2),
        "peak_rss_mb": round(peak_rss_mb(), 1),
        "generate_seconds": round(generate_s, 2),
        "stages": stages,
        "train_tasks": tasks.train.num_tasks,
        "val_tasks": tasks.val.num_tasks,
        "test_tasks": test_tasks,
        "k_support": args.k_support,
        "n_query": args.n_query,
        "n_neg": args.n_neg,
    }))


if __name__ == "__main__":
    main()
