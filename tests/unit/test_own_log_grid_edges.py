"""The own-log recipe reports every tuned value that sits on an edge of its grid."""

from __future__ import annotations

import pandas as pd
import pytest

from metarec_ref.recipes import OwnLogConfig
from metarec_ref.recipes.own_log import tuned_grid_edges
from metarec_ref.recipes.own_log_methods import Fitted
from metarec_ref.runtime import GridEdgeWarning


def test_edges_are_listed_and_inside_values_are_not():
    config = OwnLogConfig()
    classical = {
        "popularity": Fitted(None, {"window_days": "all time"}),  # nothing tuned
        "item-kNN": Fitted(None, {"shrinkage": 0.0}, pd.DataFrame({"value": [0.0, 5.0, 20.0]})),  # natural bound
        "EASE": Fitted(None, {"lambda": 5000.0}, pd.DataFrame({"value": [50.0, 1000.0, 5000.0]})),  # upper edge
    }
    grid = pd.DataFrame({"inner_lr": [0.01, 0.1, 1.0, 1.0], "inner_steps": [1, 3, 3, 5],
                         "tried": [True, True, True, False]})
    tuned = {"maml": Fitted(None, {"inner_lr": 0.1, "inner_steps": 3}, grid)}  # 3 is the largest *tried*
    tuning = {"fine-tune": {"steps": 3, "lr": 0.003}}
    with pytest.warns(GridEdgeWarning):
        edges = tuned_grid_edges(config, tuning, tuned, classical, [1, 3, 5])
    assert edges == [
        "EASE: lambda = 5000.0 is the upper end of [50.0, 1000.0, 5000.0]",
        "MAML: inner_steps = 3 is the upper end of [1, 3]",
        "fine-tune: lr = 0.003 is the lower end of [0.003, 0.01, 0.03, 0.1, 0.3, 1.0]",
    ]
