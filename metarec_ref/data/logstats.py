"""Descriptive statistics of an event log: how few events most users have, arrivals, long tails.

Each function takes a validated event log (see :mod:`metarec_ref.data.schema`) and returns a small
pandas object a chapter can print or plot.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from metarec_ref.data.schema import REQUIRED_COLUMNS


def check_event_log(events: pd.DataFrame, purpose: str = "describe") -> None:
    """ValueError unless ``events`` has the required columns and at least one row."""
    missing = [c for c in REQUIRED_COLUMNS if c not in events.columns]
    if missing:
        raise ValueError(
            f"columns {missing} are missing; found {list(events.columns)}. "
            "Pass a log from metarec_ref.data.validate_events or a loader"
        )
    if events.empty:
        raise ValueError(f"the event log is empty; nothing to {purpose}")


def events_per_user(events: pd.DataFrame) -> pd.Series:
    """Number of events of each user, sorted descending."""
    check_event_log(events)
    return events.groupby("user_id", sort=False).size().sort_values(ascending=False)


def activity_summary(events: pd.DataFrame, thresholds: tuple[int, ...] = (5, 10, 20)) -> dict:
    """Users, items, events, median events per user and the share of users at or below each threshold."""
    counts = events_per_user(events)
    summary = {
        "users": int(events["user_id"].nunique()),
        "items": int(events["item_id"].nunique()),
        "events": int(len(events)),
        "median_events_per_user": float(counts.median()),
    }
    for t in thresholds:
        summary[f"share_users_le_{t}"] = float((counts <= t).mean())
    return summary


def arrivals(events: pd.DataFrame, freq: str = "MS") -> pd.DataFrame:
    """Per period: events, new users and new items (first seen in it), and the share of events by new users.

    ``freq`` is a pandas offset alias (``"MS"`` month start, ``"W"`` week, ``"7D"`` ...).
    """
    check_event_log(events)
    try:
        period = events["timestamp"].dt.to_period(freq.removesuffix("S") or freq)
    except (ValueError, AttributeError) as err:
        raise ValueError(f"freq={freq!r} is not a pandas period alias; use 'MS', 'W' or 'D'") from err
    first_user = events.groupby("user_id")["timestamp"].transform("min").dt.to_period(period.dt.freq)
    first_item = events.groupby("item_id")["timestamp"].transform("min").dt.to_period(period.dt.freq)
    is_new_user = first_user == period
    table = pd.DataFrame(
        {
            "events": events.groupby(period).size(),
            "new_users": events.loc[is_new_user].groupby(period[is_new_user])["user_id"].nunique(),
            "new_items": events.loc[first_item == period]
            .groupby(period[first_item == period])["item_id"]
            .nunique(),
            "events_by_new_users": is_new_user.groupby(period).sum(),
        }
    ).fillna(0)
    table = table.astype({"events": int, "new_users": int, "new_items": int, "events_by_new_users": int})
    table["share_events_by_new_users"] = table["events_by_new_users"] / table["events"]
    table.index = table.index.to_timestamp()
    table.index.name = "period"
    return table


def popularity_curve(events: pd.DataFrame) -> pd.DataFrame:
    """Items by rank of popularity with the cumulative share of events (a Lorenz-style curve)."""
    check_event_log(events)
    counts = events.groupby("item_id", sort=False).size().sort_values(ascending=False)
    share = counts.to_numpy() / counts.sum()
    return pd.DataFrame(
        {
            "rank": np.arange(1, len(counts) + 1),
            "events": counts.to_numpy(),
            "item_share": np.arange(1, len(counts) + 1) / len(counts),
            "cumulative_event_share": np.cumsum(share),
        },
        index=counts.index,
    )


def top_share(events: pd.DataFrame, top_fraction: float = 0.1) -> float:
    """Share of all events that go to the most popular ``top_fraction`` of items."""
    if not 0 < top_fraction <= 1:
        raise ValueError(f"top_fraction must be in (0, 1], got {top_fraction}")
    curve = popularity_curve(events)
    n_top = max(1, int(np.ceil(top_fraction * len(curve))))
    return float(curve["cumulative_event_share"].iloc[n_top - 1])
