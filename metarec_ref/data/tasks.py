"""Tasks from event logs: support / query cuts, negatives, padded tensors, full-ranking targets.

A *task* is one group of events (one user, one item, one scenario, one time window) split into a
support set (the first ``k_support`` events in time) and a query set (the next ``n_query``).

- ``build_tasks(events, by, k_support, n_query)`` is the general builder; ``build_user_tasks``
  (cold-start users), ``build_item_tasks`` (new items), ``build_scenario_tasks`` (cross-scenario
  transfer) and ``build_window_tasks`` (drift) fix ``by``.
- ``query_after="strict"`` (default): every query event is strictly later than every support event;
  events tied in time with the last support event are dropped (with invoices, the query then starts
  at the next invoice). ``"order"`` lets tied events fill the query (basket completion).
  ``split="random"`` is the legacy random split used in much of the literature (no time order).
- ``negatives=NegativeSampling(n_neg, ...)`` adds negatives per positive (implicit feedback): items
  the user had not interacted with up to that time (``exclude="past"``) or ever (``exclude="all"``),
  uniform or popularity-weighted. Item tasks resample the *user* instead, so the item stays fixed
  (sampling lives in :mod:`metarec_ref.data.negatives`).
- ``to_task_batch(tasks, encoders, device)`` -> :class:`~metarec_ref.batch.TaskBatch` with x keys
  ``item``, ``category``, ``scenario`` (int64 codes, 0 = unknown / padding) and ``dense``.
- ``ranking_targets(tasks, encoders)`` gives, per task, the query positives and the items to
  exclude (support items and code 0) for full-ranking metrics over an ``ItemCatalog``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from metarec_ref.batch import UNKNOWN, TaskBatch
from metarec_ref.data.encoders import Encoders
from metarec_ref.data.negatives import NegativeSampling, insert_negatives
from metarec_ref.data.schema import require_columns


@dataclass
class Tasks:
    """Tasks as one long table plus one row per task.

    ``events``: one row per support / query event with columns ``task`` (0..num_tasks-1),
    ``is_query``, ``is_negative``, ``y`` and the event columns; ordered by task, support before
    query, then time. ``keys``: one row per task with the group key columns, ``n_support``,
    ``n_query`` and ``cut_time`` (timestamp of the last support event).
    """

    events: pd.DataFrame
    keys: pd.DataFrame
    by: tuple[str, ...]

    @property
    def num_tasks(self) -> int:
        return len(self.keys)

    def __len__(self) -> int:
        return self.num_tasks

    @property
    def support(self) -> pd.DataFrame:
        return self.events[~self.events["is_query"]]

    def select(self, index: Sequence[int] | np.ndarray) -> Tasks:
        """The tasks at positions ``index`` (in that order), renumbered ``0..len(index) - 1``."""
        index = np.asarray(index, dtype=np.int64)
        if index.ndim != 1 or (len(index) and (index.min() < 0 or index.max() >= self.num_tasks)):
            raise ValueError(f"index must be 1-D positions in 0..{self.num_tasks - 1}")
        new_position = np.full(self.num_tasks, -1, dtype=np.int64)
        new_position[index] = np.arange(len(index))
        events = self.events[new_position[self.events["task"].to_numpy()] >= 0].copy()
        events["task"] = new_position[events["task"].to_numpy()]
        events = events.sort_values("task", kind="stable").reset_index(drop=True)  # keeps order within a task
        keys = self.keys.iloc[index].reset_index(drop=True)
        if "task" in keys.columns:
            keys["task"] = np.arange(len(index))
        return Tasks(events, keys, self.by)

    @property
    def query(self) -> pd.DataFrame:
        return self.events[self.events["is_query"]]

    def first_support(self, k: int) -> Tasks:
        """The same tasks with only the first ``k`` support events (and their negatives); query unchanged.

        Cut once with the largest support size and shrink with this, to compare support sizes on
        the same tasks and the same query events (and negatives).
        """
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        events = self.events
        support = ~events["is_query"].to_numpy()
        positive = support & ~events["is_negative"].to_numpy()
        # A negative sits right after its positive, so it shares the positive's running count.
        rank = pd.Series(positive.astype(np.int64)).groupby(events["task"].to_numpy()).cumsum().to_numpy()
        events = events[~support | (rank <= k)].reset_index(drop=True)
        keys = self.keys.copy()
        kept = events[~events["is_query"]]
        tasks = np.arange(len(keys))
        keys["n_support"] = kept[~kept["is_negative"]].groupby("task").size().reindex(tasks, fill_value=0).to_numpy()
        keys["cut_time"] = kept.groupby("task")["timestamp"].max().reindex(tasks).to_numpy()
        return Tasks(events, keys, self.by)


def _group_codes(events: pd.DataFrame, by: tuple[str, ...]) -> np.ndarray:
    if len(by) == 1:
        return pd.factorize(events[by[0]], sort=True)[0]
    return events.groupby(list(by), sort=True).ngroup().to_numpy()


def _rank_within(group: np.ndarray) -> np.ndarray:
    """Position of each row within its group, for rows sorted by group."""
    starts = np.r_[0, np.flatnonzero(np.diff(group)) + 1]
    sizes = np.diff(np.r_[starts, len(group)])
    return np.arange(len(group)) - np.repeat(starts, sizes)


def build_tasks(
    events: pd.DataFrame,
    by: str | Sequence[str],
    k_support: int,
    n_query: int,
    *,
    min_query: int = 1,
    negatives: NegativeSampling | None = None,
    split: str = "temporal",
    query_after: str = "strict",
    target: str = "label",
    seed: int = 0,
) -> Tasks:
    """Cut one task per group of ``by``: support = first ``k_support`` events, query = next ``n_query``.

    Args:
        events: a validated log (:func:`~metarec_ref.data.schema.validate_events`), with the ``by``
            columns, ``user_id``, ``item_id`` and ``timestamp``.
        by: the column(s) whose values are the tasks, e.g. ``"user_id"`` or ``("scenario", "user_id")``.
        k_support: support events per task (the first in time); groups with fewer are dropped.
        n_query: query events per task at most (the next ones).
        min_query: groups with fewer query events are dropped (default 1: a short query set is
            kept, padded and masked by :func:`to_task_batch`).
        negatives: how to add sampled negatives to the support and query sets
            (:class:`~metarec_ref.data.negatives.NegativeSampling`; drawn against its history,
            default ``events``); None: no negatives.
        split: ``"temporal"`` (support before query in time) or ``"random"`` (the legacy random split).
        query_after: ``"strict"`` (every query event strictly after the support; events tied with
            the last support event are dropped) or ``"order"`` (tied events may fill the query).
        target: ``"label"`` (y = label, or 1 for logs without labels) or ``"rating"``.
        seed: draws of the random split and of the negatives.

    Returns:
        :class:`Tasks`: one long table of support and query events plus one row per task.
    """
    by = (by,) if isinstance(by, str) else tuple(by)
    require_columns(events, (*by, "user_id", "item_id", "timestamp"), "building tasks")
    if k_support < 1 or n_query < 1:
        raise ValueError(f"k_support and n_query must be >= 1, got {k_support}, {n_query}")
    if not 1 <= min_query <= n_query:
        raise ValueError(f"min_query must be in 1..n_query={n_query}, got {min_query}")
    if split not in ("temporal", "random"):
        raise ValueError(f"split must be 'temporal' or 'random', got {split!r}")
    if query_after not in ("strict", "order"):
        raise ValueError(f"query_after must be 'strict' or 'order', got {query_after!r}")
    if target not in ("label", "rating"):
        raise ValueError(f"target must be 'label' or 'rating', got {target!r}")
    if target == "rating":
        require_columns(events, ("rating",), "target='rating'")
        if negatives is not None:
            raise ValueError("negatives need binary labels; use target='label' with negatives")

    rng = np.random.default_rng(seed)
    group = _group_codes(events, by)
    times = events["timestamp"].to_numpy().astype("datetime64[ns]").view(np.int64)
    if split == "random":
        order = np.lexsort((rng.random(len(events)), group))
    else:
        # Sort by group, then time; ties keep input order (validated logs are time-sorted).
        order = np.lexsort((np.arange(len(events)), times, group))
    group, times = group[order], times[order]
    rank = _rank_within(group)
    n_groups = int(group.max()) + 1 if len(group) else 0
    size = np.bincount(group, minlength=n_groups)
    has_support = size >= k_support
    is_support = rank < k_support
    if split == "random" or query_after == "order":
        candidate = rank >= k_support
    else:
        last_support_time = np.full(n_groups, np.iinfo(np.int64).max)
        at_k = rank == k_support - 1
        last_support_time[group[at_k]] = times[at_k]
        candidate = (rank >= k_support) & (times > last_support_time[group])
    cand_group = group[candidate]
    cand_rank = np.zeros(len(group), dtype=np.int64)
    cand_rank[candidate] = _rank_within(cand_group)
    is_query = candidate & (cand_rank < n_query)
    n_q = np.bincount(group[is_query], minlength=n_groups)
    keep_group = has_support & (n_q >= min_query)
    keep = keep_group[group] & (is_support | is_query)

    rows = order[keep]
    out = events.iloc[rows].reset_index(drop=True)
    new_ids = np.cumsum(keep_group) - 1  # old group code -> task index
    out.insert(0, "task", new_ids[group[keep]])
    out.insert(1, "is_query", is_query[keep])
    if target == "rating":
        out["y"] = out["rating"].astype(np.float64)
    else:
        out["y"] = out["label"].astype(np.float64) if "label" in out else 1.0
    out["is_negative"] = False

    if negatives is not None:
        column = "user_id" if by == ("item_id",) else "item_id"
        out = insert_negatives(out, negatives.against(events), column=column, seed=seed + 1)
    out["is_negative"] = out["is_negative"].astype(bool)

    grouped = out[~out["is_negative"]].groupby("task", sort=True)["is_query"]
    n_query_rows = grouped.sum().astype(np.int64)
    keys = pd.DataFrame({"n_support": grouped.size() - n_query_rows, "n_query": n_query_rows})
    support = out[~out["is_query"]]
    keys["cut_time"] = support.groupby("task")["timestamp"].max()
    first = out.drop_duplicates("task").set_index("task")[list(by)]
    keys = first.join(keys).reset_index()
    return Tasks(events=out, keys=keys, by=by)


def build_user_tasks(events: pd.DataFrame, k_support: int, n_query: int, **kwargs) -> Tasks:
    """One task per user (cold-start users); see :func:`build_tasks` for the options."""
    return build_tasks(events, "user_id", k_support, n_query, **kwargs)


def build_item_tasks(events: pd.DataFrame, k_support: int, n_query: int, **kwargs) -> Tasks:
    """One task per item (new items); negatives resample users who had not seen the item."""
    return build_tasks(events, "item_id", k_support, n_query, **kwargs)


def build_scenario_tasks(
    events: pd.DataFrame, k_support: int, n_query: int, *, per_user: bool = True, **kwargs
) -> Tasks:
    """Tasks per scenario (cross-scenario transfer): per (scenario, user) or one per scenario."""
    by = ("scenario", "user_id") if per_user else ("scenario",)
    return build_tasks(events, by, k_support, n_query, **kwargs)


def add_time_window(events: pd.DataFrame, freq: str = "30D") -> pd.DataFrame:
    """A copy with a ``window`` column: the start of each event's time window of length ``freq``."""
    require_columns(events, ("timestamp",), "time windows")
    try:
        window = events["timestamp"].dt.floor(freq)
    except ValueError as err:
        raise ValueError(f"freq={freq!r} is not a fixed frequency such as '7D' or '12h'") from err
    return events.assign(window=window)


