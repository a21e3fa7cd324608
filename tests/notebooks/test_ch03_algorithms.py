"""Chapter 3 with small parameters: the from-scratch MAML equals the library's, every gradient-based
learner learns, none reaches the oracle, and each result agrees with its paired CI."""

from __future__ import annotations

from tests.notebooks.harness import run_notebook

LEARNERS = ("maml", "fomaml", "metasgd", "reptile")


def check_verdict(values: dict, prefix: str, key: str) -> None:
    """The Holm-corrected result of ``key`` follows from its paired CI and adjusted p-value."""
    low, high = values[f"{prefix}_diff_ci_low_{key}"], values[f"{prefix}_diff_ci_high_{key}"]
    assert low <= values[f"{prefix}_diff_{key}"] <= high, key
    verdict = values[f"{prefix}_verdict_{key}"]
    significant = values[f"{prefix}_p_holm_{key}"] < 0.05
    assert verdict == ("better" if significant and low > 0 else "worse" if significant and high < 0
                       else "no detectable difference"), key


def ci_verdict(values: dict, prefix: str, key: str) -> str:
    """The result of a single comparison, read off its 95% CI."""
    low, high = values[f"{prefix}_diff_ci_low_{key}"], values[f"{prefix}_diff_ci_high_{key}"]
    assert low <= values[f"{prefix}_diff_{key}"] <= high, key
    return "better" if low > 0 else "worse" if high < 0 else "no detectable difference"


def test_algorithms_small(tmp_path):
    values = run_notebook(
        "03_algorithms.ipynb", tmp_path,
        N_TRAIN_TASKS=200, N_VAL_TASKS=50, N_TEST_TASKS=100, META_STEPS=60, CURVE_STEPS=3,
        SMALL_META_STEPS=30, DEVICE="cpu",
    )
    # The from-scratch MAML: the library's meta-gradient and weights to rounding, finite differences too.
    assert values["ch3_scratch_gap"] < 1e-10 and values["ch3_scratch_steps_gap"] < 1e-10
    assert values["ch3_scratch_fd_error"] < 1e-6
    assert values["ch3_scratch_gap_text"] == "below 1e-12" and values["ch3_ex1_gap_text"] == "below 1e-12"
    for key in LEARNERS:
        assert values[f"ch3_auc_{key}"] > values[f"ch3_auc_untrained_{key}"] + 0.05, key
        assert values["ch3_auc_oracle"] > values[f"ch3_auc_{key}"], key
        if key != "maml":
            check_verdict(values, "ch3", key)
    # Meta-SGD's inner rates are meta-parameters: training moves them away from INNER_LR.
    assert values["ch3_metasgd_lr_min"] < values["ch3_inner_lr"] < values["ch3_metasgd_lr_max"]
    # Meta-SGD from two starting rates and two budgets: results read off the CIs, and the sentence
    # about the start follows from them.
    results = {key: ci_verdict(values, "ch3", key) for key in ("metasgd_low", "metasgd_small", "metasgd_small_low")}
    for key, result in results.items():
        assert values[f"ch3_verdict_{key}"] == result, key
    phrase = {"detectably better than": "better", "detectably worse than": "worse",
              "not detectably different from": "no detectable difference"}
    assert phrase[values["ch3_versus_metasgd_low"]] == results["metasgd_low"]
    main = phrase[values["ch3_versus_metasgd_main"]]  # uncorrected, against MAML alone
    matters = (main != results["metasgd_low"], results["metasgd_small"] != results["metasgd_small_low"])
    assert values["ch3_metasgd_start_lesson"] == {
        (False, True): "With this chapter's budget the starting rate does not change the result; with the smaller one it does",
        (True, True): "The starting rate changes the result with either budget",
        (False, False): "Here the starting rate changes the result with neither budget",
        (True, False): "With this chapter's budget the starting rate changes the result; with the smaller one it does not",
    }[matters]
    # Adapting from the meta-learned start beats scoring the start itself.
    assert values["ch3_curve_best_maml"] > values["ch3_curve_start_maml"] + 0.05
    # The best constant's log loss is the entropy of the click rate: at most log 2.
    assert 0 < values["ch3_constant_log_loss"] <= 0.6932
    assert values["ch3_n_events"] == values["ch3_k_support"] + values["ch3_n_query"]
    # Exercise 1: cosines of first-order and exact meta-gradients, and the sentence about their trend.
    cosines = [values[f"ch3_ex1_cosine_{steps}"] for steps in (1, 2, 5)]
    assert all(-1 <= c <= 1 + 1e-9 for c in cosines)
    assert values["ch3_ex1_trend"].startswith("yes") == (cosines[0] >= cosines[1] >= cosines[2])
    assert values["ch3_ex3_bottom_change"] <= values["ch3_ex3_top_change"]
