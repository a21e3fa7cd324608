"""The own-log recipe extends a grid whose best value sits on an edge, and says where each value ended."""

from __future__ import annotations

import math

import pytest

from metarec_ref.data import Encoders, generate
from metarec_ref.eval import EvalTasks
from metarec_ref.recipes import ClassicalGrid
from metarec_ref.recipes.own_log import grid_edges_of, tuning_rows
from metarec_ref.recipes.own_log_methods import fit_classical, log_span_days
from metarec_ref.runtime import GridEdgeWarning, bracketed_grid_search


def _search(grids, evaluate, **bounds):
    return bracketed_grid_search(grids, evaluate, natural_bounds=bounds, max_extensions=3)


def test_tuning_rows_say_where_each_value_ended():
    import pandas as pd

    rows = []
    # optimum at 3000, above the starting grid: one value added (10000 is worse), 1000 ends inside
    rows += tuning_rows("EASE", _search({"lambda": [10.0, 100.0, 1000.0]}, lambda p: -abs(math.log(p["lambda"] / 3000))))
    # optimum beyond three extensions: still on the upper edge
    rows += tuning_rows("item-kNN", _search({"shrinkage": [1.0, 10.0]}, lambda p: p["shrinkage"]))
    # best at a natural bound (no shrinkage) and at a budget cap (10 inner steps)
    rows += tuning_rows("kNN", _search({"shrinkage": [0.0, 5.0]}, lambda p: -p["shrinkage"], shrinkage=(0.0, None)))
    rows += tuning_rows("MAML", _search({"inner_steps": [1, 3, 5]}, lambda p: p["inner_steps"],
                                        inner_steps=(1, 10)), caps={"inner_steps": 10})
    rows += tuning_rows("one", _search({"lr": [0.1]}, lambda p: 1.0))
    table = pd.DataFrame(rows)
    assert list(table["chosen"]) == ["1000", "10000", "0", "10", "0.1"]
    assert list(table["starting grid"]) == ["10, 100, 1000", "1, 10", "0, 5", "1, 3, 5", "0.1"]
    assert list(table["added"]) == ["10000", "100, 1000, 10000", "-", "8, 10", "-"]
    assert list(table["chosen value is"]) == [
        "inside", "upper edge, not bracketed", "natural bound", "at its budget cap, not bracketed",
        "one value tried, not bracketed"]
    with pytest.warns(GridEdgeWarning):
        edges = grid_edges_of(table)
    assert [e.split(":")[0] for e in edges] == ["item-kNN", "MAML", "one"]


@pytest.fixture(scope="module")
def shop():
    from metarec_ref.data import EvidenceNeeds, ProtocolSplit, choose_protocol

    events = generate(n_users=600, n_items=150, n_interactions=12000, initial_users=0.3, seed=3).events
    choice = choose_protocol(events, k_support=3, n_query=5, protocol="held_out_users",
                             split=ProtocolSplit(seed=0), needs=EvidenceNeeds(min_val_tasks=20, min_test_tasks=20))
    encoders = Encoders.fit(events)
    val = EvalTasks.from_tasks(choice.build_tasks(seed=0)["valid"], encoders, "cpu")
    return choice.parts.train, encoders, val


def test_fit_classical_extends_a_grid_whose_optimum_lies_outside_it(shop):
    train, encoders, val = shop
    # EASE's starting lambdas are far too small and the window longer than the log
    grid = ClassicalGrid(shrinkage=(0.0, 5.0), ease_lambda=(0.01, 0.1), window_days=(2000.0,))
    fitted, skipped = fit_classical(train, encoders, val, grid, ease_memory_gb=1.0, max_extensions=3)
    ease = fitted["EASE"]
    assert ease.search.extended["lambda"] == [1.0, 10.0, 100.0][:len(ease.search.extended["lambda"])]
    assert ease.search.extended["lambda"] and ease.chosen["lambda"] > 0.1
    scores = dict(zip(ease.grid["value"], ease.grid["ndcg@10"]))
    assert scores[ease.chosen["lambda"]] == max(scores.values())
    # the kept method is the chosen one: its validation score is the table's
    from metarec_ref.recipes.own_log_methods import _validation_ndcg

    assert _validation_ndcg(ease.method, val, 256) == pytest.approx(scores[ease.chosen["lambda"]])
    recent = fitted["recent popularity"]
    assert recent.search.start["window_days"] == [log_span_days(train)]  # cut to the log's span
    assert tuning_rows("recent popularity", recent.search)[0]["chosen value is"] == "natural bound"
    assert skipped == {}


def test_ease_is_limited_by_a_memory_budget_not_a_product_count(shop):
    from metarec_ref.eval.ease import ease_items_within, ease_memory_gb

    train, encoders, val = shop
    budget = ease_memory_gb(100) * 1.01  # room for 100 of the items
    assert ease_items_within(budget) == 100
    grid = ClassicalGrid(shrinkage=(0.0,), ease_lambda=(10.0, 100.0, 1000.0), window_days=(30.0,))
    fitted, skipped = fit_classical(train, encoders, val, grid, ease_memory_gb=budget, max_extensions=0)
    assert "EASE (top 100 items)" in fitted and fitted["EASE (top 100 items)"].method.items.numel() == 100
    assert f"EASE_MEMORY_GB = {budget:g}" in skipped["EASE on the whole catalogue"]


def test_ease_items_within_is_the_largest_catalogue_that_fits():
    from metarec_ref.eval.ease import EASE_FLOAT64_ITEMS, default_ease_memory_gb, ease_items_within, ease_memory_gb

    for budget in (0.01, 0.2, 0.27, 0.5, 1.0, 1.5):
        n = ease_items_within(budget)
        assert ease_memory_gb(n) <= budget < ease_memory_gb(n + 1) or n == EASE_FLOAT64_ITEMS
    # above EASE_FLOAT64_ITEMS the inverse is float32: 5,000 items need 0.2 GB, 4,096 in float64 0.27
    assert ease_items_within(0.2) == 5000
    assert 0 < default_ease_memory_gb() <= 0.5
    with pytest.raises(ValueError, match="memory_gb"):
        ease_items_within(0.0)