def build_window_tasks(
    events: pd.DataFrame,
    k_support: int,
    n_query: int,
    *,
    freq: str = "30D",
    per_user: bool = True,
    **kwargs,
) -> Tasks:
    """Tasks per time window (drift): per (window, user) or one per window."""
    events = add_time_window(events, freq)
    by = ("window", "user_id") if per_user else ("window",)
    return build_tasks(events, by, k_support, n_query, **kwargs)


def _pad(task: np.ndarray, slot: np.ndarray, values: np.ndarray, shape: tuple, fill) -> np.ndarray:
    out = np.full(shape + values.shape[1:], fill, dtype=values.dtype)
    out[task, slot] = values
    return out


def _part_tensors(part: pd.DataFrame, num_tasks: int, encoders: Encoders, max_len: int | None,
                  device) -> tuple[dict[str, Tensor], Tensor, Tensor]:
    task = part["task"].to_numpy()
    slot = part.groupby("task", sort=False).cumcount().to_numpy()
    if max_len is not None:
        task, slot, part = task[slot < max_len], slot[slot < max_len], part[slot < max_len]
    width = int(slot.max()) + 1 if len(slot) else 1
    shape = (num_tasks, width)
    item = encoders.encode_items(part["item_id"])
    scenario = (encoders.encode_scenarios(part["scenario"]) if "scenario" in part
                else np.zeros(len(part), dtype=np.int64))
    x = {
        "item": _pad(task, slot, item, shape, UNKNOWN),
        "category": _pad(task, slot, encoders.item_category[item], shape, UNKNOWN),
        "scenario": _pad(task, slot, scenario, shape, UNKNOWN),
        "dense": _pad(task, slot, encoders.item_dense[item], shape, 0.0),
    }
    if encoders.users is not None:
        x["user"] = _pad(task, slot, encoders.encode_users(part["user_id"]), shape, UNKNOWN)
    y = _pad(task, slot, part["y"].to_numpy(np.float32), shape, 0.0)
    mask = _pad(task, slot, np.ones(len(part), dtype=bool), shape, False)
    to = lambda a: torch.as_tensor(a, device=device)
    return {k: to(v) for k, v in x.items()}, to(y), to(mask)


