"""warn_if_on_grid_edge: a tuned value on the edge of its grid warns, one inside does not."""

from __future__ import annotations

import warnings

import pytest

from metarec_ref.runtime import GridEdgeWarning, warn_if_on_grid_edge


@pytest.mark.parametrize("chosen, edge", [(0.001, "lower"), (0.1, "upper")])
def test_edges_warn_and_name_the_direction(chosen, edge):
    with pytest.warns(GridEdgeWarning, match=f"{edge} edge.*add {'smaller' if edge == 'lower' else 'larger'}"):
        assert warn_if_on_grid_edge("inner_lr", [0.1, 0.01, 0.001], chosen) == edge


def test_inside_value_is_silent():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert warn_if_on_grid_edge("inner_lr", [0.001, 0.01, 0.1], 0.01) is None


def test_natural_bound_is_no_warning():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert warn_if_on_grid_edge("inner_steps", [0, 1, 2, 5], 0, natural_bounds=(0, None)) is None
    with pytest.warns(GridEdgeWarning):
        warn_if_on_grid_edge("inner_steps", [0, 1, 2, 5], 5, natural_bounds=(0, None))


def test_value_outside_grid_raises():
    with pytest.raises(ValueError, match="not in its grid"):
        warn_if_on_grid_edge("k", [1, 2], 3)


def test_bracketed_search_extends_towards_the_optimum_but_not_past_an_infinite_end():
    import math

    from metarec_ref.runtime import bracketed_search

    # a half-life grid ending in "no decay" (inf): the optimum at 10 days lies below the grid
    best, scores, edge = bracketed_search("half_life", [30.0, 90.0, math.inf], lambda h: -abs(math.log(h / 10)))
    assert best == pytest.approx(10.0) and edge is None and min(scores) == pytest.approx(10 / 3)
    best, scores, edge = bracketed_search("half_life", [30.0, 90.0, math.inf], lambda h: h)
    assert best == math.inf and edge == "upper" and len(scores) == 3  # nothing lies beyond infinity


def test_product_grid_search_extends_each_parameter_until_its_optimum_is_inside():
    import math

    from metarec_ref.runtime import bracketed_grid_search

    # optimum at lr = 5.0 (above the grid) and steps = 5 (inside); steps cannot go below 1
    def evaluate(point):
        return -abs(math.log(point["lr"] / 5.0)) - abs(point["steps"] - 5)

    search = bracketed_grid_search({"lr": [0.01, 0.1, 1.0], "steps": [1, 3, 8]}, evaluate,
                                   natural_bounds={"steps": (1, None)})
    assert search.chosen == {"lr": 10.0, "steps": 3}
    assert search.start == {"lr": [0.01, 0.1, 1.0], "steps": [1, 3, 8]}
    # 10 beats 1, so 100 is tried too (worse): 10 ends inside; each extension varies one parameter
    assert search.extended == {"lr": [10.0, 100.0], "steps": []} and search.edges == {"lr": None, "steps": None}
    assert len(search.scores) == 9 + 2 and (100.0, 3) in search.scores
    # an optimum far outside: three extensions are not enough, and the edge is reported
    far = bracketed_grid_search({"lr": [0.01, 0.1]}, lambda p: p["lr"], max_extensions=3)
    assert far.final["lr"] == pytest.approx([0.01, 0.1, 1.0, 10.0, 100.0]) and far.edges["lr"] == "upper"
    # a natural bound stops the extension and is no edge
    low = bracketed_grid_search({"steps": [1, 3, 5]}, lambda p: -p["steps"], natural_bounds={"steps": (1, None)})
    assert low.chosen == {"steps": 1} and low.edges == {"steps": None} and low.extended == {"steps": []}


def test_product_grid_search_counts_max_points_before_extending_and_treats_nan_as_worst():
    from metarec_ref.runtime import bracketed_grid_search

    seen = []

    def evaluate(point):
        seen.append((point["lr"], point["steps"]))
        return float("nan") if point["lr"] >= 1.0 else point["lr"]

    search = bracketed_grid_search({"lr": [0.01, 0.1, 1.0], "steps": [1, 3]}, evaluate, max_points=4)
    assert seen[:4] == [(0.01, 1), (0.01, 3), (0.1, 1), (0.1, 3)]
    # 0.1 is the largest lr tried: one more (1.0) is tried and is NaN, so 0.1 ends inside
    assert search.chosen["lr"] == 0.1 and (1.0, 1) in search.scores and search.edges["lr"] is None
    with pytest.raises(ValueError, match="max_points"):
        bracketed_grid_search({"lr": [0.1]}, evaluate, max_points=0)
