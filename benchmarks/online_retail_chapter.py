"""Chapter 7 at full size: every support size and task definition, three training seeds.

Run: ``python benchmarks/online_retail_chapter.py [--data DIR] [--out FILE]`` under the pinned
kernel (``make bench`` sets it). The chapter's own run keeps one support size and two seeds so that
it executes in about three minutes; this script executes the same notebook with papermill and the
full grid (K = 3, 5, 10; basket completion and next session; 3 seeds; about 10 minutes on one
core) and collects, per cell, what the chapter glues: the validation-chosen reference, the
meta-learner's paired NDCG@10 difference to it with its 95% interval, the Holm-adjusted p-value
over the six cells and the verdict, and what the per-customer adaptation adds. The last line is
one JSON object; the chapter shows it beside its own run.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
import time
from pathlib import Path

import papermill

from metarec_ref.book import glued_values
from metarec_ref.data import find_online_retail

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "notebooks" / "07_online_retail.ipynb"
FULL = {"K_VALUES": [3, 5, 10], "DEFINITIONS": ["basket", "next_session"], "N_SEEDS": 3}
PER_CELL = {"reference": "ch7_reference_{}", "meta_ndcg": "ch7_meta_ndcg_{}",
            "reference_ndcg": "ch7_best_baseline_ndcg_{}", "diff": "ch7_meta_diff_{}",
            "ci_low": "ch7_meta_diff_low_{}", "ci_high": "ch7_meta_diff_high_{}", "p_holm": "ch7_meta_p_holm_{}",
            "verdict": "ch7_meta_verdict_{}", "seed_std": "ch7_meta_seed_std_{}", "n_test": "ch7_n_scored_{}",
            "adapt_diff": "ch7_adapt_diff_{}", "adapt_verdict": "ch7_adapt_verdict_{}"}


def cells(values: dict) -> list[dict]:
    """One row per (definition, K) the chapter glued."""
    rows = []
    for key in sorted(values):
        m = re.fullmatch(r"ch7_meta_verdict_(\w+)_k(\d+)", key)
        if m:
            cell = f"{m[1]}_k{m[2]}"
            rows.append({"definition": m[1], "K": int(m[2]),
                         **{name: values[pattern.format(cell)] for name, pattern in PER_CELL.items()}})
    return sorted(rows, key=lambda r: (r["definition"], r["K"]))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=None, help="folder or file of UCI Online Retail (default: find it)")
    parser.add_argument("--out", default=None, help="also write the JSON line to this file")
    args = parser.parse_args(argv)
    try:
        data = find_online_retail(args.data)
    except FileNotFoundError as err:
        print(err, file=sys.stderr)
        return 1
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / NOTEBOOK.name
        papermill.execute_notebook(str(NOTEBOOK), str(out), parameters={**FULL, "DATA_DIR": str(data)},
                                   kernel_name="python3", cwd=str(NOTEBOOK.parent), progress_bar=False)
        values = glued_values(out)
    rows = cells(values)
    for r in rows:
        print(f"{r['definition']:>12} K={r['K']:<3} vs {r['reference']:<24} {r['diff']:+.4f} "
              f"[{r['ci_low']:+.4f}, {r['ci_high']:+.4f}] p_holm={r['p_holm']:.3f} {r['verdict']}")
    result = {"benchmark": "online_retail_chapter", "parameters": FULL, "cells": rows,
              "n_cells": len(rows), **{f"n_{v}": sum(r["verdict"] == v for r in rows) for v in ("better", "worse")},
              "n_tie": sum(r["verdict"] == "no detectable difference" for r in rows),
              "max_abs_adapt_diff": max(abs(r["adapt_diff"]) for r in rows),
              "seconds": round(time.perf_counter() - started, 1)}
    line = json.dumps(result)
    if args.out:
        Path(args.out).write_text(line + "\n")
    print(line)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
