"""Profile an event log before choosing a protocol: how many users are new, how long histories are.

``profile = profile_log(events)`` gathers in one :class:`LogProfile` what decides which cold-start
protocol a log supports: its size and time span, events per user (quantiles), how many users first
appear after candidate cut times, baskets (when ``session_id`` exists), repeat purchases, event
types and label balance. ``profile.summary()`` is a flat dict of numbers to glue into prose;
``profile.new_users_after_cut`` and ``profile.events_per_user`` are small tables to plot.

Repeat purchases are measured on *positive* events (``label == 1`` when a label exists, else every
event), in two ways:

- ``repeat_pair_share``: share of (user, item) pairs with more than one positive event;
- ``repeat_event_share``: share of positive events whose (user, item) pair already had a positive
  event earlier in the log (in time order; ties keep log order, so a line listed twice in one
  basket counts once as a repeat).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from metarec_ref.data.logstats import check_event_log

EVENTS_PER_USER_QUANTILES = {"min": 0.0, "p10": 0.1, "p25": 0.25, "p50": 0.5, "p75": 0.75, "p90": 0.9,
                             "max": 1.0}


@dataclass
class LogProfile:
    """What :func:`profile_log` found; ``summary()`` flattens it for glue."""

    events: int
    users: int
    items: int
    first: pd.Timestamp
    last: pd.Timestamp
    days: float
    events_per_user: pd.Series  # index min, p10, p25, p50, p75, p90, max
    new_users_after_cut: pd.DataFrame  # cut_quantile, cut_time, new_users, share_of_users
    repeat_pair_share: float
    repeat_event_share: float
    baskets: dict[str, float] | None = None  # only with a session_id column
    event_counts: pd.Series | None = None  # only with an event column
    label_balance: dict[str, float] | None = None  # only with a label column

    def summary(self) -> dict[str, float | int | str]:
        """Flat ``name -> number`` dict (names safe for glue keys)."""
        out: dict[str, float | int | str] = {
            "events": self.events,
            "users": self.users,
            "items": self.items,
            "first": str(self.first),
            "last": str(self.last),
            "days": self.days,
        }
        for name, value in self.events_per_user.items():
            out[f"events_per_user_{name}"] = float(value)
        for row in self.new_users_after_cut.itertuples(index=False):
            key = f"q{round(row.cut_quantile * 100):02d}"
            out[f"new_users_after_{key}"] = int(row.new_users)
            out[f"share_new_users_after_{key}"] = float(row.share_of_users)
        out["repeat_pair_share"] = self.repeat_pair_share
        out["repeat_event_share"] = self.repeat_event_share
        for name, value in (self.baskets or {}).items():
            out[name] = value
        if self.event_counts is not None:
            for name, value in self.event_counts.items():
                out[f"event_{name}"] = int(value)
        for name, value in (self.label_balance or {}).items():
            out[name] = value
        return out

    def to_frame(self) -> pd.DataFrame:
        """``summary()`` as a one-column table (``statistic -> value``) to print."""
        summary = self.summary()
        return pd.DataFrame({"value": list(summary.values())},
                            index=pd.Index(list(summary), name="statistic"))


def _positive(events: pd.DataFrame) -> pd.DataFrame:
    return events[events["label"] == 1] if "label" in events.columns else events


def _repeat_shares(events: pd.DataFrame) -> tuple[float, float]:
    positive = _positive(events)
    if positive.empty:
        return 0.0, 0.0
    ordered = positive.sort_values("timestamp", kind="stable")
    pairs = ordered.groupby(["user_id", "item_id"], sort=False).size()
    repeated_event = ordered.duplicated(["user_id", "item_id"], keep="first")
    return float((pairs > 1).mean()), float(repeated_event.mean())


def _basket_stats(events: pd.DataFrame) -> dict[str, float]:
    # A basket is a (user, session) pair: session ids may repeat across users in some exports.
    per_basket = events.groupby(["user_id", "session_id"], sort=False)["item_id"].nunique()
    per_user = per_basket.groupby(level="user_id").size()
    return {
        "baskets": int(len(per_basket)),
        "mean_items_per_basket": float(per_basket.mean()),
        "mean_baskets_per_user": float(per_user.mean()),
        "median_baskets_per_user": float(per_user.median()),
        "share_users_one_basket": float((per_user == 1).mean()),
    }


def new_users_after_cuts(events: pd.DataFrame, cut_quantiles: Sequence[float]) -> pd.DataFrame:
    """Per candidate cut quantile of time: the cut time and the users first seen at or after it.

    "At or after" matches :func:`~metarec_ref.data.splits.temporal_cold_start_split`.
    """
    bad = [q for q in cut_quantiles if not 0.0 < q < 1.0]
    if bad:
        raise ValueError(f"cut_quantiles must lie in (0, 1); got {bad}")
    user_first = events.groupby("user_id", sort=False)["timestamp"].min()
    rows = []
    for q in cut_quantiles:
        cut = pd.Timestamp(events["timestamp"].quantile(q))
        new = int((user_first >= cut).sum())
        rows.append({"cut_quantile": float(q), "cut_time": cut, "new_users": new,
                     "share_of_users": new / len(user_first)})
    return pd.DataFrame(rows, columns=["cut_quantile", "cut_time", "new_users", "share_of_users"])


def profile_log(
    events: pd.DataFrame, *, cut_quantiles: Sequence[float] = (0.5, 0.6, 0.7, 0.8, 0.9)
) -> LogProfile:
    """Describe a validated event log (see :mod:`metarec_ref.data.schema`) in one :class:`LogProfile`.

    cut_quantiles: candidate cut times, as quantiles of the timestamps, at which to count new users.
    """
    check_event_log(events, "profile")
    times = events["timestamp"]
    first, last = pd.Timestamp(times.min()), pd.Timestamp(times.max())
    counts = events.groupby("user_id", sort=False).size()
    per_user = pd.Series({name: float(np.quantile(counts.to_numpy(), q))
                          for name, q in EVENTS_PER_USER_QUANTILES.items()}, name="events_per_user")
    pair_share, event_share = _repeat_shares(events)
    label_balance = None
    if "label" in events.columns:
        positives = int((events["label"] == 1).sum())
        label_balance = {"positives": positives, "negatives": int(len(events) - positives),
                         "positive_share": positives / len(events)}
    event_counts = None
    if "event" in events.columns:
        event_counts = events["event"].astype(str).value_counts().rename("events")
    return LogProfile(
        events=int(len(events)),
        users=int(len(counts)),
        items=int(events["item_id"].nunique()),
        first=first,
        last=last,
        days=(last - first) / pd.Timedelta(days=1),
        events_per_user=per_user,
        new_users_after_cut=new_users_after_cuts(events, cut_quantiles),
        repeat_pair_share=pair_share,
        repeat_event_share=event_share,
        baskets=_basket_stats(events) if "session_id" in events.columns else None,
        event_counts=event_counts,
        label_balance=label_balance,
    )


__all__ = ["LogProfile", "new_users_after_cuts", "profile_log"]
