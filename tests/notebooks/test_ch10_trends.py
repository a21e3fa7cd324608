"""Chapter 10 with small parameters: the illustrations run and their glued verdicts are coherent."""

from __future__ import annotations

from tests.notebooks.harness import run_notebook


def test_trends_small(tmp_path):
    values = run_notebook(
        "10_trends.ipynb", tmp_path,
        N_TRAIN_TASKS=200, N_VAL_TASKS=60, N_TEST_TASKS=100, META_STEPS=60, INNER_LRS=[0.1, 1.0], DEVICE="cpu",
    )
    # A start meta-trained on the same shop beats one from another shop.
    assert values["trend_auc_b_on_b"] > values["trend_auc_a_on_b"]
    assert values["trend_transfer_verdict"] in ("better", "worse", "no detectable difference")
    assert values["trend_best_lr"] in (0.1, 1.0)
    # Reptile as federated averaging improves on its start.
    assert values["trend_fed_after"] > values["trend_fed_before"]
