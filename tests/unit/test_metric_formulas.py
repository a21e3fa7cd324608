"""The worked example of book/metrics.md: its inputs and printed numbers agree with the code.

Inputs and expected values are read from the page itself, so the page cannot drift from the code.
"""

from __future__ import annotations

import ast
import math
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from metarec_ref.eval import metrics

PAGE = Path(__file__).resolve().parents[2] / "book" / "metrics.md"
COLUMNS = ("user A", "user B", "mean over users")


def _example_blocks(text: str) -> dict:
    """Literal assignments of the ```python blocks whose first line starts '# worked example'."""
    values = {}
    for block in re.findall(r"```python\n(.*?)```", text, flags=re.S):
        if not block.startswith("# worked example"):
            continue
        for node in ast.parse(block).body:
            values[node.targets[0].id] = ast.literal_eval(node.value)
    return values


def _results_table(text: str) -> dict[str, list[float]]:
    """``{metric: [user A, user B, mean]}`` from the page's '| metric | user A | ...' table."""
    table = text[text.index("| metric | user A |"):]
    rows = {}
    for line in table.splitlines()[2:]:
        if not line.startswith("|"):
            break
        cells = [c.strip() for c in line.strip("|").split("|")]
        rows[cells[0]] = [math.nan if c == "NaN" else float(c) for c in cells[1:]]
    return rows


@pytest.fixture(scope="module")
def page():
    text = PAGE.read_text(encoding="utf-8")
    return _example_blocks(text), _results_table(text)


def _per_user_and_mean(values: torch.Tensor) -> list[float]:
    per_user = values.tolist()
    return [*per_user, metrics.bootstrap_ci(values).mean]


def _computed(example: dict) -> dict[str, list[float]]:
    logits = torch.tensor(example["logits"])
    labels = torch.tensor(example["labels"])
    mask = torch.tensor(example["mask"], dtype=torch.bool)
    scores = torch.tensor(example["scores"])
    relevant = torch.tensor(example["relevant"], dtype=torch.bool)
    candidates = torch.tensor(example["candidates"], dtype=torch.bool)
    k = example["k"]
    return {
        "AUC": _per_user_and_mean(metrics.per_task_auc(logits, labels, mask)),
        "log loss": _per_user_and_mean(metrics.per_task_log_loss(logits, labels, mask)),
        f"HR@{k}": _per_user_and_mean(metrics.per_task_hit_rate(scores, relevant, candidates, k=k)),
        f"NDCG@{k}": _per_user_and_mean(metrics.per_task_ndcg(scores, relevant, candidates, k=k)),
    }


def test_page_table_matches_the_code(page):
    example, printed = page
    computed = _computed(example)
    assert set(printed) == set(computed), f"page rows {sorted(printed)} vs computed {sorted(computed)}"
    for metric, row in printed.items():
        for column, shown, value in zip(COLUMNS, row, computed[metric]):
            if math.isnan(shown):
                assert math.isnan(value), f"{metric}, {column}: page says NaN, code gives {value}"
            else:
                assert value == pytest.approx(shown, abs=5e-5), f"{metric}, {column}"


def test_hand_formulas_match_the_code(page):
    """The closed forms the page derives by hand (AUC 5.5/6, HR 1 - 1/3, the NDCG discounts)."""
    example, _ = page
    computed = _computed(example)
    assert computed["AUC"][0] == pytest.approx(5.5 / 6)
    z = np.array(example["logits"][0][:5])
    y = np.array(example["labels"][0][:5])
    assert computed["log loss"][0] == pytest.approx(np.mean(np.log1p(np.exp(z)) - y * z))
    assert computed["HR@3"][0] == pytest.approx(1 - 1 / 3)
    d = 1 / np.log2(np.arange(3) + 2)
    assert computed["NDCG@3"][0] == pytest.approx(((d[1] + d[2] + 0) / 3) / (d[0] + d[1]))


def test_padding_and_non_candidates_matter(page):
    """Unmasking user A's padded 9.0 (a non-click scored highest) changes AUC: the mask is honoured."""
    example, _ = page
    labels = torch.tensor(example["labels"])
    logits = torch.tensor(example["logits"])
    all_in = metrics.per_task_auc(logits, labels)[0].item()
    assert all_in < _computed(example)["AUC"][0]
