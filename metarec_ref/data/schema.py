"""Event logs: one schema and validation with clear errors.

Every loader and the synthetic generator produce the same *event log*, a DataFrame with

- required ``user_id``, ``item_id`` (any hashable ids, kept as given; :func:`~metarec_ref.data.loaders.load_events`
  reads them from a file as text) and ``timestamp`` (``datetime64[ns]``, timezone-naive UTC, within
  :data:`~metarec_ref.data.timestamps.PLAUSIBLE_YEARS` for dates written as text or epoch numbers);
- optional ``label`` (0/1), ``rating``, ``event`` (e.g. view / cart / purchase), ``quantity``,
  ``price``, ``scenario`` (a shopping context: country, channel, campaign), ``session_id``
  (e.g. an invoice), ``category``, and any number of extra user / item feature columns.

``validate_events(df, columns={"CustomerID": "user_id", ...})`` renames, checks and returns a clean
copy sorted by timestamp (stable: ties keep their input order).

Ids are encoded by :mod:`metarec_ref.data.encoders`.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Hashable, Mapping, Sequence

import numpy as np
import pandas as pd

from metarec_ref.data.timestamps import PLAUSIBLE_YEARS, parse_timestamps

REQUIRED_COLUMNS = ("user_id", "item_id", "timestamp")
OPTIONAL_COLUMNS = (
    "label",
    "rating",
    "event",
    "quantity",
    "price",
    "scenario",
    "session_id",
    "category",
)
_SEPARATOR_HINTS = (("\t", "tab"), (";", "semicolon"), (",", "comma"), ("|", "pipe"))


def _separator_hint(columns: pd.Index) -> str:
    # One column whose name holds a separator: the file was read with the wrong one.
    if len(columns) != 1 or not isinstance(columns[0], str):
        return ""
    for char, name in _SEPARATOR_HINTS:
        if char in columns[0]:
            return f"; the file looks {name}-separated: pass sep={char!r}"
    return ""


def _apply_column_mapping(df: pd.DataFrame, columns: Mapping[str, str] | None) -> pd.DataFrame:
    if not columns:
        return df
    if not isinstance(columns, Mapping):
        raise ValueError(
            f"columns must be a mapping from your column names to schema names, "
            f"e.g. {{'CustomerID': 'user_id'}}; got {type(columns).__name__}"
        )
    absent = [src for src in columns if src not in df.columns]
    if absent:
        raise ValueError(
            f"columns mapping names {absent} but the table has {list(df.columns)}; "
            f"fix the keys of columns={dict(columns)}{_separator_hint(df.columns)}"
        )
    targets = list(columns.values())
    clashes = sorted({t for t in targets if targets.count(t) > 1})
    if clashes:
        raise ValueError(f"columns mapping sends two columns to {clashes}; map each schema name once")
    kept = [c for c in df.columns if c not in columns and c in targets]
    if kept:
        raise ValueError(
            f"columns mapping renames onto {kept}, which already exist; drop them first "
            f"or map them elsewhere"
        )
    return df.rename(columns=dict(columns))


def _check_ids(df: pd.DataFrame, name: str) -> None:
    col = df[name]
    n_missing = int(col.isna().sum())
    if n_missing:
        raise ValueError(
            f"column '{name}' has {n_missing} missing values (NaN/None); drop those rows "
            f"or fill them before validating"
        )
    if col.dtype == object:
        try:
            pd.util.hash_array(col.to_numpy())
        except TypeError as err:
            bad = next(v for v in col if not isinstance(v, Hashable))
            raise ValueError(
                f"column '{name}' holds unhashable values such as {bad!r}; ids must be "
                f"scalars (int or str)"
            ) from err


def require_columns(events: pd.DataFrame, names: Sequence[str], what: str) -> None:
    """ValueError naming the first of ``names`` missing from ``events`` (needed for ``what``)."""
    missing = [c for c in names if c not in events.columns]
    if missing:
        raise ValueError(
            f"column '{missing[0]}' is missing for {what}; found {list(events.columns)}. "
            f"Run validate_events first"
        )


def numeric_column(df: pd.DataFrame, name: str) -> pd.Series:
    """Column ``name`` as numbers; a clear error for text, missing or infinite values."""
    col = df[name]
    if pd.api.types.is_bool_dtype(col):
        return col.astype("float64")
    if not pd.api.types.is_numeric_dtype(col):
        converted = pd.to_numeric(col, errors="coerce")
        if (converted.isna() & col.notna()).any():
            example = col[converted.isna() & col.notna()].iloc[0]
            hint = (" It looks like a decimal comma: read the file with decimal=',' "
                    "(load_events(..., read_kwargs={'decimal': ','}))"
                    if isinstance(example, str) and re.fullmatch(r"\s*-?\d+,\d+\s*", example) else "")
            raise ValueError(
                f"column '{name}' must be numeric; found {example!r}. Convert it or drop the column{hint}"
            )
        col = converted
    n_missing = int(col.isna().sum())
    if n_missing:
        raise ValueError(f"column '{name}' has {n_missing} missing values; drop or fill those rows")
    n_inf = int(col.isin([np.inf, -np.inf]).sum())
    if n_inf:
        raise ValueError(f"column '{name}' has {n_inf} infinite values (inf or -inf); drop or fix those rows")
    return col


def _apply_event_map(df: pd.DataFrame, event_map: Mapping[str, float]) -> pd.DataFrame:
    if "event" not in df.columns:
        raise ValueError(
            f"event_map was given but there is no 'event' column; found {list(df.columns)}"
        )
    if "label" in df.columns:
        raise ValueError("both a 'label' column and event_map were given; use one of them")
    unknown = sorted(set(df["event"].dropna().astype(str)) - set(map(str, event_map)))
    if unknown or df["event"].isna().any():
        raise ValueError(
            f"column 'event' has values not in event_map: {unknown or ['<missing>']}; "
            f"add them to event_map={dict(event_map)}"
        )
    weight = df["event"].astype(str).map({str(k): float(v) for k, v in event_map.items()})
    if (weight < 0).any():
        raise ValueError(f"event_map weights must be >= 0; got {dict(event_map)}")
    # Weight 0 marks an observed non-positive (label 0); any positive weight a positive.
    df["label"] = (weight > 0).astype("int64")
    df["weight"] = weight.astype("float64")
    return df


def validate_events(
    events: pd.DataFrame,
    columns: Mapping[str, str] | None = None,
    *,
    event_map: Mapping[str, float] | None = None,
    timestamp_unit: str | None = None,
    min_users: int = 2,
    k_support: int | None = None,
    n_query: int = 1,
    min_task_users: int = 2,
    drop_duplicates: bool = True,
    drop_nonpositive_quantity: bool = False,
) -> pd.DataFrame:
    """Rename, check and clean an event log; return a copy sorted by timestamp.

    columns: your column names -> schema names, e.g. ``{"CustomerID": "user_id"}``.
    event_map: event value -> weight; weight 0 gives ``label`` 0, a positive weight ``label`` 1
        and the weight is kept in a ``weight`` column.
    timestamp_unit: unit of numeric (epoch) timestamps, e.g. ``"s"`` or ``"ms"``. If every date
        falls outside 1980-2100 the unit is taken as wrong and the error names the likely one;
        if only some do, a ``UserWarning`` says how many.
    k_support, n_query: when given, at least ``min_task_users`` users must have
        ``k_support + n_query`` events, so tasks can be cut.
    drop_nonpositive_quantity: drop rows whose ``quantity`` is zero or negative (returns,
        cancellations) with a ``UserWarning`` saying how many; by default they are an error.
    Exact duplicate rows are dropped with a ``UserWarning`` saying how many.
    """
    if not isinstance(events, pd.DataFrame):
        raise ValueError(f"events must be a pandas DataFrame, got {type(events).__name__}")
    if events.columns.duplicated().any():
        dup = sorted(set(events.columns[events.columns.duplicated()]))
        raise ValueError(f"events has duplicate column names {dup}; rename them to be unique")
    if min_users < 1:
        raise ValueError(f"min_users must be >= 1, got {min_users}")
    if k_support is not None and (k_support < 1 or n_query < 1):
        raise ValueError(
            f"k_support and n_query must be >= 1, got k_support={k_support}, n_query={n_query}"
        )
    df = _apply_column_mapping(events, columns)
    missing = [c for c in REQUIRED_COLUMNS if c not in df.columns]
    if missing:
        raise ValueError(
            f"column '{missing[0]}' is missing; found {list(df.columns)}. Rename your column or "
            f"pass columns={{'<your name>': '{missing[0]}'}}{_separator_hint(df.columns)}"
        )
    if len(df) == 0:
        raise ValueError("events is empty (0 rows); nothing to validate")
    df = df.copy()
    for name in ("user_id", "item_id"):
        _check_ids(df, name)
    df["timestamp"] = parse_timestamps(df["timestamp"], timestamp_unit)

    if event_map is not None:
        df = _apply_event_map(df, event_map)
    if "label" in df.columns:
        label = numeric_column(df, "label")
        bad = sorted({v.item() if hasattr(v, "item") else v for v in label.unique()} - {0, 1})
        if bad:
            raise ValueError(
                f"column 'label' must be 0 or 1; found values {bad[:5]}. Binarise it "
                f"(e.g. rating >= 4) or put it in 'rating'"
            )
        df["label"] = label.astype("int64")
    # Returns first: their negative sales values are not prices.
    if "quantity" in df.columns:
        quantity = numeric_column(df, "quantity")
        nonpositive = (quantity <= 0).to_numpy()
        n_bad = int(nonpositive.sum())
        if n_bad and not drop_nonpositive_quantity:
            raise ValueError(
                f"column 'quantity' has {n_bad} zero or negative values (returns or "
                f"cancellations?); drop those rows before validating or pass drop_nonpositive_quantity=True"
            )
        df["quantity"] = quantity
        if n_bad == len(df):
            raise ValueError(f"all {n_bad} rows have zero or negative quantity; nothing is left to validate")
        if n_bad:
            warnings.warn(
                f"dropped {n_bad} rows with zero or negative quantity (returns or cancellations)",
                UserWarning,
                stacklevel=2,
            )
            df = df[~nonpositive]
    for name in ("rating", "price", "weight"):
        if name in df.columns:
            df[name] = numeric_column(df, name).astype("float64")
    if "price" in df.columns and (df["price"] < 0).any():
        raise ValueError(
            f"column 'price' has {int((df['price'] < 0).sum())} negative values; prices must be >= 0"
        )
    for name in ("scenario", "category", "session_id", "event"):
        if name in df.columns and df[name].isna().any():
            raise ValueError(
                f"column '{name}' has {int(df[name].isna().sum())} missing values; fill them "
                f"(e.g. 'unknown') or drop the column"
            )

    if drop_duplicates:
        try:
            duplicated = df.duplicated()
        except TypeError as err:
            raise ValueError(f"events has unhashable cell values; {err}") from err
        n_dup = int(duplicated.sum())
        if n_dup:
            warnings.warn(
                f"dropped {n_dup} duplicate rows (identical in every column); "
                f"pass drop_duplicates=False to keep them",
                UserWarning,
                stacklevel=2,
            )
            df = df[~duplicated]

    counts = df.groupby("user_id", sort=False).size()
    if len(counts) < min_users:
        raise ValueError(
            f"events has only {len(counts)} user(s); meta-learning needs at least {min_users} "
            f"users (tasks are cut per user)"
        )
    if k_support is not None:
        need = k_support + n_query
        enough = int((counts >= need).sum())
        if enough < min_task_users:
            raise ValueError(
                f"only {enough} users have at least k_support + n_query = {need} events; "
                f"need {min_task_users}. Lower k_support / n_query or use a longer log"
            )
    return df.sort_values("timestamp", kind="stable").reset_index(drop=True)


__all__ = [
    "OPTIONAL_COLUMNS",
    "REQUIRED_COLUMNS",
    "numeric_column",
    "require_columns",
    "validate_events",
]
