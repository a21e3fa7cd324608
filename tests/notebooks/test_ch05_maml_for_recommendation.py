"""Chapter 5 with small parameters: the pipeline runs end to end and its numbers are coherent."""

from __future__ import annotations

from tests.notebooks.harness import run_notebook

EXPECTED = {"better": lambda low, high: low > 0, "worse": lambda low, high: high < 0}


def test_maml_for_recommendation_small(tmp_path):
    values = run_notebook(
        "05_maml_for_recommendation.ipynb", tmp_path,
        N_USERS=1500, N_ITEMS=200, N_INTERACTIONS=25000, META_STEPS=30, MODELS=["mlp", "wide_deep"],
        N_SEEDS=2, FT_STEPS_GRID=[1, 2, 4], FT_LR_GRID=[0.01, 0.1, 1.0], DEVICE="cpu",
    )
    assert values["ch5_n_train_tasks"] > 100 and values["ch5_n_test_tasks"] > 10
    # The split figure's cells partition the events after the cut, and the scored cell is among them.
    assert values["ch5_events_train"] + values["ch5_events_after_cut"] == values["ch5_events_total"]
    assert 0 < values["ch5_events_new_user_existing_item"] < values["ch5_events_after_cut"]
    for key in ("auc_maml", "auc_ft", "auc_global", "auc_pop", "auc_adapt_all", "auc_adapt_head"):
        assert 0.5 < values[f"ch5_{key}"] <= 1.0, key  # every method beats chance on uniform negatives
    # Each glued verdict is the one its paired interval implies (Holm may only weaken it).
    for key in ("auc", "ndcg10"):
        low, high, verdict = values[f"ch5_{key}_ci_low"], values[f"ch5_{key}_ci_high"], values[f"ch5_{key}_verdict"]
        assert low <= values[f"ch5_{key}_diff"] <= high
        if verdict in EXPECTED:
            assert EXPECTED[verdict](low, high), (key, verdict, low, high)
        else:
            assert verdict == "no detectable difference"
    # The fine-tuning grid holds MAML's budget, and the glued prose says what was used.
    assert values["ch5_ft_grid_has_maml_budget"] is True
    # The HR@10 explanation: identical lists give identical hits; per-user hits are equal exactly
    # when no user's hit differs, and the glued totals are those of the per-user hits.
    if values["ch5_top10_same_global_pop"] == 1.0:
        assert values["ch5_hr_equal_global_pop"] is True
    if values["ch5_top10_same_ft_global"] == 1.0:
        assert values["ch5_hr_equal_ft_global"] is True
    assert values["ch5_hr_equal_global_pop"] == (values["ch5_hits_differ_global_pop"] == 0)
    assert abs(values["ch5_hits_global"] - values["ch5_hits_pop"]) <= values["ch5_hits_differ_global_pop"]
    assert values["ch5_hits_global"] <= values["ch5_hits_ranked_users"] <= values["ch5_n_test_tasks"]
    # Exercise 5.3: a larger support set can only leave fewer users.
    assert values["ch5_ex_tasks_k10"] <= values["ch5_n_test_tasks"]
