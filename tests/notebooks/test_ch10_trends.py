"""Chapter 10 with small parameters: the illustrations run and their verdicts follow the toy's truth."""

from __future__ import annotations

from tests.notebooks.harness import run_notebook


def test_trends_small(tmp_path):
    values = run_notebook(
        "10_trends.ipynb", tmp_path,
        N_TRAIN_TASKS=200, N_VAL_TASKS=60, N_TEST_TASKS=100, META_STEPS=60, INNER_LRS=[0.1, 0.3, 1.0],
        SHARED_LEVELS=[0.0, 1.0], DEVICE="cpu",
    )
    # Unrelated shops (shared = 0): a start meta-trained on the same shop beats one from another
    # shop, by a paired interval entirely below zero.
    assert values["trend_auc_b_on_b"] > values["trend_auc_a_on_b"]
    assert values["trend_gap_low_ci_high"] < 0
    # shared = 1: shop B *is* shop A with other users, so A's start is as good as B's own
    # (no large gap), clearly better than where nothing is shared, and beats an untrained start.
    assert abs(values["trend_gap_high"]) < 0.05
    assert values["trend_gap_high"] > values["trend_gap_low_ci_high"]
    assert values["trend_gain_high_ci_low"] > 0
    assert values["trend_gain_high"] > values["trend_gain_low"]
    # Meta-SGD against the tuned MAML: the glued verdict is the one its paired interval implies.
    low, high = values["trend_metasgd_vs_maml_ci_low"], values["trend_metasgd_vs_maml_ci_high"]
    expected = "better" if low > 0 else "worse" if high < 0 else "no detectable difference"
    assert values["trend_metasgd_vs_maml_verdict"] == expected
    # Reptile as federated averaging (its own outer_lr steps) improves on its start.
    assert values["trend_fed_after"] > values["trend_fed_before"] + 0.02
    low, high = values["trend_fed_vs_maml_ci_low"], values["trend_fed_vs_maml_ci_high"]
    assert low <= values["trend_fed_vs_maml"] <= high
    # Exercise 10.3: tiny noise on each update costs little.
    assert abs(values["trend_ex_noise_cost"]) < 0.05
