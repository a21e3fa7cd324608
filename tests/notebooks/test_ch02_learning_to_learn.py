"""Chapter 2 with small parameters: MAML beats scratch and stays below the oracle."""

from __future__ import annotations

from tests.notebooks.harness import run_notebook


def test_learning_to_learn_small(tmp_path):
    values = run_notebook(
        "02_learning_to_learn.ipynb", tmp_path,
        N_TRAIN_TASKS=300, N_VAL_TASKS=60, N_TEST_TASKS=100, K_VALUES=[2, 5], META_STEPS=80, DEVICE="cpu",
    )
    assert values["ch2_auc_k5_MAML"] > values["ch2_auc_k5_scratch"] + 0.05
    assert values["ch2_auc_k5_oracle"] > values["ch2_auc_k5_MAML"]
    assert values["ch2_auc_k5_global"] > 0.55  # the shop-wide model knows something
    assert values["ch2_k_max"] == 5
