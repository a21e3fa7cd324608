"""Loaders: public e-commerce and rating logs -> validated event logs (see ``metarec_ref.data.schema``).

- ``load_events(path, columns=..., sep=None, encoding=None)``: any CSV / TSV / Parquet / JSON-lines
  file (gzip too; see :mod:`metarec_ref.data.reading`) with a column mapping; every bad input is a
  clear error naming the file.
- ``load_online_retail(path=None)``: UCI Online Retail (``Online Retail.xlsx`` or a Parquet / CSV
  conversion), found from ``path``, ``$METAREC_DATA_DIR`` or the cache that ``make data`` fills
  (:func:`~metarec_ref.data.fetch.find_online_retail`). Cleaning: drop cancellations
  (``InvoiceNo`` starting with ``C``), rows without ``CustomerID``, non-positive ``Quantity`` and,
  by default, non-product codes (postage, manual entries, fees); exact duplicate rows are dropped
  by validation. ``Country`` -> ``scenario``, ``InvoiceNo`` -> ``session_id``, ``UnitPrice`` ->
  ``price``; from ``Description``: ``category`` (the product noun, see :func:`product_noun`) and
  ``desc_words`` (number of words).
- ``load_retailrocket`` (``events.csv``), ``load_taobao`` (``UserBehavior.csv``, no header),
  ``load_amazon_reviews`` (JSON lines), ``load_movielens`` (``ratings.dat`` or ``ratings.csv``).

Every loader forwards extra keyword arguments to :func:`~metarec_ref.data.validate_events`
(e.g. ``event_map``, ``k_support``).
"""

from __future__ import annotations

import inspect
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from metarec_ref.data.fetch import DATA_DIR_ENV, ONLINE_RETAIL_COLUMNS, find_online_retail
from metarec_ref.data.reading import read_table
from metarec_ref.data.schema import validate_events

# Stock codes that are not products: postage, manual entries, fees, samples.
NON_PRODUCT_CODES = frozenset({"POST", "DOT", "M", "m", "C2", "D", "S", "B", "PADS", "CRUK",
                               "BANK CHARGES", "AMAZONFEE"})
RETAILROCKET_EVENT_MAP = {"view": 0.0, "addtocart": 1.0, "transaction": 1.0}
ID_COLUMNS = ("user_id", "item_id", "session_id")  # read as the file wrote them (text)
ONLINE_RETAIL_RULES = ("cancellations", "no customer id", "quantity <= 0", "non-product codes")
TAOBAO_EVENT_MAP = {"pv": 0.0, "fav": 1.0, "cart": 1.0, "buy": 1.0}
_VALIDATE_OPTIONS = frozenset(inspect.signature(validate_events).parameters) - {"events", "columns"}
# Words that describe a product's look rather than what it is; product_noun skips them.
_MODIFIERS = frozenset(
    """RED PINK WHITE BLUE GREEN CREAM BLACK IVORY GOLD SILVER PURPLE YELLOW ORANGE BROWN GREY
    LARGE SMALL MINI JUMBO BIG TINY RETROSPOT POLKADOT PAISLEY SPACEBOY WOODLAND DESIGN DESIGNS
    ASSORTED LONDON VINTAGE RETRO SPOTTY SPOT HEART HEARTS CHRISTMAS FLOWER FLORAL ROSE ROSES
    COLOUR COLOURS COLOURED CALM FINISH SET OF IN WITH AND THE A""".split()
)


def load_events(path: str | os.PathLike, columns: Mapping[str, str] | None = None, *,
                sep: str | None = None, encoding: str | None = None,
                read_kwargs: Mapping[str, Any] | None = None, **validate_kwargs) -> pd.DataFrame:
    """Read a log file, rename with ``columns`` and validate it (see :func:`validate_events`).

    Args:
        path: CSV / TSV / other delimited text, JSON lines, Parquet or Excel; text may be compressed
            (``.csv.gz``, ``.tsv.gz``, ``.jsonl.gz``, ``.bz2``, ``.xz``). See :func:`read_table`.
        columns: your column names -> schema names, e.g. ``{"CustomerID": "user_id"}``.
        sep: separator of delimited text; by default comma, tab or semicolon is detected from the
            first lines. Pass it when detection guesses wrong, e.g. ``sep="|"``.
        encoding: text encoding; UTF-8 by default (UTF-16 with a byte-order mark is recognised).
            A file that is not UTF-8 is reported; pass e.g. ``encoding="latin-1"`` or ``"cp1252"``.
        read_kwargs: further options for the pandas reader, e.g. ``{"decimal": ","}``.
        **validate_kwargs: go to :func:`validate_events`, e.g. ``event_map``, ``timestamp_unit``
            (``"s"`` / ``"ms"`` for epoch numbers; implausible dates name the likely unit),
            ``drop_nonpositive_quantity`` (drop returns with a warning instead of failing), ``k_support``.

    Returns:
        The validated event log, sorted by time. The id columns (``user_id``, ``item_id``,
        ``session_id``) are text exactly as the file wrote them: ``007``, ``07`` and ``7`` are three
        users, ``1`` and ``1.0`` two items.

    Raises:
        ValueError: every problem (``FileNotFoundError`` / ``IsADirectoryError`` for a wrong path),
            with a message that starts with the file's name and says the fix: an empty or
            header-only file, text that is not UTF-8, a broken JSON line (its number), a CSV line
            with too many fields, a repeated header name, a binary file, and every validation error
            (missing or misnamed columns, with a hint when the separator looks wrong; missing ids;
            inf values; dates outside 1980-2100, whether written as epoch numbers or ISO text;
            non-positive quantities; ...).
    """
    unknown = sorted(set(validate_kwargs) - _VALIDATE_OPTIONS)
    if unknown:
        raise TypeError(
            f"load_events got unknown option(s) {unknown}; validation takes {sorted(_VALIDATE_OPTIONS)}, "
            f"and options for the pandas reader go in read_kwargs={{...}}"
        )
    path = Path(path)
    raw = read_table(path, sep=sep, encoding=encoding, text_columns=[file_column(columns, name) for name in ID_COLUMNS],
                     **dict(read_kwargs or {}))
    if len(raw) == 0:
        raise ValueError(
            f"{path.name} has a header {list(raw.columns)} but no rows; export the log with its rows"
        )
    try:
        return validate_events(raw, columns, **validate_kwargs)
    except ValueError as err:
        raise ValueError(f"{path.name}: {err}") from None


