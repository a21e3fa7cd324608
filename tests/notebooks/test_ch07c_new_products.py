"""Chapter 7c with small parameters: the plain-torch meta-gradient equals the library's, and on
Online Retail every verdict follows from its interval and Holm's correction."""

from __future__ import annotations

import pytest

from metarec_ref.data import find_online_retail
from tests.notebooks.harness import run_notebook

SMALL = {"K_VALUES": [0, 3], "N_SEEDS": 2, "TABLE_STEPS": 20, "META_STEPS": 10, "N_BOOT": 300, "DEVICE": "cpu"}


def test_new_products_chapter_without_data(tmp_path):
    values = run_notebook("07c_new_products.ipynb", tmp_path, DATA_DIR=str(tmp_path), **SMALL)
    assert values["ch7c_scratch_matches"] is True
    assert "ch7c_n_test" not in values and "not run" in values["ch7c_answer"]


def test_new_products_chapter_online_retail(tmp_path):
    try:
        data = find_online_retail()
    except FileNotFoundError as err:
        pytest.skip(str(err))
    values = run_notebook("07c_new_products.ipynb", tmp_path, DATA_DIR=str(data.parent), **SMALL)
    assert values["ch7c_scratch_matches"] is True
    assert values["ch7c_n_test"][0] > values["ch7c_n_test"][3] > 50  # fewer products have more than 3 buyers
    assert values["ch7c_family"] == 3  # best opponent at K = 0 and 3, warm-up at K = 3
    for diff, low, high, verdict, p_holm, verdict_holm in values["ch7c_checks"]:
        assert low <= diff <= high
        assert verdict == ("better" if low > 0 else "worse" if high < 0 else "no detectable difference")
        assert verdict_holm == (verdict if p_holm < 0.05 else "no detectable difference")
    assert 0 <= values["ch7c_n_better"] <= 2
    assert all(0 < v < 1 for v in values["ch7c_meta_ndcg"].values())
