"""Whether a protocol's tasks are enough for a verdict, and, when not, which filter stopped them.

:func:`evidence_report` counts, for each part of a :class:`~metarec_ref.data.protocols.ProtocolParts`,
the users (items) left after each filter of :data:`EVIDENCE_FILTERS` and compares the tasks with
:class:`EvidenceNeeds`; a short part names the filter that removed most of its users and the fix.
Users with fewer events than asked are counted, never dropped silently: a task needs K_SUPPORT
events and one later event; a shorter query set than N_QUERY is kept, padded and masked.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import pandas as pd

if TYPE_CHECKING:
    from metarec_ref.data.protocols import ProtocolParts

SPLIT_PARTS = ("train", "valid", "test")
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


def _advice(parts: ProtocolParts, key: str, part: str, k_support: int) -> str:
    cut_quantile = parts.split.cut_quantile
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


@dataclass(frozen=True)
class EvidenceNeeds:
    """The tasks each part must give before a verdict is stated."""

    min_train_tasks: int = 2
    min_val_tasks: int = 30
    min_test_tasks: int = 100

    def of(self, part: str) -> int:
        return {"train": self.min_train_tasks, "valid": self.min_val_tasks, "test": self.min_test_tasks}[part]


def evidence_report(parts: ProtocolParts, k_support: int, n_query: int, needs: EvidenceNeeds | None = None) -> Evidence:
    """Users (items) left after each filter of :data:`EVIDENCE_FILTERS` per part; are the tasks enough?

    When a part falls short, the bottleneck is ``in_part`` if the part itself holds fewer users
    than needed, else the later filter that removed most of them.
    """
    needs = needs or EvidenceNeeds()
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
    needed = {part: needs.of(part) for part in SPLIT_PARTS}
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
    evidence.advice = _advice(parts, key, part, k_support)
    return evidence


__all__ = ["EVIDENCE_FILTERS", "SPLIT_PARTS", "Evidence", "EvidenceNeeds", "evidence_report"]