def file_column(columns: Mapping[str, str] | None, schema_name: str) -> str:
    """The file's name of a schema column: the name ``columns`` maps onto it, else the schema name."""
    source = {schema: mine for mine, schema in (columns or {}).items()} if isinstance(columns, Mapping) else {}
    return source.get(schema_name, schema_name)


def product_noun(description: pd.Series) -> pd.Series:
    """The product type in an upper-case description: its last word that is not a colour,
    size or pattern ("WHITE HANGING HEART T-LIGHT HOLDER" -> "HOLDER"); "UNKNOWN" when empty."""
    text = description.fillna("").astype(str).str.upper()
    uniques = pd.unique(text.to_numpy())  # a few thousand descriptions for ~500k rows
    nouns = {}
    for desc in uniques:
        words = re.findall(r"[A-Z][A-Z\-]+", desc)
        nouns[desc] = next((w for w in reversed(words) if w not in _MODIFIERS),
                           words[-1] if words else "UNKNOWN")
    return text.map(nouns).astype(object)


def online_retail_rules(raw: pd.DataFrame, drop_non_products: bool = True) -> dict[str, np.ndarray]:
    """The Online Retail cleaning rules, in the order they apply: name -> the raw rows it drops (bool).

    ``cancellations`` (``InvoiceNo`` starting with ``C``), ``no customer id``, ``quantity <= 0``
    and ``non-product codes`` (:data:`NON_PRODUCT_CODES`; none when ``drop_non_products`` is
    False). :func:`clean_online_retail` keeps the rows no rule drops; the cleaning report of the
    Online Retail recipe counts them rule by rule. Exact duplicate rows are dropped by validation.
    """
    missing = [c for c in ONLINE_RETAIL_COLUMNS if c not in raw.columns]
    if missing:
        raise ValueError(
            f"Online Retail column '{missing[0]}' is missing; found {list(raw.columns)}. "
            f"Expected the original UCI columns {list(ONLINE_RETAIL_COLUMNS)}"
        )
    invoice = raw["InvoiceNo"].astype(str).str.strip()
    stock = raw["StockCode"].astype(str).str.strip()
    drops = (
        invoice.str.upper().str.startswith("C").to_numpy(dtype=bool),
        raw["CustomerID"].isna().to_numpy(),
        ~(pd.to_numeric(raw["Quantity"], errors="coerce") > 0).to_numpy(),
        stock.isin(NON_PRODUCT_CODES).to_numpy() & drop_non_products,
    )
    return dict(zip(ONLINE_RETAIL_RULES, drops))


def clean_online_retail(raw: pd.DataFrame, *, drop_non_products: bool = True,
                        **validate_kwargs) -> pd.DataFrame:
    """Raw Online Retail rows (original columns) -> a validated event log, after :func:`online_retail_rules`."""
    keep = ~np.logical_or.reduce(list(online_retail_rules(raw, drop_non_products).values()))
    invoice = raw["InvoiceNo"].astype(str).str.strip()
    stock = raw["StockCode"].astype(str).str.strip()
    df = raw[keep]
    # Missing descriptions: NaN in the original, the string "nan" in the Parquet conversion.
    description = df["Description"].fillna("").astype(str).str.strip()
    description = description.where(~description.isin(["nan", "None", ""]), "")
    events = pd.DataFrame(
        {
            "user_id": pd.to_numeric(df["CustomerID"]).astype(np.int64),
            "item_id": stock[keep].astype(str),
            "timestamp": pd.to_datetime(df["InvoiceDate"]),
            "quantity": pd.to_numeric(df["Quantity"]).astype(np.int64),
            "price": pd.to_numeric(df["UnitPrice"]).astype(np.float64),
            "scenario": df["Country"].astype(str),
            "session_id": invoice[keep].astype(str),
            "description": description,
            "category": product_noun(description).astype(str),
            "desc_words": description.str.count(r"\S+").astype(np.int64),
        }
    ).reset_index(drop=True)
    return validate_events(events, **validate_kwargs)


