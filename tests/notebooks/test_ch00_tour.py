"""The tour with small parameters: meta-training beats the untrained start and stays below the oracle."""

from __future__ import annotations

from metarec_ref.eval import verdict
from tests.notebooks.harness import run_notebook


def test_tour_small(tmp_path):
    values = run_notebook("00_tour.ipynb", tmp_path, N_TRAIN_TASKS=200, N_TEST_TASKS=100, META_STEPS=60, DEVICE="cpu")
    # An untrained start adapted by one step ranks little better than chance (0.5).
    assert 0.4 < values["tour_auc_before"] < 0.65
    assert values["tour_auc_after"] > values["tour_auc_before"] + 0.1
    # The toy shop's true preferences are the ceiling: no learner reaches them on average.
    assert values["tour_auc_after"] < values["tour_auc_oracle"]
    assert values["tour_auc_oracle"] > 0.9
    # The fine-tuned global model gets MAML's budget at most, tuned on validation users.
    assert values["tour_ft_steps"] <= values["tour_inner_steps"]
    assert not values["tour_ft_lr_on_edge"], "widen FT_LR_GRID: the tuned learning rate sits on its edge"
    # The verdict is the one its interval implies.
    low, high = values["tour_ft_ci_low"], values["tour_ft_ci_high"]
    assert low <= values["tour_ft_diff"] <= high
    assert values["tour_ft_verdict"] == verdict(low, high)
