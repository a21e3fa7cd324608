"""Chapter 6 with small parameters: every scenario runs end to end and its numbers are coherent."""

from __future__ import annotations

from tests.notebooks.harness import run_notebook

VERDICTS = ("better", "worse", "no detectable difference")


def test_application_scenarios_small(tmp_path):
    values = run_notebook(
        "06_application_scenarios.ipynb", tmp_path,
        N_USERS=1000, N_INTERACTIONS=60000, META_STEPS=40, K_VALUES=[1, 5], CURVE_STEPS=3,
        RETRAIN_EPOCHS=[1], N_BOOT=200, DEVICE="cpu",
    )
    # Cold start: the oracle is a ceiling, and popularity cannot tell popular picks from popular skips.
    assert values["ch6_n_train_tasks"] > 100 and values["ch6_n_tasks_kmax"] > 10
    main = ("maml", "metasgd", "reptile", "protonet", "ft", "global", "pop")
    assert all(values["ch6_auc_oracle_main"] > values[f"ch6_auc_{m}_main"] for m in main)
    assert values["ch6_auc_oracle_main"] > 0.7
    assert abs(values["ch6_auc_pop_main"] - 0.5) < 0.1
    assert values["ch6_verdict_maml_main"] in VERDICTS and values["ch6_verdict_protonet_main"] in VERDICTS
    assert 1 <= values["ch6_ft_steps"] <= values["ch6_inner_steps"]
    # New items: with the user as a feature the question has an answer (the oracle), popularity
    # scores one item alike, and every learner gets a verdict against the best baseline.
    assert values["ch6_n_test_items"] >= 5 and values["ch6_n_item_tasks_main"] >= 5
    assert values["ch6_item_auc_oracle_main"] > 0.7
    assert values["ch6_item_auc_pop_main"] == 0.5
    items = ("maml", "metasgd", "reptile", "protonet", "ft", "global")
    assert all(values["ch6_item_auc_oracle_main"] > values[f"ch6_item_auc_{m}_main"] for m in items)
    assert all(values[f"ch6_item_verdict_{m}_main"] in VERDICTS for m in ("maml", "metasgd", "reptile", "protonet"))
    # Personalisation: shares of users who gain or lose are fractions that leave room for ties.
    assert 0 <= values["ch6_gain_share_up"] + values["ch6_gain_share_down"] <= 1
    assert values["ch6_gain_verdict"] in VERDICTS and values["ch6_headroom_mean"] > 0
    # Transfer, fast iteration and drift each produce a verdict below the oracle.
    assert values["ch6_transfer_verdict"] in VERDICTS
    assert values["ch6_transfer_oracle"] > values["ch6_transfer_maml"]
    assert values["ch6_n_target_events"] == 500
    assert 0.0 <= values["ch6_curve_maml_0"] <= 1.0 and 0.0 <= values["ch6_retrain_auc_best"] <= 1.0
    assert values["ch6_n_eval_windows"] >= 1 and values["ch6_drift_stale_verdict"] in VERDICTS
    assert values["ch6_drift_oracle"] > values["ch6_drift_fresh"]
