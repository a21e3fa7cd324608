"""The tour with small parameters: meta-training beats the untrained start."""

from __future__ import annotations

from tests.notebooks.harness import run_notebook


def test_tour_small(tmp_path):
    values = run_notebook("00_tour.ipynb", tmp_path, N_TRAIN_TASKS=200, N_TEST_TASKS=100, META_STEPS=60, DEVICE="cpu")
    assert values["tour_k"] == 5
    assert values["tour_auc_after"] > values["tour_auc_before"] + 0.1
