"""Which engine reads a log larger than memory: DuckDB or Polars' lazy frames, measured.

Writes the generated purchase panel of ``own_log_scale.py`` as Parquet (``--events``, 600 lines per
household), then, for each engine installed, in a fresh process: the whole log's rows per user and
distinct products (the counts a profile needs), and every row of 2,500 random households in file
order (the sample a chapter reads). Prints one JSON line: per engine, seconds for each pass and the
process's peak memory. The library uses DuckDB (``metarec_ref.data.out_of_core``); Polars is measured
when installed (``pip install polars``).

    python benchmarks/out_of_core_engines.py [--events 100000000]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = 2_500

# One engine's two passes; run in its own process so each peak memory is its own.
PASSES = {
    "duckdb": """
import duckdb
con = duckdb.connect(config={{"threads": {threads}}})
log = "read_parquet('{path}', file_row_number = true)"
counts = con.sql(f"SELECT household_key AS u, count(*) AS n FROM {{log}} GROUP BY u").fetchnumpy()
items = con.sql(f"SELECT count(DISTINCT PRODUCT_ID) FROM {{log}}").fetchall()[0][0]
users = counts["u"]
mark()
con.register("picked", {{"u": pick(users)}})
rows = con.sql(f"SELECT * EXCLUDE (file_row_number) FROM {{log}} WHERE household_key IN (SELECT u FROM picked) "
               "ORDER BY file_row_number").to_arrow_table().to_pandas()
""",
    "polars": """
import polars as pl
log = pl.scan_parquet("{path}").with_row_index("row")
counts = log.group_by("household_key").agg(pl.len().alias("n")).collect(engine="streaming")
items = log.select(pl.col("PRODUCT_ID").n_unique()).collect(engine="streaming").item()
users = counts["household_key"].to_numpy()
mark()
rows = (log.filter(pl.col("household_key").is_in(pick(users).tolist())).sort("row").drop("row")
        .collect(engine="streaming").to_pandas())
""",
}
HARNESS = """
import json, resource, time
import numpy as np
start = time.perf_counter()
laps = []
def mark():
    laps.append(time.perf_counter() - start)
def pick(users):
    return np.sort(np.random.default_rng(0).choice(np.sort(users), min({sample}, len(users)), replace=False))
{body}
mark()
print(json.dumps({{"counts_seconds": round(laps[0], 2), "sample_seconds": round(laps[1] - laps[0], 2),
                  "users": len(users), "products": int(items), "sample_rows": len(rows),
                  "peak_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)}}))
"""


def measure(engine: str, path: Path, threads: int) -> dict:
    code = HARNESS.format(sample=SAMPLE, body=PASSES[engine].format(path=path, threads=threads))
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{engine} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000_000)
    parser.add_argument("--items", type=int, default=75_000)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    from benchmarks.own_log_scale import write_panel

    path = Path(tempfile.mkdtemp()) / "panel.parquet"
    start = time.perf_counter()
    made = write_panel(path, args.events, args.items, max(SAMPLE, args.events // 600))
    print(f"wrote {made} in {time.perf_counter() - start:.0f} s ({path.stat().st_size / 1e9:.2f} GB)", flush=True)
    engines = [name for name in PASSES if importlib.util.find_spec(name) is not None]
    results = {name: measure(name, path, args.threads) for name in engines}
    for name, result in results.items():
        print(f"{name}: {result}", flush=True)
    size_gb = round(path.stat().st_size / 1e9, 2)
    path.unlink()
    print(json.dumps({"log": {**made, "parquet_gb": size_gb}, "threads": args.threads, "engines": results}))


if __name__ == "__main__":
    main()
