"""Session-aware tasks: basket completion and next session, from the ``session_id`` column.

In a shop log most "next items" sit in the same basket (invoice) as the support items, so
"support = first K items, query = next items" is basket completion in disguise. These builders
name the definition explicitly; both return :class:`~metarec_ref.data.tasks.Tasks` (one task per
user), so :func:`~metarec_ref.data.tasks.to_task_batch` and :func:`~metarec_ref.data.tasks.ranking_targets`
work unchanged.

A user's sessions are ordered by their first event (ties: first appearance in the log), events
within a session by time.

- :func:`build_basket_tasks` (*basket completion*): support = the user's first ``k_support``
  events; query = the next events of the same session as the K-th one (at or after the last
  support time).
- :func:`build_next_session_tasks` (*next session*): support = every event of the user's first
  sessions, taken whole until they hold at least ``k_support`` events; query = events of the
  following ``query_sessions`` sessions only, strictly after the last support event.

``repeats``: ``"keep"`` keeps query items the user already had in the support set, ``"drop"``
removes them from the query (report both: re-buying is easy to predict and says little about
discovery). Note that :func:`~metarec_ref.data.tasks.ranking_targets` never counts a support item as
a hit; :func:`ranking_targets_with_repeats` does. :func:`session_task_coverage` reports how
many users each definition keeps.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from metarec_ref.data.encoders import Encoders
from metarec_ref.data.negatives import NegativeSampling, insert_negatives
from metarec_ref.data.tasks import RankingTargets, Tasks, ranking_targets

DEFINITIONS = ("basket", "next_session")


def _require(events: pd.DataFrame, names: Sequence[str]) -> None:
    missing = [c for c in names if c not in events.columns]
    if missing:
        raise ValueError(
            f"column '{missing[0]}' is missing for session-aware tasks; found {list(events.columns)}. "
            f"Map your session column with validate_events(columns={{'<your name>': 'session_id'}})"
        )


@dataclass(frozen=True)
class _Cut:
    """What both session builders share: sizes, repeats, negatives and the seed."""

    k_support: int
    n_query: int
    min_query: int
    repeats: str
    negatives: NegativeSampling | None
    seed: int

    def __post_init__(self) -> None:
        if self.k_support < 1 or self.n_query < 1:
            raise ValueError(f"k_support and n_query must be >= 1, got {self.k_support}, {self.n_query}")
        if not 1 <= self.min_query <= self.n_query:
            raise ValueError(f"min_query must be in 1..n_query={self.n_query}, got {self.min_query}")
        if self.repeats not in ("keep", "drop"):
            raise ValueError(f"repeats must be 'keep' or 'drop', got {self.repeats!r}")


def _rank_within(group: np.ndarray) -> np.ndarray:
    starts = np.r_[0, np.flatnonzero(np.diff(group)) + 1]
    return np.arange(len(group)) - np.repeat(starts, np.diff(np.r_[starts, len(group)]))


def _ordered(events: pd.DataFrame) -> pd.DataFrame:
    """Events sorted by user, session start, session, time; with user / session positions."""
    user = pd.factorize(events["user_id"], sort=True)[0]
    session = pd.factorize(events["session_id"])[0]  # first appearance order
    times = events["timestamp"].to_numpy().astype("datetime64[ns]").view(np.int64)
    pair = user.astype(np.int64) * (session.max() + 1 if len(session) else 1) + session
    start = pd.Series(times).groupby(pair).transform("min").to_numpy()
    order = np.lexsort((np.arange(len(events)), times, session, start, user))
    out = pd.DataFrame({"_row": order, "_user": user[order], "_pair": pair[order], "_time": times[order]})
    out["_rank"] = _rank_within(out["_user"].to_numpy())
    new_session = np.r_[True, np.diff(out["_pair"].to_numpy()) != 0]
    out["_sess"] = pd.Series(new_session.astype(np.int64)).groupby(out["_user"]).cumsum().to_numpy() - 1
    return out


def _finish(events: pd.DataFrame, o: pd.DataFrame, support: np.ndarray, candidate: np.ndarray, cut: _Cut) -> Tasks:
    """Cap / filter the query, keep users with a full support and enough query, build Tasks."""
    k_support, n_query, min_query = cut.k_support, cut.n_query, cut.min_query
    user = o["_user"].to_numpy()
    n_users = int(user.max()) + 1 if len(user) else 0
    items = events["item_id"].to_numpy()[o["_row"].to_numpy()]
    if cut.repeats == "drop":
        key = pd.MultiIndex.from_arrays([user, items])
        candidate = candidate & ~key.isin(key[support])
    cand_rank = np.zeros(len(o), dtype=np.int64)
    cand_rank[candidate] = _rank_within(user[candidate])
    query = candidate & (cand_rank < n_query)
    n_s = np.bincount(user[support], minlength=n_users)
    n_q = np.bincount(user[query], minlength=n_users)
    keep_user = (n_s >= k_support) & (n_q >= min_query)
    keep = keep_user[user] & (support | query)

    out = events.iloc[o["_row"].to_numpy()[keep]].reset_index(drop=True)
    task_of = np.cumsum(keep_user) - 1
    out.insert(0, "task", task_of[user[keep]])
    out.insert(1, "is_query", query[keep])
    out["y"] = out["label"].astype(np.float64) if "label" in out else 1.0
    out["is_negative"] = False
    # Support rows before query rows within a task (the order is already by time).
    out = out.sort_values(["task", "is_query"], kind="stable").reset_index(drop=True)
    if cut.negatives is not None:
        out = insert_negatives(out, cut.negatives.against(events), column="item_id", seed=cut.seed + 1)
    out["is_negative"] = out["is_negative"].astype(bool)
    real = out[~out["is_negative"]]
    grouped = real.groupby("task", sort=True)["is_query"]
    n_query_rows = grouped.sum().astype(np.int64)
    keys = pd.DataFrame({"n_support": grouped.size() - n_query_rows, "n_query": n_query_rows})
    keys["cut_time"] = out[~out["is_query"]].groupby("task")["timestamp"].max()
    first = out.drop_duplicates("task").set_index("task")[["user_id"]]
    keys = first.join(keys).reset_index()
    return Tasks(events=out, keys=keys, by=("user_id",))


def build_basket_tasks(
    events: pd.DataFrame,
    k_support: int,
    n_query: int,
    *,
    repeats: str = "keep",
    min_query: int = 1,
    negatives: NegativeSampling | None = None,
    seed: int = 0,
) -> Tasks:
    """Basket completion: support = first ``k_support`` events, query = the rest of that basket.

    Query events come from the session of the K-th support event, at or after the last support
    time, at most ``n_query``. Users without ``min_query`` such events are dropped.
    ``negatives`` as in :func:`metarec_ref.data.tasks.build_tasks`.
    """
    _require(events, ("user_id", "item_id", "timestamp", "session_id"))
    cut = _Cut(k_support, n_query, min_query, repeats, negatives, seed)
    o = _ordered(events)
    rank, user, sess, time = (o[c].to_numpy() for c in ("_rank", "_user", "_sess", "_time"))
    n_users = int(user.max()) + 1 if len(user) else 0
    support = rank < k_support
    basket = np.full(n_users, -1)
    at_k = rank == k_support - 1
    basket[user[at_k]] = sess[at_k]
    last_time = np.full(n_users, np.iinfo(np.int64).max)
    ends = pd.Series(time[support]).groupby(user[support]).max()
    last_time[ends.index.to_numpy()] = ends.to_numpy()
    candidate = ~support & (sess == basket[user]) & (time >= last_time[user])
    return _finish(events, o, support, candidate, cut)


def build_next_session_tasks(
    events: pd.DataFrame,
    k_support: int,
    n_query: int,
    *,
    query_sessions: int | None = 1,
    repeats: str = "keep",
    min_query: int = 1,
    negatives: NegativeSampling | None = None,
    seed: int = 0,
) -> Tasks:
    """Next session: support = whole first sessions up to >= ``k_support`` events, query = later
    sessions only (the next ``query_sessions``; None: any later one), strictly after the support.

    The support may hold more than ``k_support`` events (a session is never cut).
    """
    _require(events, ("user_id", "item_id", "timestamp", "session_id"))
    cut = _Cut(k_support, n_query, min_query, repeats, negatives, seed)
    if query_sessions is not None and query_sessions < 1:
        raise ValueError(f"query_sessions must be >= 1 or None, got {query_sessions}")
    o = _ordered(events)
    user, sess, time = (o[c].to_numpy() for c in ("_user", "_sess", "_time"))
    n_users = int(user.max()) + 1 if len(user) else 0
    # A session joins the support while fewer than k_support events came before it.
    rank = o["_rank"].to_numpy()
    before = rank - _rank_within(o["_pair"].to_numpy())  # user's events in earlier sessions
    support = before < k_support
    last_support_session = np.full(n_users, -1)
    np.maximum.at(last_support_session, user[support], sess[support])
    last_time = np.full(n_users, np.iinfo(np.int64).max)
    ends = pd.Series(time[support]).groupby(user[support]).max()
    last_time[ends.index.to_numpy()] = ends.to_numpy()
    candidate = ~support & (time > last_time[user])
    if query_sessions is not None:
        candidate &= sess <= last_support_session[user] + query_sessions
    return _finish(events, o, support, candidate, cut)


def build_session_tasks(events: pd.DataFrame, definition: str, k_support: int, n_query: int, **kwargs) -> Tasks:
    """Dispatch by name: ``"basket"`` or ``"next_session"`` (a notebook parameter)."""
    if definition == "basket":
        return build_basket_tasks(events, k_support, n_query, **kwargs)
    if definition == "next_session":
        return build_next_session_tasks(events, k_support, n_query, **kwargs)
    raise ValueError(f"definition must be one of {list(DEFINITIONS)}, got {definition!r}")


def ranking_targets_with_repeats(
    tasks: Tasks, encoders: Encoders, device: torch.device | str = "cpu", *, candidates=None
) -> RankingTargets:
    """Like :func:`~metarec_ref.data.tasks.ranking_targets`, but a query item that was also in the
    support (a re-purchase) stays a candidate and counts as a hit."""
    targets = ranking_targets(tasks, encoders, device, candidates=candidates)
    real = tasks.events[~tasks.events["is_negative"] & (tasks.events["y"] > 0) & tasks.events["is_query"]]
    rows = torch.as_tensor(np.array(real["task"]), device=targets.exclude.device)
    cols = torch.as_tensor(encoders.encode_items(real["item_id"]), device=targets.exclude.device)
    allowed = torch.ones_like(targets.exclude[0])
    allowed[0] = False
    if candidates is not None:
        allowed &= candidates.to(allowed.device)
    ok = allowed[cols]
    exclude = targets.exclude.clone()
    positives = targets.positives.clone()
    exclude[rows[ok], cols[ok]] = False
    positives[rows[ok], cols[ok]] = True
    return RankingTargets(targets.scenario, positives, exclude, targets.user)


def session_task_coverage(
    events: pd.DataFrame, ks: Sequence[int], n_query: int, repeats: Sequence[str] = ("keep",), **kwargs
) -> pd.DataFrame:
    """How many users each definition keeps: definition, repeats, K, users, users_kept, share,
    mean support and query sizes."""
    _require(events, ("user_id", "session_id"))
    n_users = events["user_id"].nunique()
    rows = []
    for definition in DEFINITIONS:
        for rep in repeats:
            for k in ks:
                tasks = build_session_tasks(events, definition, k, n_query, repeats=rep, **kwargs)
                rows.append({"definition": definition, "repeats": rep, "K": k, "users": n_users,
                             "users_kept": tasks.num_tasks, "share": tasks.num_tasks / max(n_users, 1),
                             "mean_support": float(tasks.keys["n_support"].mean()) if tasks.num_tasks else np.nan,
                             "mean_query": float(tasks.keys["n_query"].mean()) if tasks.num_tasks else np.nan})
    return pd.DataFrame(rows)


__all__ = [
    "DEFINITIONS",
    "build_basket_tasks",
    "build_next_session_tasks",
    "build_session_tasks",
    "ranking_targets_with_repeats",
    "session_task_coverage",
]
