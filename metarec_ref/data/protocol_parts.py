"""Cold-start protocols as train / validation / test event frames, and the builder of their tasks.

``parts = protocol_parts(events, "held_out_users", seed=0)`` cuts a validated log; then
``parts.build_all(k_support, n_query)`` gives ``{"train": Tasks, "valid": Tasks, "test": Tasks}``.

- ``"temporal_new_users"``: :func:`~metarec_ref.data.splits.temporal_cold_start_split`; users first
  seen at or after the cut are new, the earlier half of them validation users, the later half test
  users; training sees the events before the cut. One task per user (:func:`build_user_tasks`).
- ``"held_out_users"``: users split disjointly at random (``seed``) into train / validation / test;
  every user's task is cut from their whole history: support = earliest ``k_support`` events, query
  = the next events strictly later in time. The simulated cold start of panels where few users are
  new. Training users' events may be later in time than test users' events (the price of this
  protocol; say so when reporting).
- ``"new_items"``: items first seen at or after the cut; the earlier half validation items, the later
  half test items; one task per item (:func:`build_item_tasks`).
- ``"basket_completion"`` / ``"next_session"`` (need ``session_id``): the held-out user split with
  :func:`build_basket_tasks` / :func:`build_next_session_tasks`.

Query sets shorter than ``n_query`` (at least one event after the support) are kept: tasks are
built with ``min_query=1`` unless asked otherwise, and :func:`to_task_batch` pads and masks the
missing slots.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from metarec_ref.data.sessions import build_basket_tasks, build_next_session_tasks
from metarec_ref.data.splits import temporal_cold_start_split
from metarec_ref.data.tasks import Tasks, build_item_tasks, build_user_tasks

PROTOCOLS = ("temporal_new_users", "held_out_users", "new_items", "basket_completion", "next_session")
SESSION_PROTOCOLS = ("basket_completion", "next_session")
SPLIT_PARTS = ("train", "valid", "test")
PROTOCOL_BUILDERS: dict[str, Callable[..., Tasks]] = {
    "temporal_new_users": build_user_tasks,
    "held_out_users": build_user_tasks,
    "new_items": build_item_tasks,
    "basket_completion": build_basket_tasks,
    "next_session": build_next_session_tasks,
}


def check_protocol(protocol: str, allow_auto: bool = False) -> None:
    """ValueError listing the valid names unless ``protocol`` is one of :data:`PROTOCOLS` (or "auto")."""
    valid = (("auto",) if allow_auto else ()) + PROTOCOLS
    if protocol not in valid:
        raise ValueError(f"protocol must be one of {list(valid)}, got {protocol!r}")


@dataclass
class ProtocolParts:
    """Train / validation / test events of one protocol and the builder that cuts their tasks."""

    name: str
    entity: str  # "user_id" (one task per user) or "item_id" (one per item)
    train: pd.DataFrame
    valid: pd.DataFrame
    test: pd.DataFrame
    n_entities: int  # users (items) in the whole log
    description: str  # how the parts were cut, with numbers, for prose
    cut_time: pd.Timestamp | None = None

    def build_tasks(self, part: str, k_support: int, n_query: int, **kwargs) -> Tasks:
        """Tasks of one part (``"train"``, ``"valid"`` or ``"test"``); kwargs go to the builder.

        ``min_query`` defaults to 1: a short query set is kept, padded and masked downstream.
        """
        if part not in SPLIT_PARTS:
            raise ValueError(f"part must be one of {list(SPLIT_PARTS)}, got {part!r}")
        kwargs.setdefault("min_query", 1)
        return PROTOCOL_BUILDERS[self.name](getattr(self, part), k_support, n_query, **kwargs)

    def build_all(self, k_support: int, n_query: int, **kwargs) -> dict[str, Tasks]:
        """``{"train": Tasks, "valid": Tasks, "test": Tasks}``."""
        return {part: self.build_tasks(part, k_support, n_query, **kwargs) for part in SPLIT_PARTS}


def _sorted_unique(values: pd.Series) -> np.ndarray:
    unique = pd.unique(values)
    try:
        return np.sort(unique)
    except TypeError:  # mixed id types: sort by a stable text form
        return np.array(sorted(unique, key=lambda v: (type(v).__name__, str(v))), dtype=object)


def held_out_user_split(
    events: pd.DataFrame, val_fraction: float = 0.1, test_fraction: float = 0.1, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Disjoint ``(train_users, valid_users, test_users)``, drawn with ``seed`` from the sorted user ids."""
    if val_fraction <= 0 or test_fraction <= 0 or val_fraction + test_fraction >= 1:
        raise ValueError(
            f"val_fraction and test_fraction must be > 0 with a sum below 1, got {val_fraction} "
            f"and {test_fraction}; e.g. 0.1 and 0.1"
        )
    users = _sorted_unique(events["user_id"])
    if len(users) < 3:
        raise ValueError(f"the log has {len(users)} user(s); held-out users need at least 3")
    shuffled = users[np.random.default_rng(seed).permutation(len(users))]
    n_test = max(1, round(test_fraction * len(users)))
    n_valid = max(1, round(val_fraction * len(users)))
    if n_test + n_valid >= len(users):
        raise ValueError(f"{len(users)} users leave none for training; lower val_fraction / test_fraction")
    return shuffled[n_test + n_valid:], shuffled[n_test:n_test + n_valid], shuffled[:n_test]


