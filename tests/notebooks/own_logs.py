"""Event logs shaped like the ones readers bring, for chapter 8's tests.

Each writer varies what real logs vary: layout and column names, separator, compression, time
unit, history lengths, whether users arrive over time, baskets, returns, event types. Users
prefer the items of one of a few segments, so there is something to learn.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

START = pd.Timestamp("2023-01-02")


def _segment_items(rng: np.random.Generator, n_items: int, n_segments: int, segment: np.ndarray) -> np.ndarray:
    """One item per entry of ``segment``: mostly from that segment (Zipf within it), sometimes any item."""
    per_segment = n_items // n_segments
    rank = np.minimum(rng.zipf(1.6, size=len(segment)) - 1, per_segment - 1)
    own = segment * per_segment + rank
    anywhere = rng.integers(0, n_items, size=len(segment))
    return np.where(rng.random(len(segment)) < 0.7, own, anywhere)


def write_purchase_panel(path: Path, n_households: int = 1200, n_products: int = 800, seed: int = 0) -> dict:
    """A year of baskets of households who are all there from the first week; some returns.

    Layout of a retail panel export: household_key, BASKET_ID, PRODUCT_ID, DAY (a date), QUANTITY
    (negative for returns), SALES_VALUE; comma-separated, gzip-compressed.
    """
    rng = np.random.default_rng(seed)
    rows = []
    basket_id = 0
    for household in range(n_households):
        segment = rng.integers(0, 8)
        n_baskets = 2 + rng.poisson(6)
        days = np.sort(np.concatenate([[rng.integers(0, 7)], rng.integers(7, 365, size=n_baskets - 1)]))
        for day in days:
            size = 1 + rng.poisson(3)
            items = np.unique(_segment_items(rng, n_products, 8, np.full(size, segment)))
            basket_id += 1
            for item in items:
                quantity = -1 if rng.random() < 0.02 else 1 + rng.poisson(0.5)
                rows.append((household, basket_id, f"P{item:05d}", (START + pd.Timedelta(days=int(day))).date(),
                             quantity, round(quantity * rng.uniform(0.5, 9.0), 2)))
    frame = pd.DataFrame(rows, columns=["household_key", "BASKET_ID", "PRODUCT_ID", "DAY", "QUANTITY", "SALES_VALUE"])
    frame.to_csv(path, index=False, compression="gzip")
    return {"rows": len(frame), "returns": int((frame["QUANTITY"] <= 0).sum()),
            "households": n_households}


def write_review_log(path: Path, n_users: int = 3000, n_items: int = 2000, seed: int = 1) -> dict:
    """A short "5-core" review log: every user has 5 to 7 reviews; epoch seconds; tab-separated."""
    rng = np.random.default_rng(seed)
    counts = rng.integers(5, 8, size=n_users)
    users = np.repeat(np.arange(n_users), counts)
    segment = rng.integers(0, 10, size=n_users)[users]
    items = _segment_items(rng, n_items, 10, segment)
    base = int(START.timestamp())
    first = rng.integers(0, 300 * 86_400, size=n_users)[users]
    times = base + first + rng.integers(0, 60 * 86_400, size=len(users))
    frame = pd.DataFrame({"user_id": [f"A{u:06d}" for u in users], "item_id": [f"B{i:05d}" for i in items],
                          "rating": rng.integers(1, 6, size=len(users)), "time": times})
    frame.to_csv(path, index=False, sep="\t")
    return {"rows": len(frame), "users": n_users}


def write_clickstream(path: Path, n_visitors: int = 4000, n_items: int = 600, seed: int = 2) -> dict:
    """Views, carts and purchases of visitors who keep arriving; epoch milliseconds; semicolons.

    Each visitor is active for about two weeks after arriving, so a cut late in time leaves many
    visitors who are entirely new.
    """
    rng = np.random.default_rng(seed)
    arrival = np.sort(rng.uniform(0, 200, size=n_visitors))  # days
    rows = []
    for visitor in range(n_visitors):
        segment = rng.integers(0, 6)
        n_events = 8 + rng.poisson(10)
        days = arrival[visitor] + np.sort(rng.uniform(0, 14, size=n_events))
        items = _segment_items(rng, n_items, 6, np.full(n_events, segment))
        kind = rng.choice(["view", "addtocart", "transaction"], size=n_events, p=[0.7, 0.2, 0.1])
        millis = (START.timestamp() + days * 86_400) * 1000
        rows += zip([visitor] * n_events, millis.astype(np.int64), kind, items)
    frame = pd.DataFrame(rows, columns=["visitorid", "timestamp", "event", "itemid"])
    frame.to_csv(path, index=False, sep=";")
    return {"rows": len(frame), "visitors": n_visitors}


__all__ = ["write_clickstream", "write_purchase_panel", "write_review_log"]
