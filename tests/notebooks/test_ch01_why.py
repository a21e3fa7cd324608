"""Chapter 1 on a small log: the glued statistics are consistent with each other."""

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
    # Exercise 1.2's solution: the weekly shares bracket their own mean.
    assert values["syn_weekly_share_min"] <= values["syn_weekly_share_mean"] <= values["syn_weekly_share_max"]
    assert "retail_users" not in values  # no data: the real-shop section is skipped
