"""The book's first page states what the chapters found; its words must match their results.

The intro pastes every number from the chapters (cross-page glue, checked by the strict book
build); these tests check the sentences around them against the same committed results, so a
re-executed chapter whose verdict flips fails here instead of leaving the first page wrong.
"""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest

from tests.notebooks.harness import glued_values

ROOT = Path(__file__).resolve().parents[1]
INTRO = ROOT / "book" / "intro.md"


def glued(chapter: str) -> dict:
    return glued_values(nbformat.read(ROOT / "notebooks" / f"{chapter}.ipynb", as_version=4))


def test_every_key_the_intro_pastes_exists_in_its_chapter():
    refs = re.findall(r"\{glue:text\}`/notebooks/([\w.]+)\.ipynb::(\w+)", INTRO.read_text())
    assert len(refs) >= 10
    for chapter, key in refs:
        assert key in glued(chapter), f"book/intro.md pastes {key!r}, which {chapter} does not glue"


def test_meta_learning_wins_on_users_whose_tastes_differ():
    ch2 = glued("02_learning_to_learn")
    assert ch2["ch2_maml_verdict_k5"] == "better"
    assert ch2["ch2_maml_ci_low_k5"] > 0
    assert 0 <= ch2["ch2_ex2_share_kept"] < 0.5  # "only ... of that gain is left" when users are alike


def test_the_sketch_objective_loses_to_the_corrected_maml():
    ch4 = glued("04_article_code_debugged")
    assert ch4["fix_memorising_verdict"] == "loses to"
    assert ch4["fix_memorising_ci_high"] < 0


@pytest.mark.parametrize("chapter, better, cells", [
    ("07_online_retail", "ch7_full_n_better", "ch7_full_n_cells"),
    ("07b_residual_meta_learner", "ch7b_retail_meta_vs_best_classical_n_better", "ch7b_retail_n_cells"),
])
def test_on_the_real_log_meta_learning_did_not_earn_its_keep(chapter, better, cells):
    values = glued(chapter)
    if cells not in values:
        pytest.skip(f"{chapter} ran without the Online Retail data")
    assert values[cells] > 0
    assert values[better] == 0, f"{chapter}: a meta-learner now wins somewhere; rewrite the intro's fourth finding"
