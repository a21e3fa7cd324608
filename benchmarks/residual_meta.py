"""The residual meta-learner against the best classical scorer and against its unadapted self.

Run: ``python benchmarks/residual_meta.py [--data PATH] [--seeds 3] [--ks 1,3,5,10]``.
Protocols (:mod:`metarec_ref.recipes.residual_protocols`): customers held out at random 80/10/10
(first K distinct products -> next up to 10 new ones; basket completion; next basket) and new
customers after the 0.8 time cut (basket completion; next basket); full ranking over the
catalogue. Every value (scorer grids, global mixture, whether and how far to adapt) is chosen on
validation customers; test customers are scored once. To keep the run near 15 minutes on two
cores, meta-training uses 500 training customers drawn at random per cell (all validation and
test customers are kept). The synthetic shop (``--synthetic``) runs the held-out next-products
protocol on a log where per-user preference exists by construction.

Prints a table; the last line is one JSON object with, for each protocol and K,
``meta_vs_best_classical`` and ``meta_vs_unadapted`` as ``{"diff", "ci_low", "ci_high"}``, and under
``chosen.val_adapted_vs_unadapted`` the trained learner's adapted NDCG@10 against zero steps on the
validation customers (per inner-step count); ``val_adapted_worse_cells`` lists the cells where
adapting is detectably worse there by its own interval, ``val_adapted_worse_cells_holm`` after
Holm's correction over all those comparisons.
"""

from __future__ import annotations

import argparse
import json
import time
import warnings

import pandas as pd
import torch

from metarec_ref.data import generate, load_online_retail, validate_events
from metarec_ref.eval import holm_verdicts
from metarec_ref.recipes import ClassicalBaselines
from metarec_ref.recipes.residual_protocols import (
    ResidualExperiment,
    ScorerFits,
    mean_metric,
    protocol_data,
    run_residual_cell,
    residual_verdict_table,
)

PROTOCOLS = ["heldout/next_products", "heldout/basket", "heldout/next_basket", "time_cut/basket",
             "time_cut/next_basket"]


def synthetic_events(seed: int = 0) -> pd.DataFrame:
    """The synthetic shop: every interaction a choice driven by the user's own preference vector."""
    log = generate(n_users=3000, n_items=600, n_interactions=90_000, seed=seed)
    return validate_events(log.events)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=None, help="Online Retail file (default: $METAREC_DATA_DIR)")
    parser.add_argument("--synthetic", action="store_true")
    parser.add_argument("--ks", default="1,3,5,10")
    parser.add_argument("--protocols", default=",".join(PROTOCOLS))
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--n-boot", type=int, default=2000)
    args = parser.parse_args()
    torch.set_num_threads(1)
    warnings.simplefilter("ignore", UserWarning)
    start = time.perf_counter()
    ks = [int(k) for k in args.ks.split(",")]
    protocols = ["heldout/next_products"] if args.synthetic else args.protocols.split(",")
    events = synthetic_events() if args.synthetic else load_online_retail(args.data)
    experiment = ResidualExperiment(n_seeds=args.seeds, n_boot=args.n_boot)
    results, rows = {}, []
    for customers in dict.fromkeys(p.split("/")[0] for p in protocols):
        data = protocol_data(events, customers)
        classical = ClassicalBaselines.fit(data.train, data.encoders, experiment.grid)
        fits = ScorerFits(data.fit_events, data.encoders)
        for protocol in [p for p in protocols if p.startswith(customers + "/")]:
            for k in ks:
                cell = run_residual_cell(data, protocol.split("/")[1], k, classical, fits, experiment)
                if cell is None:
                    print(f"{protocol} K={k}: no tasks", flush=True)
                    continue
                results[protocol, k] = cell
                means = {m: round(mean_metric(v), 4) for m, v in cell.values.items()}
                rows.append({"protocol": protocol, "K": k, **means, "base": cell.chosen["base"],
                             "steps": cell.chosen["inner_steps"], "n_test": cell.chosen["n_test"]})
                print(f"[{time.perf_counter() - start:5.0f}s] {protocol} K={k} {means} "
                      f"base={cell.chosen['base']} steps={cell.chosen['inner_steps']}", flush=True)
    table = residual_verdict_table(results)
    pd.set_option("display.width", 220)
    pd.set_option("display.max_columns", 30)
    print(pd.DataFrame(rows).to_string(index=False))
    print(table.drop(columns=["p_value"]).round(4).to_string(index=False))
    summary = {f"{protocol}/K={k}": {
        **{key: {c: round(float(v[c]), 5) for c in ("diff", "ci_low", "ci_high")} for key, v in cell.comparisons.items()},
        "reference": cell.comparisons["meta_vs_best_classical"]["reference"],
        "chosen": {c: v for c, v in cell.chosen.items() if c not in ("val_ndcg_by_steps", "val_ndcg_singles")},
        "val_ndcg_by_steps": {str(s): round(v, 4) for s, v in cell.chosen["val_ndcg_by_steps"].items()},
        "n_test": cell.chosen["n_test"]} for (protocol, k), cell in results.items()}
    # Does the trained learner do harm? Its adapted score against zero steps, paired over validation
    # customers, one comparison per cell and inner-step count; Holm over them all.
    checks = holm_verdicts(pd.DataFrame([{"cell": f"{protocol}/K={k}", **v} for (protocol, k), cell in results.items()
                                         for v in cell.chosen["val_adapted_vs_unadapted"].values()]))
    val_worse = sorted(checks.loc[checks["verdict"] == "worse", "cell"])
    val_worse_holm = sorted(checks.loc[checks["verdict_holm"] == "worse", "cell"])
    print(f"adapting detectably worse than not adapting on validation customers: {len(val_worse)} of {len(checks)} "
          f"comparisons by their own interval {val_worse}, {len(val_worse_holm)} after Holm {val_worse_holm}")
    print(json.dumps({"data": "synthetic" if args.synthetic else "online_retail", "seeds": args.seeds,
                      "val_adapted_worse_cells": val_worse, "val_adapted_worse_cells_holm": val_worse_holm,
                      "train_customers_per_cell": experiment.max_train_tasks,
                      "seconds": round(time.perf_counter() - start, 1), "cells": summary}))


if __name__ == "__main__":
    main()
