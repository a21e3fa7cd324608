"""Chapter 4 with small parameters: each bug shows, the fix checks out and learns."""

from __future__ import annotations

from tests.notebooks.harness import run_notebook


def test_article_chapter_small(tmp_path):
    values = run_notebook(
        "04_article_code_debugged.ipynb", tmp_path,
        N_TRAIN_TASKS=200, N_VAL_TASKS=50, N_TEST_TASKS=100, META_STEPS=60, MEMORISE_STEPS=100, DEVICE="cpu",
    )
    # Bug 2: no meta-parameter got a gradient and none moved (deep copy); shallow copy mutates.
    assert values["deepcopy_missing_grads"] == values["deepcopy_n_params"] > 0
    assert values["deepcopy_param_change"] == 0.0
    assert values["shallow_param_change"] > 0
    # Bug 3: memorisation.
    assert values["memo_support_mse"] < values["memo_heldout_mse"] / 10
    # The fix: exact meta-gradient, first-order MAML visibly different, and it learns.
    assert values["gradcheck_maml_rel_error"] < 1e-6
    assert values["gradcheck_fomaml_rel_error"] > 1e-3
    assert values["fix_auc_trained"] > values["fix_auc_untrained"] + 0.1
