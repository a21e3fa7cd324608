"""Chapter 8 on a reader-sized log: 1.5M purchases of 2,500 households over about 70,000 products in a year,
then on Parquet logs of 1.5M, 15M and 100M purchases read out of core.

Writes the log as a gzip-compressed CSV in a foreign layout (baskets, quantities), runs the README's
own-data command on it (papermill, default parameters), and measures the wall time and the peak
memory of the kernel that ran the chapter, and the peak of the memory of all its processes together (the
kernel and the workers that meta-train the learners side by side). Then, for each size in ``--out-of-core``, writes the same
kind of panel as Parquet (600 lines per household, part by part, so it need not fit in memory) and
runs the chapter on it with ``-p MAX_USERS 2500``: DuckDB counts the whole log and the chapter
analyses a random sample of 2,500 households. The kernel is the pinned one (one thread) unless
``METAREC_NUMERICS=native`` is set. Prints progress, then one JSON line: the in-memory run (stages,
tuned values left on a grid edge, EASE's item count) and, under ``out_of_core``, events, seconds
and peak memory per size.

    python benchmarks/own_log_scale.py [--events 1500000] [--items 75000] [--households 2500]
                                       [--out-of-core 1500000,15000000,100000000] [--max-users 2500]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import nbformat
import numpy as np
import pandas as pd
import psutil
import pyarrow as pa
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[1]
COLUMNS = {"household_key": "user_id", "PRODUCT_ID": "item_id", "DAY": "timestamp", "BASKET_ID": "session_id",
           "QUANTITY": "quantity", "SALES_VALUE": "price"}


def panel_frame(rng: np.random.Generator, n_events: int, n_items: int, n_households: int,
                first_household: int = 0) -> pd.DataFrame:
    """Households with a taste for one of 50 product segments, shopping in baskets all year."""
    lengths = rng.multinomial(n_events, rng.dirichlet(np.full(n_households, 2.0)))
    household = np.repeat(np.arange(n_households), lengths)
    segments, per_segment = 50, n_items // 50
    popularity = 1.0 / (np.arange(n_items) + 10.0)
    anywhere = rng.choice(n_items, size=n_events, p=popularity / popularity.sum())
    rank = np.minimum(rng.zipf(1.5, size=n_events) - 1, per_segment - 1)
    own = rng.integers(0, segments, size=n_households)[household] * per_segment + rank
    items = np.where(rng.random(n_events) < 0.5, own, anywhere)
    # Baskets of about ten lines; each basket on one day of the year.
    basket = np.cumsum(rng.random(n_events) < 0.1)
    basket += household * n_events  # no basket spans two households
    _, basket = np.unique(basket, return_inverse=True)
    day = rng.integers(0, 365, size=basket.max() + 1)[basket]
    quantity = np.where(rng.random(n_events) < 0.01, -1, 1 + rng.poisson(0.5, size=n_events))
    return pd.DataFrame({
        "household_key": household + first_household, "BASKET_ID": basket + first_household * n_events,
        "PRODUCT_ID": items, "DAY": pd.Timestamp("2024-01-01") + pd.to_timedelta(day, unit="D"),
        "QUANTITY": quantity, "SALES_VALUE": np.round(quantity * rng.uniform(0.5, 9.0, size=n_events), 2),
    }).sort_values(["DAY", "BASKET_ID"], kind="stable")


def write_panel(path: Path, n_events: int, n_items: int, n_households: int, seed: int = 0,
                households_per_part: int = 2500) -> dict:
    """The panel as gzip CSV (one frame) or Parquet (one row group per ``households_per_part``).

    Parquet is written part by part, so a log larger than memory can be made; each part draws its
    households' events from the same process.
    """
    if path.suffix != ".parquet":
        frame = panel_frame(np.random.default_rng(seed), n_events, n_items, n_households)
        frame.to_csv(path, index=False, compression="gzip")
        return {"events": n_events, "products": int(frame["PRODUCT_ID"].nunique()), "households": n_households,
                "returns": int((frame["QUANTITY"] <= 0).sum())}
    seen, returns, writer = np.zeros(n_items, dtype=bool), 0, None
    starts = range(0, n_households, households_per_part)
    for part, first in enumerate(starts):
        households = min(households_per_part, n_households - first)
        events = n_events * (first + households) // n_households - n_events * first // n_households
        frame = panel_frame(np.random.default_rng([seed, part]), events, n_items, households, first)
        seen[frame["PRODUCT_ID"].to_numpy()] = True
        returns += int((frame["QUANTITY"] <= 0).sum())
        table = pa.Table.from_pandas(frame, preserve_index=False)
        writer = writer or pq.ParquetWriter(path, table.schema)
        writer.write_table(table)
    writer.close()
    return {"events": n_events, "products": int(seen.sum()), "households": n_households, "returns": returns}


class TreeMemory(threading.Thread):
    """The peak of the summed memory of a process and all its descendants (the kernel and the
    worker processes it starts), sampled every ``interval`` seconds: RSS (shared pages counted in
    every process, an upper bound) and PSS (shared pages split between the processes sharing them)."""

    def __init__(self, pid: int, interval: float = 0.5):
        super().__init__(daemon=True)
        self.root, self.interval, self.done = psutil.Process(pid), interval, threading.Event()
        self.peak_rss_mb = self.peak_pss_mb = 0.0
        self.peak_processes = 0

    def run(self) -> None:
        while not self.done.is_set():
            rss = pss = 0
            try:
                tree = [self.root, *self.root.children(recursive=True)]
            except psutil.Error:
                break
            for process in tree:
                try:
                    info = process.memory_full_info()
                except psutil.Error:  # ended between the listing and the reading
                    continue
                rss, pss = rss + info.rss, pss + info.pss
            self.peak_rss_mb = max(self.peak_rss_mb, rss / 2**20)
            self.peak_pss_mb = max(self.peak_pss_mb, pss / 2**20)
            self.peak_processes = max(self.peak_processes, len(tree))
            self.done.wait(self.interval)


def run_chapter(data: Path, out: Path, *parameters: str) -> tuple[float, dict, dict]:
    """The README's own-data command on ``data`` with extra ``-p`` parameters: seconds, memory
    (the kernel's peak in MB, measured in a wrapper process of its own so each run has its own
    peak, and the peak summed over every process of the run, see :class:`TreeMemory`) and the
    chapter's glued values."""
    mapping = json.dumps({"COLUMNS": COLUMNS, "EVENT_MAP": {}})
    command = [str(Path(sys.executable).parent / "papermill"), "notebooks/08_your_data.ipynb", str(out),
               "-k", "python3", "-p", "DATA_PATH", str(data), "-p", "DROP_RETURNS", "True", *parameters,
               "-y", mapping]
    wrapper = ("import resource, subprocess, sys; done = subprocess.run(sys.argv[1:]); "
               "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); sys.exit(done.returncode)")
    start = time.perf_counter()
    process = subprocess.Popen([sys.executable, "-c", wrapper, *command], cwd=ROOT, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, env={**os.environ, "METAREC_QUIET": "1"})
    tree = TreeMemory(process.pid)
    tree.start()
    stdout, stderr = process.communicate()
    seconds = time.perf_counter() - start
    tree.done.set()
    tree.join()
    if process.returncode != 0:
        print(stderr[-4000:], file=sys.stderr)
        raise SystemExit(f"the chapter failed on {data.name} with exit status {process.returncode}")
    memory = {"kernel_peak_rss_mb": round(int(stdout.strip().splitlines()[-1]) / 1024),  # the wrapper's largest child
              "all_processes_peak_rss_mb": round(tree.peak_rss_mb), "all_processes_peak_pss_mb": round(tree.peak_pss_mb),
              "most_processes": tree.peak_processes}
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from tests.notebooks.harness import glued_values

    return seconds, memory, glued_values(nbformat.read(out, as_version=4))


