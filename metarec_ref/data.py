"""Event logs: one schema, validation with clear errors, id encoders and the item catalog.

Every loader and the synthetic generator produce the same *event log*, a DataFrame with

- required ``user_id``, ``item_id`` (any hashable ids, kept as given) and ``timestamp``
  (``datetime64[ns]``, timezone-naive UTC);
- optional ``label`` (0/1), ``rating``, ``event`` (e.g. view / cart / purchase), ``quantity``,
  ``price``, ``scenario`` (a shopping context: country, channel, campaign), ``session_id``
  (e.g. an invoice), ``category``, and any number of extra user / item feature columns.

``validate_events(df, columns={"CustomerID": "user_id", ...})`` renames, checks and returns a clean
copy sorted by timestamp (stable: ties keep their input order).

``Encoders.fit(events)`` maps raw ids to contiguous int64 codes for the models. Code ``0`` of each
vocabulary (item, category, scenario) is reserved for *unknown*: ids not seen when fitting, and the
padding slots of a :class:`~metarec_ref.batch.TaskBatch`. Known ids get codes ``1..n``, so
``FeatureSpec.n_items == number of known items + 1``.

Item-level dense features (``ItemCatalog.dense``, last dim ``n_dense``):

- ``log_price``: ``log1p`` of the item's median price, standardised with the mean / std over the
  fitted items (0 when the log has no price or the item is unknown);
- then each column of ``item_feature_columns`` (numeric, per-item median), standardised likewise.

``ItemCatalog`` holds every known item with its features so evaluation can score all candidate
items (full ranking), and ``first_seen`` so it can tell which items existed before a time.
"""

from __future__ import annotations

import warnings
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from metarec_ref.batch import FeatureSpec

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
UNKNOWN = 0  # reserved code for unseen ids and padding, in every vocabulary


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
            f"fix the keys of columns={dict(columns)}"
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


def _parse_timestamps(col: pd.Series, timestamp_unit: str | None) -> pd.Series:
    if isinstance(col.dtype, pd.DatetimeTZDtype):
        return col.dt.tz_convert("UTC").dt.tz_localize(None).astype("datetime64[ns]")
    if pd.api.types.is_datetime64_any_dtype(col):
        return col.astype("datetime64[ns]")
    if pd.api.types.is_bool_dtype(col):
        raise ValueError("column 'timestamp' is boolean; it must hold dates or epoch numbers")
    if pd.api.types.is_numeric_dtype(col):
        if timestamp_unit is None:
            raise ValueError(
                "column 'timestamp' is numeric; pass timestamp_unit='s' (or 'ms') to read "
                "epoch numbers, or convert it with pd.to_datetime"
            )
        if col.isna().any():
            raise ValueError(f"column 'timestamp' has {int(col.isna().sum())} missing values")
        return pd.to_datetime(col, unit=timestamp_unit).astype("datetime64[ns]")
    n_missing = int(col.isna().sum())
    if n_missing:
        raise ValueError(
            f"column 'timestamp' has {n_missing} missing values; drop those rows before validating"
        )
    parsed = pd.to_datetime(col, errors="coerce", utc=True, format="mixed")
    bad = parsed.isna()
    if bad.any():
        example = col[bad].iloc[0]
        raise ValueError(
            f"column 'timestamp' has {int(bad.sum())} unparseable values, e.g. {example!r}; "
            f"use ISO dates like '2011-12-01 08:26' or pass timestamp_unit for epoch numbers"
        )
    return parsed.dt.tz_localize(None).astype("datetime64[ns]")


