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
