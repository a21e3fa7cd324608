"""benchmarks/online_retail_chapter.py: per-cell rows from chapter 7's glue, and its committed result."""

import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "online_retail_chapter.py"
RESULT = ROOT / "benchmarks" / "results" / "online_retail_chapter_cpu.json"


def _script():
    spec = importlib.util.spec_from_file_location("online_retail_chapter", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _glued_cell(cell: str, diff: float) -> dict:
    names = {"reference": "EASE", "meta_ndcg": 0.3, "reference_ndcg": 0.3 - diff, "diff": diff,
             "ci_low": diff - 0.01, "ci_high": diff + 0.01, "p_holm": 0.5, "verdict": "no detectable difference",
             "seed_std": 0.001, "n_test": 400, "adapt_diff": 0.0001, "adapt_verdict": "no detectable difference"}
    return {pattern.format(cell): names[name] for name, pattern in _script().PER_CELL.items()}


def test_cells_reads_every_glued_cell_in_order():
    values = {**_glued_cell("next_session_k3", -0.02), **_glued_cell("basket_k10", 0.01),
              **_glued_cell("basket_k3", 0.005), "ch7_n_cells": 3}
    rows = _script().cells(values)
    assert [(r["definition"], r["K"]) for r in rows] == [("basket", 3), ("basket", 10), ("next_session", 3)]
    assert rows[2]["diff"] == -0.02 and rows[1]["reference"] == "EASE"


@pytest.mark.skipif(not RESULT.exists(), reason="the full-size chapter 7 has not been measured")
def test_committed_result_is_consistent():
    result = json.loads(RESULT.read_text())
    rows = result["cells"]
    assert result["n_cells"] == len(rows) == 6
    assert result["n_better"] + result["n_worse"] + result["n_tie"] == len(rows)
    for r in rows:
        assert r["ci_low"] <= r["diff"] <= r["ci_high"]
        significant = r["p_holm"] < 0.05
        expected = ("better" if r["ci_low"] > 0 and significant else
                    "worse" if r["ci_high"] < 0 and significant else "no detectable difference")
        assert r["verdict"] == expected, r
    assert result["max_abs_adapt_diff"] == max(abs(r["adapt_diff"]) for r in rows)
