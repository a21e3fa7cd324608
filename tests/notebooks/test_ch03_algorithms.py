"""Chapter 3 with small parameters: every gradient-based learner learns, none reaches the oracle,
and each verdict agrees with its paired CI."""

from __future__ import annotations

from tests.notebooks.harness import run_notebook

LEARNERS = ("maml", "fomaml", "metasgd", "reptile")


def check_verdict(values: dict, prefix: str, key: str) -> None:
    low, high = values[f"{prefix}_diff_ci_low_{key}"], values[f"{prefix}_diff_ci_high_{key}"]
    assert low <= values[f"{prefix}_diff_{key}"] <= high, key
    verdict = values[f"{prefix}_verdict_{key}"]
    significant = values[f"{prefix}_p_holm_{key}"] < 0.05
    assert verdict == ("better" if significant and low > 0 else "worse" if significant and high < 0
                       else "no detectable difference"), key


def test_algorithms_small(tmp_path):
    values = run_notebook(
        "03_algorithms.ipynb", tmp_path,
        N_TRAIN_TASKS=200, N_VAL_TASKS=50, N_TEST_TASKS=100, META_STEPS=60, CURVE_STEPS=3, DEVICE="cpu",
    )
    for key in LEARNERS:
        assert values[f"ch3_auc_{key}"] > values[f"ch3_auc_untrained_{key}"] + 0.05, key
        assert values["ch3_auc_oracle"] > values[f"ch3_auc_{key}"], key
        if key != "maml":
            check_verdict(values, "ch3", key)
    # Meta-SGD's inner rates are meta-parameters: training moves them away from INNER_LR.
    assert values["ch3_metasgd_lr_min"] < values["ch3_inner_lr"] < values["ch3_metasgd_lr_max"]
    # Adapting from the meta-learned start beats scoring the start itself.
    assert values["ch3_curve_best_maml"] > values["ch3_curve_start_maml"] + 0.05
    # The best constant's log loss is the entropy of the click rate: at most log 2.
    assert 0 < values["ch3_constant_log_loss"] <= 0.6932
    assert values["ch3_n_events"] == values["ch3_k_support"] + values["ch3_n_query"]
