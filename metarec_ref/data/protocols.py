"""Cold-start protocols, defined and chosen in one place: the parts of a log, the tasks, the choice and why.

``parts = protocol_parts(events, "held_out_users", ProtocolSplit(seed=0))`` cuts a validated log; then
``parts.build_all(k_support, n_query)`` gives ``{"train": Tasks, "valid": Tasks, "test": Tasks}``.

- ``"temporal_new_users"``: :func:`~metarec_ref.data.splits.temporal_cold_start_split`; users first
  seen at or after the cut are new, the earlier half of them validation users, the later half test
  users; training sees the events before the cut. One task per user (:func:`build_user_tasks`).
- ``"held_out_users"``: users split disjointly at random (:func:`~metarec_ref.data.splits.split_users`)
  into train / validation / test; every user's task is cut from their whole history: support =
  earliest ``k_support`` events, query = the next events strictly later in time. The simulated cold
  start of panels where few users are new. Training users' events may be later in time than test
  users' events (the price of this protocol; say so when reporting).
- ``"new_items"``: items first seen at or after the cut (:func:`~metarec_ref.data.splits.first_seen`);
  the earlier half validation items, the later half test items; one task per item
  (:func:`build_item_tasks`).
- ``"basket_completion"`` / ``"next_session"`` (need ``session_id``): the held-out user split with
  :func:`build_basket_tasks` / :func:`build_next_session_tasks`.

Query sets shorter than ``n_query`` (at least one event after the support) are kept: tasks are
built with ``min_query=1`` unless asked otherwise, and :func:`to_task_batch` pads and masks the
missing slots.

``choice = choose_protocol(events, k_support=5, n_query=10)`` cuts the log with every protocol,
counts their tasks (:func:`~metarec_ref.data.evidence.evidence_report`) and picks one:
``protocol="auto"`` prefers temporal_new_users when it gives the validation and test tasks
:class:`~metarec_ref.data.evidence.EvidenceNeeds` asks for, else held_out_users; when neither does,
the closer one comes back with ``enough`` False. ``choice.reason`` says why in one sentence with
numbers; ``choice.candidates`` lists what was considered; ``choice.evidence`` counts the users left
after each filter and names the one that stopped a short part; ``choice.build_tasks()`` returns the
train / valid / test tasks; ``choice.require_enough()`` stops with ``reason`` when they are too few.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pandas as pd

from metarec_ref.data.evidence import SPLIT_PARTS, Evidence, EvidenceNeeds, evidence_report
from metarec_ref.data.sessions import build_basket_tasks, build_next_session_tasks
from metarec_ref.data.splits import cut_time, first_seen, split_users, temporal_cold_start_split
from metarec_ref.data.tasks import Tasks, build_item_tasks, build_user_tasks

AUTO_ORDER = ("temporal_new_users", "held_out_users")  # what "auto" may pick, in order of preference


@dataclass(frozen=True)
class ProtocolSplit:
    """How the protocols cut a log: the cut time of the temporal ones, the held-out user split of the others."""

    cut_quantile: float = 0.8  # the cut time of temporal_new_users and new_items, a quantile of the timestamps
    val_fraction: float = 0.1  # held-out users (held_out_users and the session protocols)
    test_fraction: float = 0.1
    seed: int = 0

    def __post_init__(self) -> None:
        if not 0.0 < self.cut_quantile < 1.0:
            raise ValueError(f"cut_quantile must be in (0, 1), got {self.cut_quantile}")
        if self.val_fraction <= 0 or self.test_fraction <= 0 or self.val_fraction + self.test_fraction >= 1:
            raise ValueError(
                f"val_fraction and test_fraction must be > 0 with a sum below 1, got {self.val_fraction} "
                f"and {self.test_fraction}; e.g. 0.1 and 0.1"
            )


PROTOCOLS = ("temporal_new_users", "held_out_users", "new_items", "basket_completion", "next_session")
SESSION_PROTOCOLS = ("basket_completion", "next_session")
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
    split: ProtocolSplit  # the settings it was cut with
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


def _new_item_parts(events: pd.DataFrame, split: ProtocolSplit) -> ProtocolParts:
    cut = cut_time(events, split.cut_quantile)
    items = first_seen(events, "item_id", cut,
                       fix=f"lower cut_quantile (now {split.cut_quantile}) or use a longer log")
    description = (f"{len(items.new)} items first appear after the cut at the {split.cut_quantile} quantile of "
                   f"time ({cut:%Y-%m-%d}): the earlier {len(items.valid)} are validation items, the later "
                   f"{len(items.test)} test items; training sees the events before the cut")
    times = events["timestamp"]
    return ProtocolParts(
        "new_items", "item_id",
        train=events[(times < cut).to_numpy()],
        valid=events[events["item_id"].isin(items.valid).to_numpy() & (times < items.test_start).to_numpy()],
        test=events[events["item_id"].isin(items.test).to_numpy()],
        n_entities=len(items.first), description=description, split=split, cut_time=cut,
    )


_TASK_TEXT = {
    "held_out_users": "each user's earliest K events are the support set, the next (strictly later) "
                      "events the query set",
    "basket_completion": "support = a user's first K events, query = the rest of the K-th event's basket",
    "next_session": "support = a user's first whole sessions up to K events, query = the next session",
}


def protocol_parts(events: pd.DataFrame, protocol: str, split: ProtocolSplit | None = None) -> ProtocolParts:
    """Cut a validated log into the train / validation / test events of ``protocol``, as ``split`` says."""
    check_protocol(protocol)
    split = split or ProtocolSplit()
    if protocol in SESSION_PROTOCOLS and "session_id" not in events.columns:
        raise ValueError(
            f"protocol {protocol!r} needs a 'session_id' column (an invoice or basket id); map yours "
            f"with validate_events(columns={{'<your name>': 'session_id'}}) or use 'held_out_users'"
        )
    n_users = int(events["user_id"].nunique())
    if protocol == "temporal_new_users":
        cut = temporal_cold_start_split(events, cut_quantile=split.cut_quantile)
        description = (f"{len(cut.new_users)} users first appear after the cut at the {split.cut_quantile} "
                       f"quantile of time ({cut.cut_time:%Y-%m-%d}): the earlier {len(cut.valid_users)} "
                       f"are validation users, the later {len(cut.test_users)} test users; training "
                       f"sees the events before the cut")
        return ProtocolParts(protocol, "user_id", cut.train, cut.valid, cut.test, n_users, description, split,
                             cut.cut_time)
    if protocol == "new_items":
        return _new_item_parts(events, split)
    train, valid, test = split_users(events, (split.val_fraction, split.test_fraction), split.seed)
    description = (f"{n_users} users split by seed {split.seed} into {train['user_id'].nunique()} training, "
                   f"{valid['user_id'].nunique()} validation and {test['user_id'].nunique()} test users; "
                   f"{_TASK_TEXT[protocol]}")
    return ProtocolParts(protocol, "user_id", train, valid, test, n_users, description, split)


@dataclass
class ProtocolChoice:
    """The protocol :func:`choose_protocol` picked, why, and what it considered."""

    name: str
    reason: str  # a sentence with numbers, for glued prose
    candidates: pd.DataFrame  # protocol, train/val/test tasks, test_full_query, eligible, note
    evidence: Evidence
    parts: ProtocolParts
    k_support: int
    n_query: int

    @property
    def enough(self) -> bool:
        return self.evidence.enough

    def build_tasks(self, **kwargs) -> dict[str, Tasks]:
        """Train / valid / test tasks of the chosen protocol; kwargs go to the builder.

        With negatives, pass ``history=events`` so they are drawn against the whole log.
        """
        return self.parts.build_all(self.k_support, self.n_query, **kwargs)

    def require_enough(self) -> None:
        """Raise ValueError carrying ``reason`` when the evidence is not enough (a clear stop)."""
        if not self.enough:
            raise ValueError(self.reason)


def choose_protocol(
    events: pd.DataFrame,
    *,
    k_support: int,
    n_query: int,
    protocol: str = "auto",
    split: ProtocolSplit | None = None,
    needs: EvidenceNeeds | None = None,
) -> ProtocolChoice:
    """Try every protocol on a validated log, pick one and explain why (see the module docstring).

    Args:
        events: a validated log.
        k_support, n_query: the task sizes (support events, query events at most).
        protocol: ``"auto"`` prefers temporal_new_users, then held_out_users, each only when it gives
            the validation and test tasks ``needs`` asks for; when neither does, the closer one is
            returned with ``enough`` False and the reason names the filter that stopped it. A
            protocol name forces it.
        split: how every protocol cuts the log (:class:`ProtocolSplit`); None: its defaults.
        needs: the tasks each part must give (:class:`~metarec_ref.data.evidence.EvidenceNeeds`).
    """
    check_protocol(protocol, allow_auto=True)
    split = split or ProtocolSplit()
    needs = needs or EvidenceNeeds()
    rows, tried = [], {}
    for name in PROTOCOLS:
        row = {"protocol": name, "train_tasks": 0, "val_tasks": 0, "test_tasks": 0, "test_full_query": 0,
               "eligible": False, "note": ""}
        if name in SESSION_PROTOCOLS and "session_id" not in events.columns:
            row["note"] = "no session_id column"
        else:
            try:
                parts = protocol_parts(events, name, split)
            except ValueError as err:
                if name == protocol:
                    raise
                row["note"] = str(err)
            else:
                evidence = evidence_report(parts, k_support, n_query, needs)
                tried[name] = (parts, evidence)
                row.update(train_tasks=evidence.tasks["train"], val_tasks=evidence.tasks["valid"],
                           test_tasks=evidence.tasks["test"], eligible=evidence.enough,
                           test_full_query=int(evidence.counts.loc["full_query", "test"]),
                           note="" if evidence.enough else f"{evidence.bottleneck} in {evidence.short_part}")
        rows.append(row)
    candidates = pd.DataFrame(rows)

    if protocol != "auto":
        if protocol not in tried:  # a session protocol without session_id
            protocol_parts(events, protocol, split)
        parts, evidence = tried[protocol]
        reason = f"{protocol} (asked for): {parts.description}. " + _verdict(evidence)
        return ProtocolChoice(protocol, reason, candidates, evidence, parts, k_support, n_query)

    temporal = tried.get("temporal_new_users")
    if temporal and temporal[1].enough:
        parts, evidence = temporal
        reason = (f"temporal_new_users, the honest protocol of new users: {parts.description}. "
                  + _verdict(evidence))
        return ProtocolChoice("temporal_new_users", reason, candidates, evidence, parts, k_support, n_query)
    row = candidates.set_index("protocol").loc["temporal_new_users"]
    if temporal:
        why_not = (f"Users first seen after the cut at the {split.cut_quantile} quantile of time give only "
                   f"{row['val_tasks']} validation and {row['test_tasks']} test tasks (at least "
                   f"{needs.min_val_tasks} and {needs.min_test_tasks} needed)")
    else:
        why_not = f"No temporal split of new users: {row['note'].split(';')[0]}"
    held = tried.get("held_out_users")
    if held and held[1].enough:
        parts, evidence = held
        reason = f"{why_not}, so held_out_users: {parts.description}. " + _verdict(evidence)
        return ProtocolChoice("held_out_users", reason, candidates, evidence, parts, k_support, n_query)
    available = [name for name in AUTO_ORDER if name in tried]
    if not available:
        raise ValueError(f"no protocol can split this log: {'; '.join(candidates['note'])}")

    def closeness(name: str) -> float:
        ev = tried[name][1]
        return min(ev.tasks[p] / max(ev.needed[p], 1) for p in SPLIT_PARTS)

    best = max(available, key=closeness)  # ties keep the preferred (temporal) protocol
    parts, evidence = tried[best]
    reason = f"{why_not}. Best available, {best}: {parts.description}. " + _verdict(evidence)
    return ProtocolChoice(best, reason, candidates, evidence, parts, k_support, n_query)


def _verdict(evidence: Evidence) -> str:
    return evidence.sentence() if evidence.enough else "Not enough evidence: " + evidence.sentence()


__all__ = [
    "AUTO_ORDER",
    "PROTOCOLS",
    "PROTOCOL_BUILDERS",
    "SESSION_PROTOCOLS",
    "ProtocolChoice",
    "ProtocolParts",
    "ProtocolSplit",
    "check_protocol",
    "choose_protocol",
    "protocol_parts",
]
