"""The embedding-table benchmark's instruments: its memory reading is exact, and a tiny run yields its JSON."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys
from types import SimpleNamespace

import torch

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))

from embedding_meta_step import peak_mb  # noqa: E402


def test_peak_memory_is_the_most_tensor_memory_held_at_once():
    def step(_):
        first = torch.ones(2**20)  # 4 MB
        second = torch.ones(2**21)  # 8 MB: 12 MB held here
        del first
        third = torch.ones(2**19)  # 2 MB: 10 MB held
        return second, third

    cpu = SimpleNamespace(device=torch.device("cpu"))
    kept = torch.ones(2**22)  # held before the call: not counted
    assert [peak_mb(step, cpu) for _ in range(3)] == [12.0, 12.0, 12.0]
    assert kept.numel() == 2**22


def test_tiny_run_reports_every_cell_and_flatness(tmp_path):
    run = subprocess.run(
        [sys.executable, "benchmarks/embedding_meta_step.py", "--items", "2000", "50000", "--tasks", "4",
         "--repeats", "1", "--warmup", "1", "--threads", "1"],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert run.returncode == 0, run.stderr[-2000:]
    result = json.loads(run.stdout.strip().splitlines()[-1])
    assert result["max_grad_diff"] < 1e-5
    for cell in ("all_2000_4", "all_50000_4", "head_2000_4", "head_50000_4"):
        assert result[f"ours_ms_{cell}"] > 0 and result[f"ours_peak_mb_{cell}"] > 0
    assert result["grad_mb_all_50000"] > 20 * result["grad_mb_all_2000"]
    # Dense copies grow with the catalogue; the row-wise step's peak beyond its gradients does not.
    assert result["ours_dense_peak_mb_all_50000_4"] > 10 * result["ours_dense_peak_mb_all_2000_4"]
    assert result["ours_peak_mb_all_50000_4"] - result["grad_mb_all_50000"] < result["ours_peak_mb_all_2000_4"]
    assert {"ours_ms_ratio_all_50000_vs_2000_4", "ours_peak_mb_ratio_all_50000_vs_2000_4"} <= result.keys()
