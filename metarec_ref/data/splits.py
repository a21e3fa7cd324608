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

:func:`first_seen` is that rule for any id column (the new-items protocol cuts items with it).
:func:`split_users` is the one held-out-users splitter: disjoint random groups of users (the
held-out-users protocol's train / validation / test users, or the users an item-item similarity is
fitted on and those the meta-training tasks are cut from).
"""

from __future__ import annotations

from collections.abc import Sequence
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


@dataclass
class FirstSeen:
    """The ids a log first shows at or after a cut time, split in time into validation and test ids."""

    first: pd.Series  # id -> its first timestamp, every id of the log (sorted by id)
    new: pd.Series  # the ids first seen at or after the cut -> that time, earliest first
    valid: np.ndarray  # the earlier new ids
    test: np.ndarray  # the later ones, with every id tied with the first of them
    test_start: pd.Timestamp  # the first event of the first test id


def first_seen(events: pd.DataFrame, column: str, cut: pd.Timestamp, valid_fraction: float = 0.5, *,
               fix: str = "lower cut_quantile") -> FirstSeen:
    """Split the ids of ``column`` first seen at or after ``cut``: the earlier ``valid_fraction`` validate.

    Ids tied with the first test id join the test side, so every validation event can be kept
    strictly before ``test_start``. ``fix`` ends the error raised when fewer than two new ids exist.
    """
    what = column.removesuffix("_id")
    first = events.groupby(column, sort=True)["timestamp"].min()
    new = first[first >= cut].sort_values(kind="stable")
    if len(new) < 2:
        raise ValueError(f"only {len(new)} {what}(s) first appear after the cut time {cut}; {fix}")
    test_start = new.iloc[min(max(1, int(len(new) * valid_fraction)), len(new) - 1)]
    valid, test = new.index[new < test_start].to_numpy(), new.index[new >= test_start].to_numpy()
    if len(valid) == 0:
        raise ValueError(f"all new {what}s share one first-event time; no validation {what}s can be separated")
    return FirstSeen(first, new, valid, test, pd.Timestamp(test_start))


def cut_time(events: pd.DataFrame, cut_quantile: float) -> pd.Timestamp:
    """The ``cut_quantile`` of a log's timestamps."""
    if not 0.0 < cut_quantile < 1.0:
        raise ValueError(f"cut_quantile must be in (0, 1), got {cut_quantile}")
    return pd.Timestamp(events["timestamp"].quantile(cut_quantile))


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
    cut = pd.Timestamp(cut_time) if cut_time is not None else _cut_time(events, cut_quantile)
    times = events["timestamp"]
    users = first_seen(events, "user_id", cut, valid_fraction,
                       fix=f"lower cut_quantile (now {cut_quantile}) so that new users exist")
    user_first, test_start = users.first, users.test_start
    item_first = events.groupby("item_id", sort=True)["timestamp"].min()

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
    is_valid = events["user_id"].isin(users.valid).to_numpy()
    is_test = events["user_id"].isin(users.test).to_numpy()
    return ColdStartSplit(
        cut_time=cut,
        test_start=test_start,
        train=events[before],
        valid=events[is_valid & (times < test_start).to_numpy()],
        test=events[is_test],
        existing_users=user_first.index[user_first < cut].to_numpy(),
        new_users=users.new.index.to_numpy(),
        valid_users=users.valid,
        test_users=users.test,
        existing_items=item_first.index[item_first < cut].to_numpy(),
        new_items=item_first.index[item_first >= cut].to_numpy(),
        cells=cells,
    )


_cut_time = cut_time  # the parameter of temporal_cold_start_split shadows the function's name


def _sorted_ids(values: pd.Series) -> np.ndarray:
    unique = pd.unique(values)
    try:
        return np.sort(unique)
    except TypeError:  # mixed id types: sort by a stable text form
        return np.array(sorted(unique, key=lambda v: (type(v).__name__, str(v))), dtype=object)


def split_users(events: pd.DataFrame, held_out: Sequence[float], seed: int = 0) -> tuple[pd.DataFrame, ...]:
    """Events of disjoint random groups of users: the rest, then one group per fraction of ``held_out``.

    The sorted user ids are shuffled with ``seed``; the last group takes the first
    ``round(fraction * users)`` of them (at least one), the group before it the next ones, and so
    on; the first group keeps every other user. ``split_users(events, (0.1, 0.1))`` gives
    ``(train, valid, test)`` as the held-out-users protocol cuts them;
    ``split_users(events, (0.3,))`` gives ``(fit_events, task_events)``: fit an item-item
    similarity on the first and cut meta-training tasks from the second, so a task's own
    co-purchases are not inside the similarity it reads.
    """
    held_out = list(held_out)
    if not held_out or min(held_out) <= 0 or sum(held_out) >= 1:
        raise ValueError(f"held_out fractions must be > 0 with a sum below 1, got {tuple(held_out)}; e.g. (0.1, 0.1)")
    users = _sorted_ids(events["user_id"])
    if len(users) < len(held_out) + 1:
        raise ValueError(f"the log has {len(users)} user(s); {len(held_out)} held-out group(s) and the rest "
                         f"need at least {len(held_out) + 1}")
    shuffled = users[np.random.default_rng(seed).permutation(len(users))]
    sizes = [max(1, round(fraction * len(users))) for fraction in held_out]
    if sum(sizes) >= len(users):
        raise ValueError(f"{len(users)} users leave none outside the held-out groups; lower the fractions {tuple(held_out)}")
    bounds = np.cumsum([0, *reversed(sizes)])  # the last group first
    groups = [shuffled[a:b] for a, b in zip(bounds[:-1], bounds[1:])][::-1]
    groups.insert(0, shuffled[bounds[-1]:])
    by_user = events["user_id"]
    return tuple(events[by_user.isin(group).to_numpy()] for group in groups)


__all__ = ["CELLS", "ColdStartSplit", "FirstSeen", "cut_time", "first_seen", "split_users", "temporal_cold_start_split"]
