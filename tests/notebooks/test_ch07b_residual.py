"""Chapter 7b with small parameters: zero steps exact, verdicts read off intervals, the fallback exact."""

from __future__ import annotations

import pytest

from metarec_ref.data import find_online_retail
from tests.notebooks.harness import run_notebook

SMALL = {"SYNTH_USERS": 500, "SYNTH_ITEMS": 80, "SYNTH_INTERACTIONS": 10_000, "SYNTH_K_VALUES": [1, 3],
         "META_STEPS": 6, "N_SEEDS": 2, "N_BOOT": 300, "MAX_TRAIN_CUSTOMERS": 80, "DEVICE": "cpu"}


def check_cells(checks) -> None:
    """Every comparison: the estimate inside its CI, the verdict the CI implies, and an exact zero
    against the unadapted score wherever validation chose zero inner steps."""
    assert checks
    for diff, low, high, verdict, comparison, steps in checks:
        assert low <= diff <= high
        expected = "better" if low > 0 else "worse" if high < 0 else "no detectable difference"
        assert verdict == expected, (low, high, verdict)
        if steps == 0 and comparison == "meta_vs_unadapted":
            assert diff == low == high == 0.0


def test_residual_chapter_synthetic_without_data(tmp_path):
    values = run_notebook("07b_residual_meta_learner.ipynb", tmp_path, DATA_DIR=str(tmp_path), **SMALL)
    assert values["ch7b_zero_steps_exact"] is True
    assert values["ch7b_demo_customers"] > 10
    assert values["ch7b_synth_n_cells"] == 2
    check_cells(values["ch7b_synth_checks"])
    counts = sum(values[f"ch7b_synth_meta_vs_unadapted_n_{v}"] for v in ("better", "worse", "tie"))
    assert counts == values["ch7b_synth_n_cells"]
    assert "ch7b_retail_n_cells" not in values  # no data: the Online Retail part is skipped


def test_residual_chapter_online_retail(tmp_path):
    try:
        data = find_online_retail()
    except FileNotFoundError as err:
        pytest.skip(f"07b_residual_meta_learner.ipynb needs the UCI Online Retail log for this part: {err}")
    values = run_notebook("07b_residual_meta_learner.ipynb", tmp_path, DATA_DIR=str(data),
                          PROTOCOLS=["heldout/next_products"], K_VALUES=[3], **SMALL)
    assert values["ch7b_retail_n_cells"] == 1
    check_cells(values["ch7b_retail_checks"])
    # About 400 test customers per held-out protocol (10% of 4,338 customers, those with a query).
    assert 300 < values["ch7b_retail_min_heldout_test"] < 440