def read_online_retail(path: str | os.PathLike | None = None) -> pd.DataFrame:
    """The raw Online Retail rows (original columns) from ``path``, ``$METAREC_DATA_DIR`` or the cache."""
    file = find_online_retail(path)
    read_kwargs = {"dtype": {"InvoiceNo": str, "StockCode": str}} if file.suffix.lower() == ".csv" else {}
    return read_table(file, **read_kwargs)


def load_online_retail(path: str | os.PathLike | None = None, *, drop_non_products: bool = True,
                       **validate_kwargs) -> pd.DataFrame:
    """Load and clean UCI Online Retail from ``path``, ``$METAREC_DATA_DIR`` or the cache."""
    return clean_online_retail(read_online_retail(path), drop_non_products=drop_non_products, **validate_kwargs)


def _expect(raw: pd.DataFrame, names, source: str) -> None:
    missing = [c for c in names if c not in raw.columns]
    if missing:
        raise ValueError(f"{source}: column '{missing[0]}' is missing; found {list(raw.columns)}")


def load_retailrocket(path: str | os.PathLike, **validate_kwargs) -> pd.DataFrame:
    """RetailRocket ``events.csv`` (timestamp ms, visitorid, event, itemid, transactionid)."""
    raw = read_table(Path(path))
    _expect(raw, ("timestamp", "visitorid", "event", "itemid"), "RetailRocket events.csv")
    events = pd.DataFrame({
        "user_id": raw["visitorid"],
        "item_id": raw["itemid"],
        "timestamp": pd.to_datetime(raw["timestamp"], unit="ms"),
        "event": raw["event"].astype(str),
    })
    return validate_events(events, **validate_kwargs)


def load_taobao(path: str | os.PathLike, **validate_kwargs) -> pd.DataFrame:
    """Taobao ``UserBehavior.csv``: no header; user, item, category, behavior, unix seconds."""
    raw = read_table(Path(path), header=None)
    if raw.shape[1] != 5:
        raise ValueError(
            f"Taobao UserBehavior.csv must have 5 columns (user, item, category, behavior, "
            f"timestamp) and no header; found {raw.shape[1]}"
        )
    raw.columns = ["user_id", "item_id", "category", "event", "timestamp"]
    raw["event"] = raw["event"].astype(str)
    return validate_events(raw, timestamp_unit="s", **validate_kwargs)


def load_amazon_reviews(path: str | os.PathLike, **validate_kwargs) -> pd.DataFrame:
    """Amazon reviews, JSON lines (``reviewerID``, ``asin``, ``overall``, ``unixReviewTime``)."""
    # Ids such as ASIN "0000031887" must stay strings (leading zeros).
    raw = read_table(Path(path), dtype={"reviewerID": str, "asin": str})
    _expect(raw, ("reviewerID", "asin", "overall", "unixReviewTime"), "Amazon reviews")
    events = pd.DataFrame({
        "user_id": raw["reviewerID"].astype(str),
        "item_id": raw["asin"].astype(str),
        "timestamp": pd.to_datetime(raw["unixReviewTime"], unit="s"),
        "rating": raw["overall"].astype(np.float64),
    })
    return validate_events(events, **validate_kwargs)


def load_movielens(path: str | os.PathLike, **validate_kwargs) -> pd.DataFrame:
    """MovieLens ``ratings.dat`` (``::``-separated, ML-1M) or ``ratings.csv`` (ML-latest)."""
    path = Path(path)
    if path.suffix == ".dat":
        if not path.exists():
            raise FileNotFoundError(f"no file at {path}")
        raw = pd.read_csv(path, sep="::", engine="python", header=None,
                          names=["userId", "movieId", "rating", "timestamp"])
    else:
        raw = read_table(path)
    _expect(raw, ("userId", "movieId", "rating", "timestamp"), "MovieLens ratings")
    events = raw.rename(columns={"userId": "user_id", "movieId": "item_id"})
    return validate_events(events, timestamp_unit="s", **validate_kwargs)


__all__ = [
    "DATA_DIR_ENV",
    "NON_PRODUCT_CODES",
    "ONLINE_RETAIL_RULES",
    "RETAILROCKET_EVENT_MAP",
    "TAOBAO_EVENT_MAP",
    "clean_online_retail",
    "file_column",
    "find_online_retail",  # defined in metarec_ref.data.fetch; kept importable from here
    "load_amazon_reviews",
    "load_events",
    "load_movielens",
    "load_online_retail",
    "load_retailrocket",
    "load_taobao",
    "online_retail_rules",
    "product_noun",
    "read_online_retail",
    "read_table",  # defined in metarec_ref.data.reading; kept importable from here
]
