"""Choose the cold-start protocol that fits a log, and say whether the evidence is enough.

``choice = choose_protocol(events, k_support=5, n_query=10)`` cuts the log with every protocol of
:mod:`metarec_ref.data.protocol_parts`, counts their tasks and picks one: ``protocol="auto"``
prefers temporal_new_users when it gives ``min_val_tasks`` validation and ``min_test_tasks`` test
tasks, else held_out_users; when neither does, the closer one comes back with ``enough`` False.
``choice.reason`` says why in one sentence with numbers; ``choice.candidates`` lists what was
considered; ``choice.evidence`` (:func:`evidence_report`) counts the users left after each filter of
:data:`EVIDENCE_FILTERS` and names the one that stopped a short part; ``choice.build_tasks()`` returns the
train / valid / test tasks; ``choice.require_enough()`` stops with ``reason`` when they are too few.

Users with fewer events than asked are counted, never dropped silently: a task needs K_SUPPORT
events and one later event; a shorter query set than N_QUERY is kept, padded and masked.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from metarec_ref.data.protocol_parts import (
    PROTOCOLS,
    SESSION_PROTOCOLS,
    SPLIT_PARTS,
    ProtocolParts,
    check_protocol,
    protocol_parts,
)
from metarec_ref.data.tasks import Tasks

AUTO_ORDER = ("temporal_new_users", "held_out_users")  # what "auto" may pick, in order of preference
# Filters applied in turn to the users (items) of each part; each row of Evidence.counts is nested
# in the one above it.
EVIDENCE_FILTERS = ("all", "in_part", "k_plus_1_events", "has_query", "full_query")

FILTER_TEXT = {
    "all": "all {entity} of the log",
    "in_part": "{entity} in the {part} part",
    "k_plus_1_events": "at least K_SUPPORT + 1 = {k1} events",
    "has_query": "a query event after the support",
    "full_query": "all N_QUERY = {n} query events",
}


@dataclass
class Evidence:
    """Users (items) left after each filter, per part, and whether the tasks are enough.

    ``counts``: rows :data:`EVIDENCE_FILTERS`, columns :data:`SPLIT_PARTS`. Tasks = the
    ``has_query`` row; those not in ``full_query`` have a short query set (kept, padded and masked).
    """

    protocol: str
    entity: str  # "users" or "items"
    k_support: int
    n_query: int
    counts: pd.DataFrame
    needed: dict[str, int]
    enough: bool
    short_part: str | None = None  # the part furthest below what it needs
    bottleneck: str | None = None  # the EVIDENCE_FILTERS key that left the short part too few
    advice: str = ""

    @property
    def tasks(self) -> dict[str, int]:
        return {part: int(self.counts.loc["has_query", part]) for part in SPLIT_PARTS}

    @property
    def short_query(self) -> dict[str, int]:
        """Tasks per part whose query set holds fewer than ``n_query`` events."""
        c = self.counts
        return {part: int(c.loc["has_query", part] - c.loc["full_query", part]) for part in SPLIT_PARTS}

    def filter_text(self, key: str, part: str = "test") -> str:
        return FILTER_TEXT[key].format(entity=self.entity, part=part, k1=self.k_support + 1, n=self.n_query)

    def sentence(self) -> str:
        """Tasks per part against what is needed, and, when short, what stopped them and what to change."""
        t, need = self.tasks, self.needed
        text = (f"{self.protocol} gives {t['train']} training, {t['valid']} validation and {t['test']} test "
                f"tasks with K_SUPPORT={self.k_support} (at least {need['train']}, {need['valid']} and "
                f"{need['test']} needed; {self.short_query['test']} test tasks have fewer than "
                f"N_QUERY={self.n_query} query events, padded and masked)")
        if self.enough:
            return text + "."
        part, key = self.short_part, self.bottleneck
        above = EVIDENCE_FILTERS[EVIDENCE_FILTERS.index(key) - 1]
        kept, before = int(self.counts.loc[key, part]), int(self.counts.loc[above, part])
        return (f"{text}. In the {part} part, '{self.filter_text(key, part)}' left {kept} of {before} "
                f"{self.entity}: {self.advice}.")


def _advice(parts: ProtocolParts, key: str, part: str, k_support: int, cut_quantile: float | None) -> str:
    if key == "in_part":
        if parts.name == "temporal_new_users":
            return f"use PROTOCOL='held_out_users', or lower CUT_QUANTILE (now {cut_quantile})"
        if parts.name == "new_items":
            return f"lower CUT_QUANTILE (now {cut_quantile}) or use a longer log"
        short = {"valid": "val", "test": "test", "train": "train"}[part]
        return f"use a longer log (more users), raise {short}_fraction, or lower min_{short}_tasks"
    if key == "k_plus_1_events":
        text = f"lower K_SUPPORT (now {k_support}) or use a longer log"
        if parts.name == "temporal_new_users":
            text += ", or use PROTOCOL='held_out_users' (whole histories, not the weeks after the cut)"
        return text
    if parts.name == "basket_completion":
        return (f"the K-th support event's basket has no later item; lower K_SUPPORT (now {k_support}) "
                f"or use PROTOCOL='held_out_users'")
    return (f"events tied in time with the K-th support event (one basket) cannot be queries; lower "
            f"K_SUPPORT (now {k_support}) or use a longer log")


def evidence_report(
    parts: ProtocolParts,
    k_support: int,
    n_query: int,
    *,
    min_train_tasks: int = 2,
    min_val_tasks: int = 30,
    min_test_tasks: int = 100,
    cut_quantile: float | None = None,
) -> Evidence:
    """Users (items) left after each filter of :data:`EVIDENCE_FILTERS` per part; are the tasks enough?

    When a part falls short, the bottleneck is ``in_part`` if the part itself holds fewer users
    than needed, else the later filter that removed most of them. cut_quantile only words advice.
    """
    if k_support < 1 or n_query < 1:
        raise ValueError(f"k_support and n_query must be >= 1, got {k_support}, {n_query}")
    columns = {}
    for part in SPLIT_PARTS:
        frame = getattr(parts, part)
        sizes = frame.groupby(parts.entity, sort=False).size()
        tasks = parts.build_tasks(part, k_support, n_query)
        columns[part] = [parts.n_entities, len(sizes), int((sizes >= k_support + 1).sum()),
                         tasks.num_tasks, int((tasks.keys["n_query"] >= n_query).sum())]
    counts = pd.DataFrame(columns, index=pd.Index(EVIDENCE_FILTERS, name="filter"))
    needed = {"train": min_train_tasks, "valid": min_val_tasks, "test": min_test_tasks}
    entity = "users" if parts.entity == "user_id" else "items"
    evidence = Evidence(parts.name, entity, k_support, n_query, counts, needed, enough=True)
    ratio = {part: evidence.tasks[part] / max(needed[part], 1) for part in SPLIT_PARTS}
    short = [part for part in ("test", "valid", "train") if ratio[part] < 1]
    if not short:
        return evidence
    part = min(short, key=lambda p: ratio[p])
    if counts.loc["in_part", part] < needed[part]:
        key = "in_part"
    else:
        drops = {k: counts.loc[EVIDENCE_FILTERS[i - 1], part] - counts.loc[k, part]
                 for i, k in enumerate(EVIDENCE_FILTERS) if k in ("k_plus_1_events", "has_query")}
        key = max(drops, key=lambda k: drops[k])
    evidence.enough, evidence.short_part, evidence.bottleneck = False, part, key
    evidence.advice = _advice(parts, key, part, k_support, cut_quantile)
    return evidence


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
    min_val_tasks: int = 30,
    min_test_tasks: int = 100,
    min_train_tasks: int = 2,
    cut_quantile: float = 0.8,
    val_fraction: float = 0.1,
    test_fraction: float = 0.1,
    seed: int = 0,
) -> ProtocolChoice:
    """Try every protocol on a validated log, pick one and explain why (see the module docstring).

    protocol: ``"auto"`` prefers temporal_new_users, then held_out_users, each only when it gives
    ``min_val_tasks`` and ``min_test_tasks``; when neither does, the closer one is returned with
    ``enough`` False and the reason names the filter that stopped it. A protocol name forces it.
    """
    check_protocol(protocol, allow_auto=True)
    split_args = dict(cut_quantile=cut_quantile, val_fraction=val_fraction, test_fraction=test_fraction,
                      seed=seed)
    need = dict(min_train_tasks=min_train_tasks, min_val_tasks=min_val_tasks, min_test_tasks=min_test_tasks,
                cut_quantile=cut_quantile)
    rows, tried = [], {}
    for name in PROTOCOLS:
        row = {"protocol": name, "train_tasks": 0, "val_tasks": 0, "test_tasks": 0, "test_full_query": 0,
               "eligible": False, "note": ""}
        if name in SESSION_PROTOCOLS and "session_id" not in events.columns:
            row["note"] = "no session_id column"
        else:
            try:
                parts = protocol_parts(events, name, **split_args)
            except ValueError as err:
                if name == protocol:
                    raise
                row["note"] = str(err)
            else:
                evidence = evidence_report(parts, k_support, n_query, **need)
                tried[name] = (parts, evidence)
                row.update(train_tasks=evidence.tasks["train"], val_tasks=evidence.tasks["valid"],
                           test_tasks=evidence.tasks["test"], eligible=evidence.enough,
                           test_full_query=int(evidence.counts.loc["full_query", "test"]),
                           note="" if evidence.enough else f"{evidence.bottleneck} in {evidence.short_part}")
        rows.append(row)
    candidates = pd.DataFrame(rows)

    if protocol != "auto":
        if protocol not in tried:  # a session protocol without session_id
            protocol_parts(events, protocol, **split_args)
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
        why_not = (f"Users first seen after the cut at the {cut_quantile} quantile of time give only "
                   f"{row['val_tasks']} validation and {row['test_tasks']} test tasks (at least "
                   f"{min_val_tasks} and {min_test_tasks} needed)")
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
    "choose_protocol",
    "Evidence",
    "EVIDENCE_FILTERS",
    "evidence_report",
    "ProtocolChoice",
]
