"""Logs larger than memory: DuckDB scans a Parquet log on disk, and only a sample of users comes back.

``sample = load_user_sample(path, columns, max_users=5000, seed=0)`` reads a Parquet log (one file,
or a folder of part files) in two passes of DuckDB, whose memory is capped (``memory_gb``; beyond it
DuckDB works on disk):

1. **the whole log's counts** (:class:`WholeLog`): rows, users, items, first and last timestamp,
   rows per user (quantiles) and the users first seen after candidate cut times, the counts a
   temporal protocol needs;
2. **a random sample of users**: ``max_users`` users drawn with ``seed`` from the sorted user ids,
   and every row of theirs, in file order.

The sample's rows then go through :func:`~metarec_ref.data.loaders.load_events`, so they are read
and validated exactly as an in-memory log is: on a log that fits in memory, the sample equals the
whole log restricted to the same users, row for row (``tests/unit/test_out_of_core.py``). Reading out
of core changes which users are read, never how. The protocol, the tasks and every model then work
on the sample, which is what :attr:`WholeLog.sampled_users` states.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from metarec_ref.data.loaders import file_column, load_events
from metarec_ref.data.log_profile import EVENTS_PER_USER_QUANTILES
from metarec_ref.runtime import machine_memory_gb

CUT_QUANTILES = (0.5, 0.6, 0.7, 0.8, 0.9)  # as profile_log's candidate cut times
ENGINE_MEMORY_SHARE = 1 / 4  # DuckDB's memory cap by default: a quarter of the machine's


@dataclass(frozen=True)
class WholeLog:
    """The whole log's counts, computed on disk; the rows of the file, before validation."""

    path: str
    rows: int
    users: int
    items: int
    first: pd.Timestamp | None  # None when the timestamp column is not stored as a date or time
    last: pd.Timestamp | None
    rows_per_user: pd.Series  # index min, p10, p25, p50, p75, p90, max
    new_users_after_cut: pd.DataFrame  # cut_quantile, cut_time, new_users, share_of_users (may be empty)
    sampled_users: int
    sampled_rows: int
    seed: int

    def summary(self) -> dict[str, float | int | str]:
        """A flat ``name -> number`` dict (names safe for glue keys)."""
        out = {"rows": self.rows, "users": self.users, "items": self.items,
               "first": str(self.first), "last": str(self.last), "sampled_users": self.sampled_users,
               "sampled_rows": self.sampled_rows, "sampled_user_share": self.sampled_users / self.users}
        out.update({f"rows_per_user_{name}": float(v) for name, v in self.rows_per_user.items()})
        for row in self.new_users_after_cut.itertuples(index=False):
            out[f"new_users_after_q{round(row.cut_quantile * 100):02d}"] = int(row.new_users)
        return out

    def to_frame(self) -> pd.DataFrame:
        """``summary()`` as a one-column table to print."""
        summary = self.summary()
        return pd.DataFrame({"value": list(summary.values())}, index=pd.Index(list(summary), name="statistic"))


@dataclass
class UserSample:
    """The sampled users' validated events, and the counts of the whole log they came from."""

    events: pd.DataFrame
    whole: WholeLog


