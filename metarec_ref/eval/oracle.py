"""The ground-truth scorer of a synthetic log: the ceiling line of every results plot.

:class:`SyntheticOracle` knows the latent factors that generated a log
(:class:`~metarec_ref.data.synthetic.SyntheticWorld`) and scores each task's events with the true
preference of the task's user, at the task's time, in each event's scenario. For tasks that
mix users (one task per new item), each event is scored with its own user, read from
``x["user"]`` (encoders made with :meth:`~metarec_ref.data.schema.Encoders.with_users`). It follows the
evaluation protocol (``adapt`` / ``score``), so it sits in results tables next to the learners.

Two scores, because the best ranking depends on the question:

- ``include_popularity=True`` (default): the log choice weight ``affinity / T + log pi_i`` of
  :meth:`SyntheticWorld.true_scores`, the best ranking of *all* items (full ranking, and AUC
  against uniformly sampled negatives);
- ``include_popularity=False``: the affinity alone, the best score for telling a positive from
  a negative drawn in proportion to popularity (the popularity factor is in both and cancels).

The task batch must carry ``task_ids`` (as :func:`metarec_ref.data.tasks.to_task_batch` sets them):
they index the per-task users and times the oracle was built with.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from metarec_ref.batch import UNKNOWN, Features, TaskBatch
from metarec_ref.data.encoders import Encoders
from metarec_ref.data.synthetic import SyntheticLog, SyntheticWorld
from metarec_ref.data.tasks import Tasks

# Score of padding / unknown items (code 0): below any real score, yet finite for the metrics.
UNKNOWN_SCORE = -1e9


class SyntheticOracle:
    """True preference scores of the users and times of a fixed list of tasks (a ceiling)."""

    calibrated = False  # a ranking score, not a probability

    def __init__(
        self,
        world: SyntheticWorld | SyntheticLog,
        encoders: Encoders,
        users: Sequence[int] | None,
        times: Sequence | pd.Series,
        *,
        include_popularity: bool = True,
    ):
        self.world = world.world if isinstance(world, SyntheticLog) else world
        if not isinstance(self.world, SyntheticWorld):
            raise ValueError(f"world must be a SyntheticWorld or SyntheticLog, got {type(world).__name__}")
        self.encoders = encoders
        self.times = np.asarray(pd.to_datetime(np.asarray(times)), dtype="datetime64[ns]")
        # users=None: per-event users, read from x["user"] at scoring time (item tasks).
        self.users = None if users is None else np.asarray(users, dtype=np.int64)
        if self.users is not None and (self.users.ndim != 1 or self.users.shape != self.times.shape):
            raise ValueError(
                f"users and times need one value per task; got shapes {self.users.shape} and {self.times.shape}"
            )
        n_users = self.world.user_vec.shape[0]
        if self.users is not None and len(self.users) and (self.users.min() < 0 or self.users.max() >= n_users):
            raise ValueError(f"users must be raw user ids of the synthetic log, in 0..{n_users - 1}")
        self._user_of_code = None
        if users is None:
            if encoders.users is None:
                raise ValueError("per-event users need encoders with users; use encoders.with_users(events)")
            self._user_of_code = np.concatenate([[-1], np.asarray(encoders.users, dtype=np.int64)])
        self.include_popularity = include_popularity
        # Raw id of each code (code 0 -> -1): synthetic ids are ints.
        try:
            items = np.asarray(encoders.items, dtype=np.int64)
            scenarios = np.asarray(encoders.scenarios, dtype=np.int64)
        except (TypeError, ValueError) as err:
            raise ValueError(
                "the encoders hold non-integer item or scenario ids; fit them on the synthetic log's "
                "events (integer ids) for the oracle"
            ) from err
        self._item_of_code = np.concatenate([[-1], items])
        self._scenario_of_code = np.concatenate([[-1], scenarios])

    @classmethod
    def for_tasks(
        cls,
        world: SyntheticWorld | SyntheticLog,
        tasks: Tasks,
        encoders: Encoders,
        *,
        at: str = "query",
        include_popularity: bool = True,
    ) -> "SyntheticOracle":
        """The oracle of ``tasks`` (one row per task of ``tasks.keys``, in task order).

        at: the time of a task's preference, ``"query"`` (mean time of its real query events)
        or ``"cut"`` (its last support event, ``keys["cut_time"]``).
        """
        per_event = "user_id" not in tasks.keys.columns
        if per_event and encoders.users is None:
            raise ValueError(
                f"the oracle needs a user per task or per event; tasks are grouped by {tasks.by} without "
                "'user_id' (item tasks mix users): build the batch and the oracle with "
                "encoders.with_users(events), or build user, (scenario, user) or (window, user) tasks"
            )
        if at not in ("query", "cut"):
            raise ValueError(f"at must be 'query' or 'cut', got {at!r}")
        keys = tasks.keys.sort_values("task")
        cut_ns = keys["cut_time"].to_numpy().astype("datetime64[ns]").astype(np.int64)
        times_ns = cut_ns
        if at == "query":
            real = tasks.events[tasks.events["is_query"] & ~tasks.events["is_negative"]]
            ns = pd.Series(real["timestamp"].to_numpy().astype("datetime64[ns]").astype(np.int64))
            mean = ns.groupby(real["task"].to_numpy()).mean().reindex(keys["task"].to_numpy()).to_numpy()
            times_ns = np.where(np.isnan(mean), cut_ns, np.nan_to_num(mean)).astype(np.int64)
        users = None if per_event else keys["user_id"].to_numpy()
        return cls(world, encoders, users, times_ns.astype("datetime64[ns]"), include_popularity=include_popularity)

    @property
    def num_tasks(self) -> int:
        return len(self.times)

    def adapt(self, batch: TaskBatch) -> Tensor:
        """The oracle reads no support event; it only needs to know which tasks it scores."""
        if batch.task_ids is None:
            raise ValueError("the batch has no task_ids; build it with metarec_ref.data.tasks.to_task_batch")
        ids = batch.task_ids.cpu()
        if len(ids) and (int(ids.min()) < 0 or int(ids.max()) >= self.num_tasks):
            raise ValueError(
                f"task_ids reach {int(ids.max())} but the oracle was built for {self.num_tasks} tasks; "
                "build it from the same tasks as the batch"
            )
        return ids

    def score(self, state: Tensor, x: Features) -> Tensor:
        """True scores ``(tasks, n)`` of the events ``x`` (leaves ``(tasks, n)``)."""
        if not isinstance(x, dict) or "item" not in x or "scenario" not in x:
            raise ValueError("the oracle scores feature dicts with 'item' and 'scenario' codes")
        codes = x["item"].detach().cpu().numpy()
        if codes.ndim != 2 or codes.shape[0] != len(state):
            raise ValueError(f"x['item'] must have shape (tasks={len(state)}, n), got {codes.shape}")
        ids = state.numpy()
        items = self._item_of_code[codes]
        scenarios = self._scenario_of_code[x["scenario"].detach().cpu().numpy()]
        if self.users is None:
            if "user" not in x:
                raise ValueError("this oracle scores each event's own user: x needs 'user' codes")
            users = self._user_of_code[x["user"].detach().cpu().numpy()]
        else:
            users = np.broadcast_to(self.users[ids][:, None], codes.shape)
        known = (items >= 0) & (users >= 0)
        users = np.where(users >= 0, users, 0)
        home = self.world.user_home[users]
        scenarios = np.where(scenarios < 0, home, scenarios)  # unknown scenario: the user's home
        tau = np.broadcast_to(self.world.tau(self.times[ids])[:, None], codes.shape)
        safe = np.where(known, items, 0)
        scores = self.world.affinity_at(users, safe, tau, scenarios)
        if self.include_popularity:
            scores = scores / self.world.config.temperature + self.world.item_log_pop[safe]
        scores = np.where(known & (codes != UNKNOWN), scores, UNKNOWN_SCORE)
        return torch.as_tensor(scores, dtype=torch.float32, device=x["item"].device)


__all__ = ["SyntheticOracle", "UNKNOWN_SCORE"]
