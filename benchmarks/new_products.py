"""New products on Online Retail: the Meta-Embedding generator with warm-up against tuned opponents.

Run: ``python benchmarks/new_products.py [--data PATH] [--seeds 5] [--ks 0,1,3,5] [--cut 2011-07-01]``.
Products first sold on or after the cut are validation and test products (alternately, in launch
order); earlier launches are the training products, read from purchases before the cut only.
Per product the support is its first K distinct buyers, the query its next (up to 50) buyers,
ranked over every customer known before the cut (:mod:`metarec_ref.recipes.new_product_experiment`).

Prints the per-K table of test NDCG@10; the last line is one JSON object with, per K,
``meta_vs_best_opponent`` and ``meta_vs_cold_generator`` as ``{"diff", "ci_low", "ci_high",
"p_holm", "verdict"}`` (Holm over every comparison of the run), the opponent's name
(``best_opponent``, chosen on validation products) and ``n_test_products``.
"""

from __future__ import annotations

import argparse
import json
import time
import warnings

import pandas as pd
import torch

from metarec_ref.data import find_online_retail, load_online_retail
from metarec_ref.recipes.new_product_experiment import NewProductConfig, new_product_verdicts, run_new_products, verdicts_json
from metarec_ref.recipes.new_products import new_product_data


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=None, help="Online Retail file (default: $METAREC_DATA_DIR)")
    parser.add_argument("--ks", default="0,1,3,5")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--cut", default="2011-07-01")
    parser.add_argument("--n-boot", type=int, default=2000)
    args = parser.parse_args()
    torch.set_num_threads(min(2, torch.get_num_threads()))
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # dropped duplicates: chapter 7 counts them
        events = load_online_retail(find_online_retail(args.data))
    k_values = [int(k) for k in args.ks.split(",")]
    data = new_product_data(events, k_values, cut=args.cut)
    results = run_new_products(data, k_values, NewProductConfig(n_seeds=args.seeds))
    table = new_product_verdicts(results, n_boot=args.n_boot)
    ndcg = pd.DataFrame({f"K={k}": {name: values.mean() for name, values in r.test.items()} for k, r in results.items()})
    print(ndcg.round(4).to_string())
    print(table.round(4).to_string())
    out = {"benchmark": "new_products", "cut": args.cut, "seeds": args.seeds,
           "products": {"train": len(data.items["train"]), "valid": len(data.items["valid"]),
                        "test": len(data.items["test"])},
           "customers": len(data.split.customers), **verdicts_json(results, table),
           "edges": {f"K={k}": r.edges for k, r in results.items()},
           "seconds": round(time.perf_counter() - start, 1)}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