def load_user_sample(path: str | os.PathLike, columns: Mapping[str, str] | None = None, *, max_users: int,
                     seed: int = 0, memory_gb: float | None = None, threads: int | None = None,
                     **load_kwargs) -> UserSample:
    """Every row of ``max_users`` random users of a Parquet log too large for memory (see the module doc).

    Args:
        path: a Parquet file, or a folder of Parquet part files (read in the order of their names).
        columns: your column names -> schema names, as for :func:`load_events`.
        max_users: how many users to read (all of them when the log has fewer).
        seed: which users: the same seed draws the same users on any machine.
        memory_gb: DuckDB's memory cap; None: a quarter of this machine's memory.
        threads: DuckDB's threads; None: every core.
        **load_kwargs: go to :func:`load_events` (``event_map``, ``timestamp_unit``,
            ``drop_nonpositive_quantity``, ...), which validates the sample.

    Raises:
        ValueError: a file that is not Parquet (with the command that converts it on disk), a
            missing user or item column, missing user ids, ``max_users`` below 1, and every error
            :func:`load_events` reports on the sample, each naming the file.
    """
    if not isinstance(max_users, int) or max_users < 1:
        raise ValueError(f"max_users must be a whole number >= 1, got {max_users!r}")
    path = Path(path)
    files = parquet_parts(path)
    schema = pq.read_schema(files[0])
    user, item, timestamp = (file_column(columns, name) for name in ("user_id", "item_id", "timestamp"))
    for name, mine in (("user_id", user), ("item_id", item)):
        if mine not in schema.names:
            raise ValueError(f"{path.name}: column '{name}' is missing; found {schema.names}. Rename your column "
                             f"or pass columns={{'<your name>': '{name}'}}")
    kind = schema.field(timestamp).type if timestamp in schema.names else None
    # A date column is compared as a timestamp; any other type is a date only after validation.
    when = (None if kind is None or not (pa.types.is_timestamp(kind) or pa.types.is_date(kind)) else
            f"CAST({_name(timestamp)} AS TIMESTAMP)" if pa.types.is_date(kind) else _name(timestamp))
    memory_gb = memory_gb or machine_memory_gb() * ENGINE_MEMORY_SHARE
    with tempfile.TemporaryDirectory() as spill:
        con = duckdb.connect(config={"memory_limit": f"{memory_gb:.2f}GB", "threads": threads or os.cpu_count(),
                                     "temp_directory": spill})
        source = "read_parquet([{}], filename = true, file_row_number = true)".format(
            ", ".join(_literal(str(f)) for f in files))
        try:
            first_seen = f", min({when}) AS first_seen" if when else ""
            counts = con.sql(f"SELECT {_name(user)} AS u, count(*) AS n{first_seen} FROM {source} "
                             "GROUP BY u ORDER BY u").to_arrow_table()
            missing = counts.filter(pc.is_null(counts["u"]))
            if missing.num_rows:
                raise ValueError(f"{path.name}: column 'user_id' ('{user}') has {pc.sum(missing['n']).as_py()} "
                                 f"missing values; drop those rows or fill them")
            # Users in sorted order, then a seeded draw of positions: the same users on any machine.
            picked = counts["u"] if max_users >= counts.num_rows else counts["u"].take(
                np.sort(np.random.default_rng(seed).choice(counts.num_rows, max_users, replace=False)))
            con.register("picked", pa.table({"u": picked}))
            keep = "" if len(picked) == counts.num_rows else f"WHERE {_name(user)} IN (SELECT u FROM picked)"
            rows = con.sql(f"SELECT * EXCLUDE (filename, file_row_number) FROM {source} {keep} "
                           "ORDER BY filename, file_row_number").to_arrow_table()
            whole = _whole_log(con, source, counts, item, when, path)
        except duckdb.Error as err:
            raise ValueError(f"{path.name}: DuckDB could not read it ({str(err).splitlines()[0]}); check that "
                             "every part file has the same columns and types") from None
        finally:
            con.close()
        sample = Path(spill) / (path.name if path.is_file() else f"{path.name}.parquet")
        pq.write_table(rows.cast(schema), sample)
        events = load_events(sample, columns, **load_kwargs)
    whole = WholeLog(**whole, sampled_users=len(picked), sampled_rows=rows.num_rows, seed=seed)
    return UserSample(events, whole)


def parquet_parts(path: Path) -> list[Path]:
    """The Parquet file, or a folder's part files in name order; a clear error for anything else."""
    if path.is_dir():
        parts = sorted(p for p in path.rglob("*.parquet") if p.is_file())
        if not parts:
            raise ValueError(f"{path.name} is a folder without .parquet files; point DATA_PATH at a Parquet log")
        return parts
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist; check the path (DATA_PATH)")
    with path.open("rb") as handle:
        if handle.read(4) != b"PAR1":
            raise ValueError(
                f"{path.name} is not a Parquet file; a log read out of core (MAX_USERS) must be Parquet. "
                f"Convert it once on disk with DuckDB, keeping ids as text: duckdb.sql(\"COPY (FROM "
                f"read_csv('{path.name}', all_varchar = true)) TO '{path.stem.split('.')[0]}.parquet'\"), "
                f"or read it in memory (MAX_USERS = None)")
    return [path]


def _whole_log(con, source: str, counts: pa.Table, item: str, when: str | None, path: Path) -> dict:
    """The whole log's counts; ``when``: the timestamp as SQL (None when it is not a date or time)."""
    n = counts["n"].to_numpy().astype(np.float64)
    per_user = pd.Series({name: float(np.quantile(n, q)) for name, q in EVENTS_PER_USER_QUANTILES.items()},
                         name="rows_per_user")
    items = con.sql(f"SELECT count(DISTINCT {_name(item)}) FROM {source}").fetchall()[0][0]
    first = last = None
    cuts = pd.DataFrame(columns=["cut_quantile", "cut_time", "new_users", "share_of_users"])
    if when is not None:
        quantiles = ", ".join(str(q) for q in CUT_QUANTILES)
        first, last, cut_times = con.sql(
            f"SELECT min({when}), max({when}), quantile_cont({when}, [{quantiles}]) FROM {source}").fetchall()[0]
        first_seen = counts["first_seen"].to_pandas()
        new = {q: first_seen >= pd.Timestamp(cut) for q, cut in zip(CUT_QUANTILES, cut_times)}
        rows = [{"cut_quantile": q, "cut_time": pd.Timestamp(cut), "new_users": int(new[q].sum()),
                 "share_of_users": float(new[q].mean())} for q, cut in zip(CUT_QUANTILES, cut_times)]
        cuts, first, last = pd.DataFrame(rows), pd.Timestamp(first), pd.Timestamp(last)
    return {"path": str(path), "rows": int(n.sum()), "users": len(n), "items": int(items), "first": first,
            "last": last, "rows_per_user": per_user, "new_users_after_cut": cuts}


def _name(identifier: str) -> str:
    """A column name quoted for SQL."""
    return '"' + identifier.replace('"', '""') + '"'


def _literal(text: str) -> str:
    """A string quoted for SQL."""
    return "'" + text.replace("'", "''") + "'"


__all__ = ["CUT_QUANTILES", "UserSample", "WholeLog", "load_user_sample", "parquet_parts"]
