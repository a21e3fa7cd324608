"""The book's answer on one page: each claim of the source article, where it is tested, and what
the chapters found, read from the chapters' own glued results (never typed by hand).

A chapter glues, for each headline comparison ``key``, the values ``{key}_diff``,
``{key}_low``, ``{key}_high`` (a difference ``method - reference`` with its 95% interval) and
``{key}_result`` (``"better"``, ``"worse"`` or ``"no detectable difference"``, after the
chapter's Holm correction). :func:`scorecard` reads those from the executed notebooks and writes
one cell per finding; ``tests/test_scorecard.py`` checks every cell against the chapter it cites.
"""

from __future__ import annotations

import ast
import json
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

GLUE_MIME = "application/papermill.record/text/plain"
RESULTS = ("better", "worse", "no detectable difference")


def glued_values(notebook: str | Path) -> dict:
    """Every value glued in an executed notebook, parsed back from its repr."""
    values = {}
    for cell in json.loads(Path(notebook).read_text())["cells"]:
        for output in cell.get("outputs", []):
            name = output.get("metadata", {}).get("scrapbook", {}).get("name")
            if name is None:
                continue
            text = output.get("data", {}).get(GLUE_MIME) or output.get("data", {}).get("text/plain")
            text = "".join(text) if isinstance(text, list) else text
            try:
                values[name] = ast.literal_eval(text)
            except (ValueError, SyntaxError):
                values[name] = text
    return values


@dataclass(frozen=True)
class Finding:
    """One headline comparison of one chapter: ``method - reference`` in ``metric``."""

    chapter: str  # notebook file name without .ipynb
    key: str  # glue prefix: {key}_diff, {key}_low, {key}_high, {key}_result
    comparison: str  # in words, e.g. "MAML vs the best tuned baseline, new users, K = 5"
    metric: str  # e.g. "AUC", "NDCG@10"


@dataclass(frozen=True)
class Claim:
    """A claim of the source article and the findings that test it (None: not tested there)."""

    area: str  # "use", "scenario" or "algorithm"
    claim: str
    synthetic: tuple[Finding, ...] = ()
    real: tuple[Finding, ...] = ()
    untested: str = ""  # why a column is empty, when it is


def describe(finding: Finding, values: dict) -> str:
    """``"better: +0.107 AUC [+0.091, +0.124] (MAML vs ..., ch. 02)"`` from a chapter's glued values."""
    missing = [f"{finding.key}_{part}" for part in ("diff", "low", "high", "result") if f"{finding.key}_{part}" not in values]
    if missing:
        raise KeyError(f"{finding.chapter} glues no {missing}: re-execute it, or fix the scorecard's key")
    result = values[f"{finding.key}_result"]
    if result not in RESULTS:
        raise ValueError(f"{finding.chapter}: {finding.key}_result is {result!r}, not one of {RESULTS}")
    diff, low, high = (values[f"{finding.key}_{part}"] for part in ("diff", "low", "high"))
    return (f"{result}: {diff:+.3f} {finding.metric} [{low:+.3f}, {high:+.3f}] "
            f"({finding.comparison}; {finding.chapter})")


def scorecard(claims: tuple[Claim, ...], folder: str | Path = "notebooks") -> pd.DataFrame:
    """One row per claim: where it is tested, and the findings on synthetic and on real data."""
    cache: dict[str, dict] = {}

    def cell(findings: tuple[Finding, ...]) -> str:
        if not findings:
            return "not tested"
        texts = []
        for finding in findings:
            if finding.chapter not in cache:
                cache[finding.chapter] = glued_values(Path(folder) / f"{finding.chapter}.ipynb")
            texts.append(describe(finding, cache[finding.chapter]))
        return "; ".join(texts)

    rows = []
    for claim in claims:
        chapters = dict.fromkeys(f.chapter for f in (*claim.synthetic, *claim.real))
        rows.append({"area": claim.area, "claim": claim.claim, "tested in": ", ".join(chapters) or "-",
                     "synthetic shop": cell(claim.synthetic), "real data": cell(claim.real),
                     "note": claim.untested})
    return pd.DataFrame(rows)


__all__ = ["Claim", "Finding", "describe", "glued_values", "scorecard"]
