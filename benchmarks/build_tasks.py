"""Time and peak memory to validate a 1M-interaction synthetic log and cut meta-learning tasks.

Run: ``python benchmarks/build_tasks.py [--interactions 1000000]``. Target: under 30 s and 2 GB on
2 CPU cores. The last output line is one JSON object; ``seconds`` covers validation, the temporal
cold-start split, encoders and tasks with negatives turned into tensors (generation excluded).
"""

from __future__ import annotations

import argparse
import json
import resource
import time

from metarec_ref.data import Encoders, validate_events
from metarec_ref.data import temporal_cold_start_split
from metarec_ref.data import SyntheticConfig, generate
from metarec_ref.data import build_user_tasks, ranking_targets, to_task_batch


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
    events = validate_events(log.events, k_support=args.k_support, n_query=args.n_query)
    lap("validate")
    split = temporal_cold_start_split(events, cut_quantile=0.8)
    lap("split")
    encoders = Encoders.fit(events)
    lap("encoders")
    train = build_user_tasks(split.train, args.k_support, args.n_query, n_neg=args.n_neg)
    test = build_user_tasks(split.test, args.k_support, args.n_query, n_neg=args.n_neg)
    lap("tasks")
    train_batch = to_task_batch(train, encoders)
    test_batch = to_task_batch(test, encoders)
    targets = ranking_targets(test, encoders, candidates=encoders.catalog().available(split.cut_time))
    lap("tensors")
    seconds = sum(stages.values())
    peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux

    for name, value in stages.items():
        print(f"{name:>10}: {value:7.2f} s")
    print(f"train tasks {train_batch.num_tasks}, test tasks {test_batch.num_tasks}, "
          f"test positives {int(targets.positives.sum())}")
    print(json.dumps({
        "interactions": len(log.events),
        "after_validation": len(events),
        "seconds": round(seconds, 2),
        "peak_rss_mb": round(peak_rss_mb, 1),
        "generate_seconds": round(generate_s, 2),
        "stages": stages,
        "train_tasks": train_batch.num_tasks,
        "test_tasks": test_batch.num_tasks,
        "k_support": args.k_support,
        "n_query": args.n_query,
        "n_neg": args.n_neg,
    }))


if __name__ == "__main__":
    main()