def _new_item_parts(events: pd.DataFrame, cut_quantile: float) -> ProtocolParts:
    if not 0.0 < cut_quantile < 1.0:
        raise ValueError(f"cut_quantile must be in (0, 1), got {cut_quantile}")
    times = events["timestamp"]
    cut = pd.Timestamp(times.quantile(cut_quantile))
    item_first = events.groupby("item_id", sort=True)["timestamp"].min()
    new_first = item_first[item_first >= cut].sort_values(kind="stable")
    if len(new_first) < 2:
        raise ValueError(
            f"only {len(new_first)} item(s) first appear after the cut time {cut}; lower cut_quantile "
            f"(now {cut_quantile}) or use a longer log"
        )
    # As for new users: items tied with the first test item join the test side.
    test_start = new_first.iloc[min(max(1, len(new_first) // 2), len(new_first) - 1)]
    valid_items = new_first.index[new_first < test_start]
    test_items = new_first.index[new_first >= test_start]
    if len(valid_items) == 0:
        raise ValueError("all new items share one first-event time; no validation items can be separated")
    description = (f"{len(new_first)} items first appear after the cut at the {cut_quantile} quantile of "
                   f"time ({cut:%Y-%m-%d}): the earlier {len(valid_items)} are validation items, the later "
                   f"{len(test_items)} test items; training sees the events before the cut")
    return ProtocolParts(
        "new_items", "item_id",
        train=events[(times < cut).to_numpy()],
        valid=events[events["item_id"].isin(valid_items).to_numpy() & (times < test_start).to_numpy()],
        test=events[events["item_id"].isin(test_items).to_numpy()],
        n_entities=len(item_first), description=description, cut_time=cut,
    )


def protocol_parts(
    events: pd.DataFrame,
    protocol: str,
    *,
    cut_quantile: float = 0.8,
    val_fraction: float = 0.1,
    test_fraction: float = 0.1,
    seed: int = 0,
) -> ProtocolParts:
    """Cut a validated log into the train / validation / test events of ``protocol``.

    cut_quantile: cut time of the temporal protocols (quantile of the timestamps).
    val_fraction, test_fraction, seed: the held-out user split (held_out_users and the session
    protocols).
    """
    check_protocol(protocol)
    if protocol in SESSION_PROTOCOLS and "session_id" not in events.columns:
        raise ValueError(
            f"protocol {protocol!r} needs a 'session_id' column (an invoice or basket id); map yours "
            f"with validate_events(columns={{'<your name>': 'session_id'}}) or use 'held_out_users'"
        )
    n_users = int(events["user_id"].nunique())
    if protocol == "temporal_new_users":
        split = temporal_cold_start_split(events, cut_quantile=cut_quantile)
        description = (f"{len(split.new_users)} users first appear after the cut at the {cut_quantile} "
                       f"quantile of time ({split.cut_time:%Y-%m-%d}): the earlier {len(split.valid_users)} "
                       f"are validation users, the later {len(split.test_users)} test users; training "
                       f"sees the events before the cut")
        return ProtocolParts(protocol, "user_id", split.train, split.valid, split.test, n_users,
                             description, split.cut_time)
    if protocol == "new_items":
        return _new_item_parts(events, cut_quantile)
    train_users, valid_users, test_users = held_out_user_split(events, val_fraction, test_fraction, seed)
    task = {
        "held_out_users": "each user's earliest K events are the support set, the next (strictly later) "
                          "events the query set",
        "basket_completion": "support = a user's first K events, query = the rest of the K-th event's basket",
        "next_session": "support = a user's first whole sessions up to K events, query = the next session",
    }[protocol]
    description = (f"{n_users} users split by seed {seed} into {len(train_users)} training, "
                   f"{len(valid_users)} validation and {len(test_users)} test users; {task}")
    by_user = events["user_id"]
    return ProtocolParts(
        protocol, "user_id",
        train=events[by_user.isin(train_users).to_numpy()],
        valid=events[by_user.isin(valid_users).to_numpy()],
        test=events[by_user.isin(test_users).to_numpy()],
        n_entities=n_users, description=description,
    )


__all__ = [
    "check_protocol",
    "held_out_user_split",
    "PROTOCOL_BUILDERS",
    "protocol_parts",
    "ProtocolParts",
    "PROTOCOLS",
    "SESSION_PROTOCOLS",
    "SPLIT_PARTS",
]
