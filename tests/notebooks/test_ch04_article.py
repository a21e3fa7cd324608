"""Chapter 4 with small parameters: each fault of the sketch shows, the corrected loop and the library's
MAML check out against finite differences and each other, and the stated results follow their intervals."""

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
    assert values["copy_vs_first_order"] == "below 1e-12"
    assert values["copy_vs_second_order"] > 0.05
    assert values["shallow_param_change"] > 0
    # Bug 3: the support error vanishes while the held-out error stalls well above it.
    support = values["memo_support_mse"]  # shown as a bound once it is rounding noise
    assert support == "below 1e-12" or float(support) < values["memo_heldout_mse"] / 10
    assert values["memo_heldout_mse"] < values["memo_heldout_start"]  # adapting helps at first
    assert abs(values["memo_heldout_mse"] - values["memo_heldout_at_20"]) < 0.1 * values["memo_heldout_at_20"]
    # Bug 4: the evaluation branch never reads the task, and adapting beats it (interval below 0:
    # adapted MSE minus branch MSE), which survives Holm over the chapter's two comparisons.
    assert values["eval_branch_reads_labels"] is False
    assert values["eval_adapt_ci_low"] <= values["eval_adapt_diff"] <= values["eval_adapt_ci_high"] < 0
    assert values["n_comparisons"] == 2
    detectable = values["eval_adapt_p_holm"] < 0.05  # the interval is below 0 (asserted above)
    assert values["eval_adapt_verdict"] == ("better" if detectable else "no detectable difference")
    assert values["eval_adapt_result"] == ("detectably better" if detectable else "not detectably different")
    # Bug 5: the broadcast loss learns the mean label: no spread, no correlation.
    assert values["shape_broadcast_std"] < 0.05 * values["shape_label_std"]
    assert abs(values["shape_broadcast_corr"]) < 0.2
    assert values["shape_shaped_corr"] > 0.9
    # The repair: the corrected loop and the library agree with finite differences and with each
    # other; first-order MAML is visibly different; the library's MAML learns.
    assert values["scratch_rel_error"] == "below 1e-6"
    assert values["library_vs_corrected"] == "below 1e-12"
    assert values["gradcheck_maml_rel_error"] == "below 1e-6"
    assert values["gradcheck_fomaml_rel_error"] > 1e-3
    # Exercises: the copy gets the gradient, not the original; create_graph=False is first-order MAML
    # and the copy's gradient of bug 2; the one-step formula (I - alpha H) g is the loop's meta-gradient.
    assert values["ex1_original_grads"] == 0 and values["ex1_copy_grads"] == 4
    assert values["ex2_vs_first_order"] == values["ex2_vs_copy"] == "below 1e-12"
    assert values["ex3_formula_vs_loop"] == "below 1e-12"
    assert 0 < values["ex3_hessian_share"]
    assert values["fix_auc_trained"] > values["fix_auc_untrained"] + 0.1
    # The sketch's objective is never detectably better than the support/query split, and the
    # stated result is the one its paired interval and Holm's adjusted p-value imply.
    assert values["fix_memorising_ci_low"] < 0
    detectable = values["fix_memorising_ci_high"] < 0 and values["fix_memorising_p_holm"] < 0.05
    assert values["fix_memorising_verdict"] == ("loses to" if detectable else "is not distinguishable from")
    assert values["fix_memorising_result"] == ("worse" if detectable else "no detectable difference")