def _numeric(df: pd.DataFrame, name: str) -> pd.Series:
    col = df[name]
    if pd.api.types.is_bool_dtype(col):
        return col.astype("float64")
    if not pd.api.types.is_numeric_dtype(col):
        converted = pd.to_numeric(col, errors="coerce")
        if (converted.isna() & col.notna()).any():
            example = col[converted.isna() & col.notna()].iloc[0]
            raise ValueError(
                f"column '{name}' must be numeric; found {example!r}. Convert it or drop the column"
            )
        col = converted
    n_missing = int(col.isna().sum())
    if n_missing:
        raise ValueError(f"column '{name}' has {n_missing} missing values; drop or fill those rows")
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
) -> pd.DataFrame:
    """Rename, check and clean an event log; return a copy sorted by timestamp.

    columns: your column names -> schema names, e.g. ``{"CustomerID": "user_id"}``.
    event_map: event value -> weight; weight 0 gives ``label`` 0, a positive weight ``label`` 1
        and the weight is kept in a ``weight`` column.
    timestamp_unit: unit of numeric (epoch) timestamps, e.g. ``"s"`` or ``"ms"``.
    k_support, n_query: when given, at least ``min_task_users`` users must have
        ``k_support + n_query`` events, so tasks can be cut.
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
            f"pass columns={{'<your name>': '{missing[0]}'}}"
        )
    if len(df) == 0:
        raise ValueError("events is empty (0 rows); nothing to validate")
    df = df.copy()
    for name in ("user_id", "item_id"):
        _check_ids(df, name)
    df["timestamp"] = _parse_timestamps(df["timestamp"], timestamp_unit)

    if event_map is not None:
        df = _apply_event_map(df, event_map)
    if "label" in df.columns:
        label = _numeric(df, "label")
        bad = sorted({v.item() if hasattr(v, "item") else v for v in label.unique()} - {0, 1})
        if bad:
            raise ValueError(
                f"column 'label' must be 0 or 1; found values {bad[:5]}. Binarise it "
                f"(e.g. rating >= 4) or put it in 'rating'"
            )
        df["label"] = label.astype("int64")
    for name in ("rating", "price", "weight"):
        if name in df.columns:
            df[name] = _numeric(df, name).astype("float64")
    if "price" in df.columns and (df["price"] < 0).any():
        raise ValueError(
            f"column 'price' has {int((df['price'] < 0).sum())} negative values; prices must be >= 0"
        )
    if "quantity" in df.columns:
        quantity = _numeric(df, "quantity")
        n_bad = int((quantity <= 0).sum())
        if n_bad:
            raise ValueError(
                f"column 'quantity' has {n_bad} zero or negative values (returns or "
                f"cancellations?); drop those rows before validating"
            )
        df["quantity"] = quantity
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


def _vocabulary(values: pd.Series) -> pd.Index:
    uniques = pd.unique(values.to_numpy())
    try:
        return pd.Index(np.sort(uniques))
    except TypeError:  # mixed types: keep first-seen order
        return pd.Index(uniques)


def _encode(vocab: pd.Index, values) -> np.ndarray:
    codes = vocab.get_indexer(pd.Index(values))
    return (codes + 1).astype(np.int64)  # -1 (unseen) -> 0 = UNKNOWN


def _standardise(x: np.ndarray) -> np.ndarray:
    std = x.std()
    return (x - x.mean()) / (std if std > 0 else 1.0)


@dataclass
class Encoders:
    """Vocabularies (raw id -> code, 0 = unknown) and per-item features learned from a log."""

    items: pd.Index
    categories: pd.Index
    scenarios: pd.Index
    item_category: np.ndarray  # (n_items + 1,) category code of each item code
    item_dense: np.ndarray  # (n_items + 1, n_dense) float32
    item_first_seen: np.ndarray  # (n_items + 1,) datetime64[ns]; NaT for code 0
    dense_names: tuple[str, ...]
    users: pd.Index | None = None  # None: batches carry no user feature

    def with_users(self, events: pd.DataFrame) -> "Encoders":
        """A copy that also encodes users: every ``user_id`` of ``events`` gets a code.

        Pass the log whose users a model may know (e.g. the training period only): any other
        user, such as one who arrives later, maps to code 0, the shared "unknown user".
        Batches built with the copy carry ``x["user"]`` and its ``spec.n_users`` is > 0.
        """
        if "user_id" not in events:
            raise ValueError(f"column 'user_id' is missing; found {list(events.columns)}")
        return replace(self, users=_vocabulary(events["user_id"]))

    @classmethod
    def fit(
        cls, events: pd.DataFrame, item_feature_columns: Sequence[str] = ()
    ) -> "Encoders":
        """Learn vocabularies and item features from a validated event log.

        Fit on the log whose items the catalog should know (e.g. all items, or only those of
        the training period); anything else maps to code 0.
        """
        missing = [c for c in ("item_id", "timestamp", *item_feature_columns) if c not in events]
        if missing:
            raise ValueError(f"column '{missing[0]}' is missing; found {list(events.columns)}")
        items = _vocabulary(events["item_id"])
        codes = _encode(items, events["item_id"])
        n = len(items) + 1
        by_item = pd.DataFrame({"code": codes})
        if "category" in events:
            categories = _vocabulary(events["category"])
            by_item["category"] = _encode(categories, events["category"])
        else:
            categories = pd.Index([])
            by_item["category"] = UNKNOWN
        scenarios = _vocabulary(events["scenario"]) if "scenario" in events else pd.Index([])
        item_category = np.zeros(n, dtype=np.int64)
        # An item's category is its most frequent one in the log.
        mode = by_item.groupby(["code", "category"]).size().reset_index(name="n")
        mode = mode.sort_values(["code", "n"], ascending=[True, False], kind="stable")
        mode = mode.drop_duplicates("code")
        item_category[mode["code"].to_numpy()] = mode["category"].to_numpy()

        dense_cols = []
        names = ["log_price", *item_feature_columns]
        for name in names:
            column = np.zeros(n, dtype=np.float64)
            source = "price" if name == "log_price" else name
            if source in events:
                values = _numeric(events, source).to_numpy(dtype=np.float64)
                if name == "log_price":
                    values = np.log1p(np.clip(values, 0, None))
                per_item = pd.Series(values).groupby(codes).median()
                column[per_item.index.to_numpy()] = _standardise(per_item.to_numpy())
            dense_cols.append(column)
        item_dense = np.stack(dense_cols, axis=1).astype(np.float32)
        item_dense[UNKNOWN] = 0.0

        first = pd.Series(events["timestamp"].to_numpy()).groupby(codes).min()
        first_seen = np.full(n, np.datetime64("NaT"), dtype="datetime64[ns]")
        first_seen[first.index.to_numpy()] = first.to_numpy()
        return cls(items, categories, scenarios, item_category, item_dense, first_seen, tuple(names))

    @property
    def spec(self) -> FeatureSpec:
        """Embedding-table sizes (each includes the reserved code 0)."""
        return FeatureSpec(
            n_items=len(self.items) + 1,
            n_categories=len(self.categories) + 1,
            n_scenarios=len(self.scenarios) + 1,
            n_dense=self.item_dense.shape[1],
            n_users=0 if self.users is None else len(self.users) + 1,
        )

    def encode_users(self, user_ids) -> np.ndarray:
        """Raw user ids -> codes (0 for unseen ids); requires :meth:`with_users`."""
        if self.users is None:
            raise ValueError("these encoders have no user vocabulary; call encoders.with_users(events) first")
        return _encode(self.users, user_ids)

    def encode_items(self, item_ids) -> np.ndarray:
        """Raw item ids -> codes (0 for unseen ids)."""
        return _encode(self.items, item_ids)

    def encode_scenarios(self, scenarios) -> np.ndarray:
        """Raw scenarios -> codes (0 for unseen values or a log without scenarios)."""
        return _encode(self.scenarios, scenarios)

    def decode_items(self, codes) -> np.ndarray:
        """Codes -> raw item ids (None for code 0)."""
        codes = np.asarray(codes)
        raw = np.asarray(self.items, dtype=object)[np.clip(codes - 1, 0, None)]
        raw[codes == UNKNOWN] = None
        return raw

    def catalog(self, device: torch.device | str = "cpu") -> "ItemCatalog":
        """All known items with their features, for full ranking."""
        n = len(self.items) + 1
        return ItemCatalog(
            item=torch.arange(n, dtype=torch.int64, device=device),
            category=torch.as_tensor(self.item_category, device=device),
            dense=torch.as_tensor(self.item_dense, device=device),
            first_seen=self.item_first_seen,
        )


@dataclass
class ItemCatalog:
    """Every item code with its features; row ``i`` is item code ``i`` (row 0 = unknown)."""

    item: Tensor  # (n_items,) int64, equal to arange(n_items)
    category: Tensor  # (n_items,) int64
    dense: Tensor  # (n_items, n_dense) float32
    first_seen: np.ndarray  # (n_items,) datetime64[ns], NaT for code 0

    @property
    def n_items(self) -> int:
        return int(self.item.shape[0])

    @property
    def device(self) -> torch.device:
        return self.item.device

    def features(self, scenario: Tensor, user: Tensor | None = None) -> dict[str, Tensor]:
        """Feature dict for scoring every item in every task: leaves ``(tasks, n_items, ...)``.

        scenario: ``(tasks,)`` scenario code of each task (its shopping context); user:
        ``(tasks,)`` user code of each task, for models with a user feature. The leaves are
        expanded views (no copies), so memory stays ``O(n_items)``.
        """
        if scenario.dim() != 1:
            raise ValueError(f"scenario must have shape (tasks,), got {tuple(scenario.shape)}")
        if user is not None and tuple(user.shape) != tuple(scenario.shape):
            raise ValueError(f"user must have shape {tuple(scenario.shape)} like scenario, got {tuple(user.shape)}")
        tasks, n = scenario.shape[0], self.n_items
        scenario = scenario.to(self.device, torch.int64)
        features = {
            "item": self.item.expand(tasks, n),
            "category": self.category.expand(tasks, n),
            "scenario": scenario[:, None].expand(tasks, n),
            "dense": self.dense.expand(tasks, n, self.dense.shape[1]),
        }
        if user is not None:
            features["user"] = user.to(self.device, torch.int64)[:, None].expand(tasks, n)
        return features

    def available(self, before: pd.Timestamp | str | None = None) -> Tensor:
        """Bool ``(n_items,)``: known items (code > 0) first seen strictly before ``before``."""
        mask = np.ones(self.n_items, dtype=bool)
        mask[UNKNOWN] = False
        if before is not None:
            mask &= self.first_seen < np.datetime64(pd.Timestamp(before), "ns")
        return torch.as_tensor(mask, device=self.device)


__all__ = [
    "OPTIONAL_COLUMNS",
    "REQUIRED_COLUMNS",
    "UNKNOWN",
    "Encoders",
    "ItemCatalog",
    "validate_events",
]