def to_task_batch(
    tasks: Tasks,
    encoders: Encoders,
    device: torch.device | str = "cpu",
    *,
    max_support: int | None = None,
    max_query: int | None = None,
) -> TaskBatch:
    """Padded, masked tensors for all tasks: x leaves ``(tasks, k, ...)``, y / mask ``(tasks, k)``.

    Padding slots hold code 0 and mask False. ``max_support`` / ``max_query`` truncate rows
    (negatives included) per task.
    """
    if tasks.num_tasks == 0:
        raise ValueError("tasks is empty; lower k_support / n_query or use more events")
    t = tasks.num_tasks
    events = tasks.events
    sx, sy, sm = _part_tensors(events[~events["is_query"]], t, encoders, max_support, device)
    qx, qy, qm = _part_tensors(events[events["is_query"]], t, encoders, max_query, device)
    return TaskBatch(sx, sy, sm, qx, qy, qm, task_ids=torch.arange(t, device=device))


@dataclass
class RankingTargets:
    """Per-task targets for full ranking over an ``ItemCatalog`` (columns = item codes)."""

    scenario: Tensor  # (tasks,) scenario code of the last support event
    positives: Tensor  # (tasks, n_items) bool: query positives
    exclude: Tensor  # (tasks, n_items) bool: support items, code 0, items outside `candidates`
    user: Tensor | None = None  # (tasks,) user code of the last support event, if encoded