def out_of_core_run(work: Path, n_events: int, n_items: int, max_users: int) -> dict:
    """A Parquet panel of ``n_events`` (600 lines per household), read by the chapter with MAX_USERS."""
    data = work / f"panel_{n_events}.parquet"
    start = time.perf_counter()
    made = write_panel(data, n_events, n_items, max(max_users, n_events // 600))
    print(f"wrote {made} to {data} in {time.perf_counter() - start:.0f} s", flush=True)
    seconds, memory, glued = run_chapter(data, work / f"result_{n_events}.ipynb", "-p", "MAX_USERS", str(max_users))
    parquet_gb = round(data.stat().st_size / 1e9, 2)
    data.unlink()
    return {"events": n_events, "households": made["households"], "parquet_gb": parquet_gb,
            "users_read": glued.get("own_sampled_users"), "events_read": glued.get("own_events"),
            "chapter_seconds": round(seconds, 1), **memory,
            "protocol": glued.get("own_protocol"), "test_tasks": glued.get("own_test_tasks"),
            "grid_edges": glued.get("own_n_grid_edges"), "verdict": glued.get("own_verdict_sentence")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_500_000)
    parser.add_argument("--items", type=int, default=75_000)
    parser.add_argument("--households", type=int, default=2_500)
    parser.add_argument("--out-of-core", default="1500000,15000000,100000000",
                        help="sizes of the Parquet panels read with MAX_USERS (comma-separated; '' for none)")
    parser.add_argument("--max-users", type=int, default=2_500)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp())
    data = work / "panel.csv.gz"
    start = time.perf_counter()
    made = write_panel(data, args.events, args.items, args.households)
    print(f"wrote {made} to {data} in {time.perf_counter() - start:.0f} s", flush=True)
    seconds, memory, glued = run_chapter(data, work / "result.ipynb")
    result = {
        "log": made, "chapter_seconds": round(seconds, 1), **memory,
        "protocol": glued.get("own_protocol"), "enough": glued.get("own_enough"),
        "train_tasks": glued.get("own_train_tasks"), "test_tasks": glued.get("own_test_tasks"),
        "analysis_seconds": round(glued.get("own_seconds", float("nan")), 1), "stage_seconds": glued.get("own_timings"),
        "verdict": glued.get("own_verdict_sentence"), "cpu_threads": os.cpu_count(),
        "numerics": os.environ.get("METAREC_NUMERICS", "pinned"),
        "grid_edges": glued.get("own_n_grid_edges"), "ease": glued.get("own_ease_name"),
    }
    print(f"in memory: {seconds:.0f} s, {memory}", flush=True)
    sizes = [int(float(size)) for size in args.out_of_core.split(",") if size.strip()]
    result["out_of_core"] = [out_of_core_run(work, n, args.items, args.max_users) for n in sizes]
    for run in result["out_of_core"]:
        print(run, flush=True)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
