"""Chapter 3b with small parameters: every learner learns, none reaches the oracle, verdicts follow
the paired CIs, and the calibration table is consistent with the log losses."""

from __future__ import annotations

from tests.notebooks.harness import run_notebook
from tests.notebooks.test_ch03_algorithms import check_verdict

LEARNERS = ("maml", "fomaml", "metasgd", "reptile", "protonet", "matchingnet")


def test_metric_based_small(tmp_path):
    values = run_notebook(
        "03b_metric_based.ipynb", tmp_path,
        N_TRAIN_TASKS=200, N_VAL_TASKS=50, N_TEST_TASKS=100, META_STEPS=60, TIMING_STEPS=3, DEVICE="cpu",
    )
    for key in LEARNERS:
        assert values[f"ch3b_auc_{key}"] > values[f"ch3b_auc_untrained_{key}"] + 0.05, key
        assert values["ch3b_auc_oracle"] > values[f"ch3b_auc_{key}"], key
        if key != "maml":
            check_verdict(values, "ch3b", key)
    above = [key for key in LEARNERS if values[f"ch3b_log_loss_{key}"] > values["ch3b_constant_log_loss"]]
    assert values["ch3b_n_above_constant"] == len(above)
    for key in ("matchingnet", "reptile", "maml"):
        assert 0 <= values[f"ch3b_confident_wrong_{key}"] <= 1
        assert 0 < values[f"ch3b_mean_p_{key}"] < 1