def ranking_targets(
    tasks: Tasks,
    encoders: Encoders,
    device: torch.device | str = "cpu",
    *,
    candidates: Tensor | None = None,
) -> RankingTargets:
    """Query positives and excluded items of each task, for HR@k / NDCG@k over all items.

    candidates: optional bool ``(n_items,)`` (e.g. ``catalog.available(split.cut_time)``); items
    outside it are excluded and dropped from the positives. Support items are excluded as well,
    so a re-bought support item is not counted as a hit.
    """
    n_items = encoders.spec.n_items
    t = tasks.num_tasks
    real = tasks.events[~tasks.events["is_negative"] & (tasks.events["y"] > 0)]
    positives = np.zeros((t, n_items), dtype=bool)
    exclude = np.zeros((t, n_items), dtype=bool)
    q = real[real["is_query"]]
    s = real[~real["is_query"]]
    positives[q["task"].to_numpy(), encoders.encode_items(q["item_id"])] = True
    exclude[s["task"].to_numpy(), encoders.encode_items(s["item_id"])] = True
    exclude[:, UNKNOWN] = True
    if candidates is not None:
        if candidates.shape != (n_items,):
            raise ValueError(f"candidates must have shape ({n_items},), got {tuple(candidates.shape)}")
        exclude |= ~candidates.cpu().numpy()[None, :]
    positives &= ~exclude
    last = tasks.events[~tasks.events["is_query"]].groupby("task", sort=True).tail(1)
    scenario = np.zeros(t, dtype=np.int64)
    if "scenario" in last:
        scenario[last["task"].to_numpy()] = encoders.encode_scenarios(last["scenario"])
    user = None
    if encoders.users is not None:
        user = np.zeros(t, dtype=np.int64)
        user[last["task"].to_numpy()] = encoders.encode_users(last["user_id"])
    to = lambda a: torch.as_tensor(a, device=device)
    return RankingTargets(to(scenario), to(positives), to(exclude), None if user is None else to(user))


__all__ = [
    "RankingTargets",
    "Tasks",
    "add_time_window",
    "build_item_tasks",
    "build_scenario_tasks",
    "build_tasks",
    "build_user_tasks",
    "build_window_tasks",
    "ranking_targets",
    "to_task_batch",
]
