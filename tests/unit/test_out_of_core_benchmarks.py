"""The out-of-core benchmarks: panels written part by part as Parquet, and the engine comparison's
JSON line, on small sizes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from benchmarks.own_log_scale import write_panel  # noqa: E402


def test_a_parquet_panel_written_part_by_part_has_the_asked_size(tmp_path):
    path = tmp_path / "panel.parquet"
    made = write_panel(path, 20_000, 3_000, 70, households_per_part=30)  # parts of 30, 30 and 10 households
    frame = pd.read_parquet(path)
    assert made["events"] == len(frame) == 20_000
    assert made["households"] == frame["household_key"].nunique() == 70
    assert made["products"] == frame["PRODUCT_ID"].nunique()
    assert made["returns"] == int((frame["QUANTITY"] <= 0).sum())
    # Baskets belong to one household, and each basket falls on one day.
    assert (frame.groupby("BASKET_ID")["household_key"].nunique() == 1).all()
    assert (frame.groupby("BASKET_ID")["DAY"].nunique() == 1).all()
    lines = frame.groupby("household_key").size()
    assert lines.max() > 5 * max(lines.min(), 1)  # short and long histories


def test_the_same_seed_writes_the_same_parquet_panel(tmp_path):
    first, second = tmp_path / "a.parquet", tmp_path / "b.parquet"
    for path in (first, second):
        write_panel(path, 5_000, 500, 40, households_per_part=16)
    pd.testing.assert_frame_equal(pd.read_parquet(first), pd.read_parquet(second))
    assert not np.array_equal(pd.read_parquet(first)["PRODUCT_ID"].to_numpy()[:50], np.arange(50))


def test_the_engine_comparison_ends_with_one_json_line():
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "out_of_core_engines.py"), "--events", "40000",
                           "--items", "2000"], capture_output=True, text=True, cwd=ROOT, timeout=600,
                          env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    duckdb = result["engines"]["duckdb"]
    assert result["log"]["events"] == 40_000
    assert 2_000 < duckdb["users"] <= result["log"]["households"] == 2_500  # a few households draw no line
    assert duckdb["sample_rows"] == 40_000  # at most 2,500 households: every one, so every row
