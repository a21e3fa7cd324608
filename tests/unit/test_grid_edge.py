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
