"""Chapter 6 with small parameters: cold start on fixed users, new items, personalisation, one Holm family.

Every check is derived from a known truth of the synthetic shop or of the method (the oracle and
the global model ignore the support set; popularity scores one item alike) or from the intervals
the chapter reports.
"""

from __future__ import annotations

from tests.notebooks.harness import run_notebook

K_VALUES = [1, 5]


def ci_bounds(text: str) -> tuple[float, float]:
    low, high = text.strip("[]").split(",")
    return float(low), float(high)


def agrees_with_interval(verdict: str, interval: str) -> bool:
    """A Holm verdict may be weaker than the raw interval's, never stronger or of the other sign."""
    low, high = ci_bounds(interval)
    return {"better": low > 0, "worse": high < 0}.get(verdict, True)


def test_application_scenarios_small(tmp_path):
    values = run_notebook(
        "06_application_scenarios.ipynb", tmp_path,
        N_USERS=1000, N_INTERACTIONS=60000, META_STEPS=40, K_VALUES=K_VALUES, K_MAIN=5,
        FT_STEPS_GRID=[0, 1, 2, 4], FT_LR_GRID=[0.01, 0.1, 1.0], KNN_SHRINKAGES=[0.0, 20.0],
        EASE_LAMBDAS=[10.0, 100.0], N_BOOT=2000, DEVICE="cpu",
    )
    # The best baseline is the tuned baseline with the highest AUC, item-based recommenders included.
    slugs = {"fine-tune": "ft", "global": "global", "popularity": "pop", "item-kNN": "knn", "EASE": "ease"}
    assert values["ch6_best_baseline_main"] == max(slugs, key=lambda name: values[f"ch6_auc_{slugs[name]}_main"])
    assert float(values["ch6_knn_shrinkage"]) in (0.0, 20.0) and float(values["ch6_ease_lambda"]) in (10.0, 100.0)
    # Same users and query events at every K: what ignores the support scores the same at every K.
    assert values["ch6_n_tasks"] > 20 and values["ch6_k_max"] == max(K_VALUES)
    assert values["ch6_oracle_spread"] == 0.0 and values["ch6_global_spread"] == 0.0
    assert values["ch6_item_oracle_spread"] == 0.0
    # The oracle knows the true preferences; popularity cannot tell a popular pick from a popular skip.
    main = ("maml", "metasgd", "reptile", "protonet", "ft", "global", "pop")
    assert all(values["ch6_auc_oracle_main"] > values[f"ch6_auc_{m}_main"] for m in main)
    assert abs(values["ch6_auc_pop_main"] - 0.5) < 0.1
    assert values["ch6_item_auc_pop_main"] == 0.5  # one item: popularity scores every event alike
    # Verdicts after Holm never contradict their raw intervals.
    for slug in ("maml", "metasgd", "reptile", "protonet"):
        assert agrees_with_interval(values[f"ch6_verdict_{slug}_main"], values[f"ch6_ci_{slug}_main"])
        assert agrees_with_interval(values[f"ch6_item_verdict_{slug}_main"], values[f"ch6_item_ci_{slug}_main"])
    assert agrees_with_interval(values["ch6_gain_verdict"], values["ch6_gain_ci"])
    assert agrees_with_interval(values["ch6_gain_contrast_verdict"], values["ch6_gain_contrast_ci"])
    # One family: 4 learners x |K| for users and for items, 5 personalisation comparisons; Holm only removes.
    assert values["ch6_n_comparisons"] == 2 * 4 * len(K_VALUES) + 5
    assert values["ch6_n_holm_decided"] <= values["ch6_n_raw_decided"]
    assert values["ch6_n_holm_better"] + values["ch6_n_holm_worse"] == values["ch6_n_holm_decided"]
    # The tuned fine-tuning budget is a grid point, and the prose states the grid that was used.
    assert values["ch6_ft_steps_grid"] == "0, 1, 2, 4"
    # The oracle leaves room above the global model: the headroom is positive, and gain shares leave room for ties.
    assert values["ch6_headroom_mean"] > 0
    assert 0 <= values["ch6_gain_share_up"] + values["ch6_gain_share_down"] <= 1
