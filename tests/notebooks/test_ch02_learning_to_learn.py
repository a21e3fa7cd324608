"""Chapter 2 with small parameters: MAML beats scratch, stays below the oracle; every stated result
follows from its interval (and Holm's correction), and the reading-a-comparison figure's numbers
behave as the section teaches."""

from __future__ import annotations

import pytest

from tests.notebooks.harness import run_notebook

K_VALUES = [2, 5]
FINE_TUNE_LRS = (0.01, 0.03, 0.1, 0.3, 1.0, 3.0)  # the notebook's grids, to recount the edges
SCRATCH_LRS = (0.0001, 0.0003, 0.001, 0.003, 0.01, 0.03, 0.1)


def from_interval(low: float, high: float) -> str:
    return "better" if low > 0 else "worse" if high < 0 else "no detectable difference"


@pytest.fixture(scope="module")
def values(tmp_path_factory):
    return run_notebook(
        "02_learning_to_learn.ipynb", tmp_path_factory.mktemp("ch2"),
        N_TRAIN_TASKS=300, N_VAL_TASKS=60, N_TEST_TASKS=100, K_VALUES=K_VALUES, META_STEPS=80, N_SEEDS=2,
        DEVICE="cpu",
    )


def test_methods_and_headline_comparison(values):
    assert values["ch2_auc_k5_MAML"] > values["ch2_auc_k5_scratch"] + 0.05
    assert values["ch2_auc_k5_oracle"] > values["ch2_auc_k5_MAML"]
    assert values["ch2_auc_k5_global"] > 0.55  # the shop-wide model knows something
    assert values["ch2_n_seeds"] == 2
    # The headline result is read off the paired interval, then Holm's adjusted p-value.
    low, high = values["ch2_maml_ci_low_k5"], values["ch2_maml_ci_high_k5"]
    assert low <= values["ch2_maml_diff_k5"] <= high
    expected = from_interval(low, high) if values["ch2_maml_p_holm_k5"] < 0.05 else "no detectable difference"
    assert values["ch2_maml_verdict_k5"] == expected
    assert ("5" in values["ch2_maml_better_ks"].split(", ")) == (expected == "better")
    # Fine-tuning never gets more steps than MAML (the stated budget is the used budget).
    assert 0 <= values["ch2_finetune_steps"] <= values["ch2_inner_steps"]


def test_grid_edges_are_counted_from_the_chosen_values(values):
    edges = 0
    if values["ch2_finetune_steps"] > 0 and values["ch2_finetune_lr"] in (min(FINE_TUNE_LRS), max(FINE_TUNE_LRS)):
        edges += 1
    if values["ch2_scratch_lr"] in (min(SCRATCH_LRS), max(SCRATCH_LRS)):
        edges += 1
    assert values["ch2_finetune_lr"] in FINE_TUNE_LRS and values["ch2_scratch_lr"] in SCRATCH_LRS
    assert values["ch2_n_on_edge"] == edges
    assert (values["ch2_grid_note"] == "Every tuned value lies inside its grid.") == (edges == 0)


def test_reading_a_comparison(values):
    m = 3 * len(K_VALUES)  # three methods against the best baseline at each K
    assert values["ch2_n_comparisons"] == m
    assert values["ch2_p_any_by_chance"] == pytest.approx(1 - 0.95 ** m)
    # Pairing cancels the user-to-user variation: the unpaired interval is wider.
    assert values["ch2_read_unpaired_width"] > values["ch2_read_paired_width"]
    word = "widens" if values["ch2_read_seeds_width"] > values["ch2_read_paired_width"] else "does not widen"
    assert values["ch2_read_seeds_effect"] == word
    assert values["ch2_read_seed_min"] <= values["ch2_maml_diff_k5"] <= values["ch2_read_seed_max"]
    # Holm is stricter than no correction; the p-values cannot go below the bootstrap's floor.
    assert 0 <= values["ch2_null_holm"] <= values["ch2_null_uncorrected"] <= m
    assert 0 <= values["ch2_n_detectable"] <= m and 0 <= values["ch2_n_at_floor"] <= m
    assert values["ch2_p_floor"] == pytest.approx(2 / 2001)
    assert 0 <= values["ch2_read_users_below_zero"] <= 1


def test_exercise_solutions_state_what_they_found(values):
    assert (values["ch2_ex1_k_low"], values["ch2_ex1_k_high"]) == (min(K_VALUES), max(K_VALUES))
    for end in ("low", "high"):
        low, high = values[f"ch2_ex1_ci_low_{end}"], values[f"ch2_ex1_ci_high_{end}"]
        assert low <= values[f"ch2_ex1_diff_{end}"] <= high
        assert values[f"ch2_ex1_result_{end}"] == from_interval(low, high)
    assert values["ch2_ex1_reading"].startswith("Meta-training with one event pays") == (
        values["ch2_ex1_result_low"] == "better")
    # Exercise 2.2: more alike users leave less room above the global model.
    assert values["ch2_ex2_room_alike"] < values["ch2_ex2_room_default"]
    assert values["ch2_ex2_share_kept"] == pytest.approx(values["ch2_ex2_gain_alike"] / values["ch2_ex2_gain_default"])
    for shop in ("default", "alike"):
        assert values[f"ch2_ex2_ci_low_{shop}"] <= values[f"ch2_ex2_gain_{shop}"] <= values[f"ch2_ex2_ci_high_{shop}"]
    # Exercise 2.3: the tuned budget is on the wide grid; the sentence follows the interval.
    assert values["ch2_ex3_steps"] in (0, 1, 2, 5, 20)
    result = from_interval(values["ch2_ex3_ci_low"], values["ch2_ex3_ci_high"])
    assert values["ch2_ex3_result"] == {"better": "MAML stays detectably better",
                                        "worse": "fine-tuning is now detectably better",
                                        "no detectable difference": "the gap is no longer detectable"}[result]
