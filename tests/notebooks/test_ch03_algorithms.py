"""Chapter 3 with small parameters: every learner learns, none reaches the oracle, timings are glued."""

from __future__ import annotations

from tests.notebooks.harness import run_notebook

LEARNERS = ("maml", "fomaml", "metasgd", "reptile", "protonet", "matchingnet")


def test_algorithms_small(tmp_path):
    values = run_notebook(
        "03_algorithms.ipynb", tmp_path,
        N_TRAIN_TASKS=200, N_VAL_TASKS=50, N_TEST_TASKS=100, META_STEPS=60, CURVE_STEPS=3,
        TIMING_STEPS=3, DEVICE="cpu",
    )
    for key in LEARNERS:
        assert values[f"ch3_auc_{key}"] > values[f"ch3_auc_untrained_{key}"] + 0.05, key
        assert values["ch3_auc_oracle"] > values[f"ch3_auc_{key}"], key
    assert values["ch3_gain_verdict"] == "Every learner gained"
    # Meta-SGD's inner rates are meta-parameters: training moves them away from INNER_LR.
    assert values["ch3_metasgd_lr_min"] < values["ch3_inner_lr"] < values["ch3_metasgd_lr_max"]
    # Adapting from the meta-learned start beats scoring the start itself.
    assert values["ch3_curve_best_maml"] > values["ch3_curve_start_maml"] + 0.05
    assert values["ch3_curve_steps"] == 3
    assert values["ch3_ms_maml"] > 0 and values["ch3_ms_protonet"] > 0
    assert values["ch3_verdict_fomaml"] in ("better", "worse", "no detectable difference")
