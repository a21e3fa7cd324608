"""Chapter 5 with small parameters: the pipeline runs end to end and its numbers are coherent."""

from __future__ import annotations

from tests.notebooks.harness import run_notebook


def test_maml_for_recommendation_small(tmp_path):
    values = run_notebook(
        "05_maml_for_recommendation.ipynb", tmp_path,
        N_USERS=1500, N_ITEMS=200, N_INTERACTIONS=25000, META_STEPS=30, MODELS=["mlp", "wide_deep"], DEVICE="cpu",
    )
    assert values["ch5_n_train_tasks"] > 100 and values["ch5_n_test_tasks"] > 10
    assert values["ch5_best_maml_model"] in ("mlp", "wide_deep")
    for key in ("auc_maml", "auc_ft", "auc_global", "auc_pop", "auc_adapt_all", "auc_adapt_head"):
        assert 0.5 < values[f"ch5_{key}"] <= 1.0, key  # every method beats chance on uniform negatives
    assert 0 <= values["ch5_ndcg10_pop"] <= 1
    assert values["ch5_auc_verdict"].split()[0] in ("better", "worse", "not")
    assert 1 <= values["ch5_ft_steps"] <= 2  # fine-tuning never gets more steps than MAML
