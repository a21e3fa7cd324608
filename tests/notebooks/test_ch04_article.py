"""Chapter 4 with small parameters: each fault of the sketch shows, the fix checks out and learns."""

from __future__ import annotations

from tests.notebooks.harness import run_notebook


def test_article_chapter_small(tmp_path):
    values = run_notebook(
        "04_article_code_debugged.ipynb", tmp_path,
        N_TRAIN_TASKS=200, N_VAL_TASKS=50, N_TEST_TASKS=100, META_STEPS=60, MEMORISE_STEPS=100,
        N_EVAL_USERS=40, FIT_STEPS=200, DEVICE="cpu",
    )
    # Bug 2: the copy detaches (no meta-parameter got a gradient, none moved); the gradient left on
    # the copy is exactly first order and far from the second-order one; shallow copy mutates.
    assert values["deepcopy_missing_grads"] == values["deepcopy_n_params"] == 4
    assert values["deepcopy_param_change"] == 0.0
    assert values["copy_vs_first_order"] < 1e-12
    assert values["copy_vs_second_order"] > 0.05
    assert values["shallow_param_change"] > 0
    # Bug 3: the support error vanishes while the held-out error stalls well above it.
    support = values["memo_support_mse"]  # shown as a bound once it is rounding noise
    assert support == "below 1e-12" or float(support) < values["memo_heldout_mse"] / 10
    assert values["memo_heldout_mse"] < values["memo_heldout_start"]  # adapting helps at first
    assert abs(values["memo_heldout_mse"] - values["memo_heldout_at_20"]) < 0.1 * values["memo_heldout_at_20"]
    # Bug 4: the evaluation branch never reads the task, and adapting beats it (interval above 0).
    assert values["eval_branch_reads_labels"] is False
    assert values["eval_adapt_ci_high"] < 0  # adapted MSE minus branch MSE
    # Bug 5: the broadcast loss learns the mean label: no spread, no correlation.
    assert values["shape_broadcast_std"] < 0.05 * values["shape_label_std"]
    assert abs(values["shape_broadcast_corr"]) < 0.2
    assert values["shape_shaped_corr"] > 0.9
    # The fix: exact meta-gradient, first-order MAML visibly different, and it learns.
    assert values["gradcheck_maml_rel_error"] == "below 1e-6"
    assert values["gradcheck_fomaml_rel_error"] > 1e-3
    assert values["ex3_fixed_rel_error"] == "below 1e-6"
    assert values["ex1_original_grads"] == 0 and values["ex1_copy_grads"] == 4
    assert values["fix_auc_trained"] > values["fix_auc_untrained"] + 0.1
    # The sketch's objective is never detectably better than the support/query split, and the
    # glued verdict is the one its paired interval implies.
    assert values["fix_memorising_ci_low"] < 0
    expected = "loses to" if values["fix_memorising_ci_high"] < 0 else "is not distinguishable from"
    assert values["fix_memorising_verdict"] == expected
