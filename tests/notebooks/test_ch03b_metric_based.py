"""Chapter 3b with small parameters: the from-scratch ProtoNet equals the library's, every learner
learns, none reaches the oracle, results follow the paired CIs, and the figures' and calibration
numbers are consistent."""

from __future__ import annotations

from tests.notebooks.harness import run_notebook
from tests.notebooks.test_ch03_algorithms import check_verdict

LEARNERS = ("maml", "fomaml", "metasgd", "reptile", "protonet", "matchingnet")


def test_metric_based_small(tmp_path):
    values = run_notebook(
        "03b_metric_based.ipynb", tmp_path,
        N_TRAIN_TASKS=200, N_VAL_TASKS=50, N_TEST_TASKS=100, META_STEPS=60, TIMING_STEPS=3, DEVICE="cpu",
    )
    # From scratch: the library's logits and meta-gradient to rounding.
    assert values["ch3b_scratch_gap_logits"] < 1e-10 and values["ch3b_scratch_gap_grads"] < 1e-10
    assert values["ch3b_scratch_gap_text"] == "below 1e-12" and values["ch3b_scratch_users"] > 0
    for key in LEARNERS:
        assert values[f"ch3b_auc_{key}"] > values[f"ch3b_auc_untrained_{key}"] + 0.05, key
        assert values["ch3b_auc_oracle"] > values[f"ch3b_auc_{key}"], key
        if key != "maml":
            check_verdict(values, "ch3b", key)
    better = "ProtoNet" if values["ch3b_auc_protonet"] > values["ch3b_auc_matchingnet"] else "MatchingNet"
    assert values["ch3b_better_metric"] == better
    # The figures' numbers: a trained ProtoNet puts most query events on their label's side; the two
    # largest of five attention weights hold at least 2/5 of the attention.
    assert 0.5 < values["ch3b_proto_right_side"] <= 1
    assert 0.4 - 1e-9 <= values["ch3b_attention_top_two"] <= 1 + 1e-9
    assert 0 <= values["ch3b_attention_same_label"] <= 1
    above = [key for key in LEARNERS if values[f"ch3b_log_loss_{key}"] > values["ch3b_constant_log_loss"]]
    assert values["ch3b_n_above_constant"] == len(above)
    for key in ("matchingnet", "reptile", "maml"):
        assert 0 <= values[f"ch3b_confident_wrong_{key}"] <= 1
        assert 0 < values[f"ch3b_mean_p_{key}"] < 1
    for key in ("one_label_users", "confident_from_one_label", "wrong_from_one_label"):
        assert 0 <= values[f"ch3b_{key}"] <= 1, key
    # Exercises: the sentences follow from the numbers.
    assert values["ch3b_ex1_above_chance"] == ("above" if values["ch3b_ex1_protonet"] > 0.5 else "not above")
    spreads = {"ProtoNet": values["ch3b_ex2_spread_protonet"], "MatchingNet": values["ch3b_ex2_spread_matchingnet"]}
    assert values["ch3b_ex2_more_sensitive"] == max(spreads, key=spreads.get)
    below_constant = values["ch3b_ex3_recalibrated"] < values["ch3b_constant_log_loss"]
    assert values["ch3b_ex3_versus_constant"] == ("below" if below_constant else "not below")
