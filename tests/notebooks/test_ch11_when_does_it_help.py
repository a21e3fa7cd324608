"""The closing chapter with small parameters: its sentences follow from its intervals."""

from __future__ import annotations

from metarec_ref.eval import verdict
from tests.notebooks.harness import run_notebook


def test_when_does_it_help_small(tmp_path):
    values = run_notebook("11_when_does_it_help.ipynb", tmp_path, SPREADS=[0.125, 2.0], N_TRAIN_TASKS=200,
                          N_VAL_TASKS=100, N_TEST_TASKS=100, META_STEPS=60, N_BOOT=500, DEVICE="cpu")
    checks = values["ch11_checks"]
    assert [row[0] for row in checks] == [0.125, 2.0]
    for spread, room, x, x_low, x_high, y, y_low, y_high, p_holm, result in checks:
        assert x_low <= x <= x_high and y_low <= y <= y_high
        # Holm can only turn an interval's verdict into "no detectable difference", never the reverse.
        assert result in (verdict(y_low, y_high), "no detectable difference")
        assert result == "no detectable difference" or p_holm < 0.05
    # The room (oracle - global) is positive on every shop and grows with the spread of tastes.
    assert 0 < checks[0][1] < checks[1][1]
    # Adapting moves MAML more where users differ more and click by their tastes.
    assert checks[1][2] > checks[0][2]
    assert values["ch11_n_better"] == sum(row[-1] == "better" for row in checks)
    # The real log's settings come from chapters 7 and 7b's committed results.
    assert values["ch11_real_n"] > 0
    assert values["ch11_real_max_abs_adapt"] < 0.05
