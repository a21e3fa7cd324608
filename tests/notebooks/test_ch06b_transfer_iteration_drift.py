"""Chapter 6b with small parameters: transfer with its controls, fast iteration, drift with users resampled.

Checks come from identities of the analysis (the per-window gaps, weighted by their tasks, add up
to the pooled gap), known truths of the shop (users recur across windows; the oracle is a ceiling)
and the reported intervals.
"""

from __future__ import annotations

from tests.notebooks.harness import run_notebook
from tests.notebooks.test_ch06_application_scenarios import agrees_with_interval


def test_transfer_iteration_drift_small(tmp_path):
    values = run_notebook(
        "06b_transfer_iteration_drift.ipynb", tmp_path,
        N_USERS=1000, N_INTERACTIONS=60000, META_STEPS=40, CURVE_STEPS=3, RETRAIN_EPOCHS=[1],
        FT_STEPS_GRID=[0, 1, 2, 4], FT_LR_GRID=[0.01, 0.1, 1.0], POOLED_EPOCHS_GRID=[0, 1, 3],
        SCRATCH_EPOCHS_GRID=[1, 3, 10], N_BOOT=2000, DEVICE="cpu",
    )
    # Transfer: the oracle is a ceiling; verdicts agree with their intervals; the reading follows the verdict.
    assert values["ch6b_n_target_events"] == 500 and values["ch6b_n_transfer_tasks"] > 10
    for slug in ("maml", "control", "pooled", "pooled_ft", "scenario_only", "cold_ft"):
        assert values["ch6b_transfer_auc_oracle"] > values[f"ch6b_transfer_auc_{slug}"]
    assert agrees_with_interval(values["ch6b_transfer_verdict"], values["ch6b_transfer_maml_ci"])
    assert agrees_with_interval(values["ch6b_transfer_vs_control_verdict"], values["ch6b_transfer_vs_control_ci"])
    reading = values["ch6b_transfer_reading"]
    assert ("adds nothing detectable" in reading) == (values["ch6b_transfer_vs_control_verdict"] == "no detectable difference")
    # Fast iteration: one step of MAML's meta-trained inner loop moves the start.
    assert values["ch6b_curve_maml_1"] != values["ch6b_curve_maml_0"]
    assert values["ch6b_curve_maml_best"] >= max(values["ch6b_curve_maml_0"], values["ch6b_curve_maml_1"])
    # Drift: users recur across windows (so the bootstrap resamples users); per-window gaps add up to the pooled one.
    assert values["ch6b_n_eval_windows"] >= 1
    assert values["ch6b_n_window_users"] < values["ch6b_n_window_tasks"]
    assert abs(values["ch6b_drift_share_sum"] - 1.0) < 1e-6
    for slug in ("stale", "ft", "retrained", "global"):
        assert agrees_with_interval(values[f"ch6b_drift_{slug}_verdict"], values[f"ch6b_drift_{slug}_ci"])
    assert values["ch6b_drift_oracle"] > values["ch6b_drift_fresh"]
    assert values["ch6b_n_comparisons"] == 7 + 4 + values["ch6b_n_eval_windows"]
    assert values["ch6b_n_holm_decided"] <= values["ch6b_n_raw_decided"]
