"""Chapter 2 with small parameters: MAML beats scratch, stays below the oracle; verdicts follow the CIs."""

from __future__ import annotations

import ast

from tests.notebooks.harness import run_notebook


def test_learning_to_learn_small(tmp_path):
    values = run_notebook(
        "02_learning_to_learn.ipynb", tmp_path,
        N_TRAIN_TASKS=300, N_VAL_TASKS=60, N_TEST_TASKS=100, K_VALUES=[2, 5], META_STEPS=80, DEVICE="cpu",
    )
    assert values["ch2_auc_k5_MAML"] > values["ch2_auc_k5_scratch"] + 0.05
    assert values["ch2_auc_k5_oracle"] > values["ch2_auc_k5_MAML"]
    assert values["ch2_auc_k5_global"] > 0.55  # the shop-wide model knows something
    # The verdict is read off the paired CI: "better" needs the whole CI above zero.
    low, high = ast.literal_eval(values["ch2_maml_diff_ci_k5"])
    assert low <= values["ch2_maml_diff_k5"] <= high
    if values["ch2_maml_verdict_k5"] == "better":
        assert low > 0
    elif values["ch2_maml_verdict_k5"] == "worse":
        assert high < 0
    # Fine-tuning never gets more steps than MAML (the stated budget is the used budget).
    assert 0 <= values["ch2_finetune_steps"] <= values["ch2_inner_steps"]
