"""Temporal cold-start protocol: who and what is new after a cut time, and who is held out.

``split = temporal_cold_start_split(events, cut_quantile=0.8)`` picks a cut time ``T`` (a quantile
of the timestamps) and labels users and items as *existing* (first event before ``T``) or *new*
(first event at or after ``T``). Then:

- ``split.train``: events before ``T``; by construction only existing users and items. This is
  all meta-training may see.
- ``split.cells``: events at or after ``T`` in four cells: ``"new_user_existing_item"``,
  ``"existing_user_new_item"``, ``"new_user_new_item"`` and ``"warm"`` (existing x existing).
- New users are ordered by their first event: the earlier half are *validation* users, the later
  half *test* users. ``split.test_start`` is the first event of the first test user.
  ``split.valid`` holds validation users' events before ``test_start`` (for tuning);
  ``split.test`` holds every event of test users (touched once, at the end). So no test user and
  no event at or after ``test_start`` reaches meta-training or tuning.

:func:`holdout_users` splits (training) events by user, e.g. to fit an item-item similarity on
other users than those the meta-training tasks are cut from.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

CELLS = ("new_user_existing_item", "existing_user_new_item", "new_user_new_item", "warm")


@dataclass
class ColdStartSplit:
    """The result of :func:`temporal_cold_start_split`."""

    cut_time: pd.Timestamp
    test_start: pd.Timestamp
    train: pd.DataFrame
    valid: pd.DataFrame
    test: pd.DataFrame
    existing_users: np.ndarray
    new_users: np.ndarray
    valid_users: np.ndarray
    test_users: np.ndarray
    existing_items: np.ndarray
    new_items: np.ndarray
    cells: dict[str, pd.DataFrame] = field(default_factory=dict)

    def summary(self) -> pd.DataFrame:
        """Events and users in each part, as a small table for the book."""
        parts = {"train": self.train, "valid": self.valid, "test": self.test, **self.cells}
        return pd.DataFrame(
            {
                "events": [len(df) for df in parts.values()],
                "users": [df["user_id"].nunique() for df in parts.values()],
                "items": [df["item_id"].nunique() for df in parts.values()],
            },
            index=pd.Index(list(parts), name="part"),
        )


def temporal_cold_start_split(
    events: pd.DataFrame,
    cut_quantile: float = 0.8,
    *,
    cut_time: pd.Timestamp | str | None = None,
    valid_fraction: float = 0.5,
) -> ColdStartSplit:
    """Split a validated log at ``T`` = the ``cut_quantile`` of timestamps (or ``cut_time``)."""
    missing = [c for c in ("user_id", "item_id", "timestamp") if c not in events.columns]
    if missing:
        raise ValueError(f"column '{missing[0]}' is missing; run validate_events first")
    if not 0.0 < cut_quantile < 1.0:
        raise ValueError(f"cut_quantile must be in (0, 1), got {cut_quantile}")
    if not 0.0 < valid_fraction < 1.0:
        raise ValueError(f"valid_fraction must be in (0, 1), got {valid_fraction}")
    times = events["timestamp"]
    cut = pd.Timestamp(cut_time) if cut_time is not None else times.quantile(cut_quantile)
    cut = pd.Timestamp(cut)

    user_first = events.groupby("user_id", sort=True)["timestamp"].min()
    item_first = events.groupby("item_id", sort=True)["timestamp"].min()
    new_user_first = user_first[user_first >= cut].sort_values(kind="stable")
    if len(new_user_first) < 2:
        raise ValueError(
            f"only {len(new_user_first)} user(s) first appear after the cut time {cut}; "
            f"lower cut_quantile (now {cut_quantile}) so that new users exist"
        )
    # The later part are test users; users tied with the first test user join the test side,
    # so every validation event can be kept strictly before test_start.
    n_valid = max(1, int(len(new_user_first) * valid_fraction))
    test_start = new_user_first.iloc[min(n_valid, len(new_user_first) - 1)]
    valid_users = new_user_first.index[new_user_first < test_start].to_numpy()
    test_users = new_user_first.index[new_user_first >= test_start].to_numpy()
    if len(valid_users) == 0:
        raise ValueError(
            "all new users share one first-event time; no validation users can be separated"
        )

    existing_user = events["user_id"].map(user_first < cut).to_numpy(dtype=bool)
    existing_item = events["item_id"].map(item_first < cut).to_numpy(dtype=bool)
    before = (times < cut).to_numpy()
    after = ~before
    cells = {
        "new_user_existing_item": events[after & ~existing_user & existing_item],
        "existing_user_new_item": events[after & existing_user & ~existing_item],
        "new_user_new_item": events[after & ~existing_user & ~existing_item],
        "warm": events[after & existing_user & existing_item],
    }
    is_valid = events["user_id"].isin(valid_users).to_numpy()
    is_test = events["user_id"].isin(test_users).to_numpy()
    return ColdStartSplit(
        cut_time=cut,
        test_start=pd.Timestamp(test_start),
        train=events[before],
        valid=events[is_valid & (times < test_start).to_numpy()],
        test=events[is_test],
        existing_users=user_first.index[user_first < cut].to_numpy(),
        new_users=new_user_first.index.to_numpy(),
        valid_users=valid_users,
        test_users=test_users,
        existing_items=item_first.index[item_first < cut].to_numpy(),
        new_items=item_first.index[item_first >= cut].to_numpy(),
        cells=cells,
    )


def holdout_users(events: pd.DataFrame, fraction: float = 0.3, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split events by user: ``(fit_events, task_events)``; ``fraction`` of users go to the tasks.

    Fit an item-item similarity on ``fit_events`` and cut meta-training tasks from
    ``task_events``, so a task's own co-purchases are not inside the similarity it reads.
    """
    if not 0 < fraction < 1:
        raise ValueError(f"fraction must be in (0, 1), got {fraction}")
    users = np.sort(pd.unique(events["user_id"]))
    rng = np.random.default_rng(seed)
    chosen = rng.random(len(users)) < fraction
    is_task = events["user_id"].isin(users[chosen]).to_numpy()
    return events[~is_task], events[is_task]


__all__ = ["CELLS", "ColdStartSplit", "holdout_users", "temporal_cold_start_split"]
