"""Chapter 1 on a small log: the glued statistics are consistent with each other, and the exercise
solutions state what their runs found."""

from __future__ import annotations

import pytest

from tests.notebooks.harness import run_notebook


@pytest.mark.slow
def test_why_chapter_small(tmp_path):
    values = run_notebook(
        "01_why_fast_optimisation.ipynb", tmp_path,
        N_USERS=300, N_ITEMS=200, N_INTERACTIONS=6000, DATA_DIR="/nonexistent",
    )
    assert values["syn_users"] == 300
    assert values["syn_events"] <= 6000
    assert values["syn_share_users_le_5"] <= values["syn_share_users_le_10"] <= 1
    assert 0.1 < values["syn_top10_share"] < 1
    assert 0 < values["syn_new_user_share_mean"] < 1
    # Exercise 1.1: a narrower activity law (0.5 against the default 1.5) shares the same events more
    # evenly, so the median user has more of them and fewer users are light.
    assert values["syn_ex1_sigma"] == 1.5
    assert values["syn_ex1_median"] > values["syn_median_events_per_user"]
    assert values["syn_ex1_median_word"] == "more"
    assert values["syn_ex1_share_le_10"] < values["syn_share_users_le_10"]
    word = "far fewer" if values["syn_ex1_share_le_10"] < values["syn_share_users_le_10"] / 2 else "fewer"
    assert values["syn_ex1_share_word"] == word
    # Exercise 1.2's solution: the weekly shares bracket their own mean.
    assert values["syn_weekly_share_min"] <= values["syn_weekly_share_mean"] <= values["syn_weekly_share_max"]
    assert values["syn_weekly_vs_monthly"] == (
        "lower" if values["syn_weekly_share_mean"] < values["syn_new_user_share_mean"] else "higher")
    # No data: the real-shop section and exercise 1.3's numbers are skipped.
    assert "retail_users" not in values and "retail_top1_share" not in values
