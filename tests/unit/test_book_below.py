"""Rounding noise is shown as a bound, never as digits that change with the CPU."""

import pytest

from metarec_ref.book import below


@pytest.mark.parametrize("value", [2.7755e-16, 2.8532e-15, -3e-13, 0.0])
def test_noise_below_the_bound_reads_the_same_whatever_its_digits(value):
    assert below(value, 1e-12) == "below 1e-12"


def test_a_value_above_the_bound_is_shown_with_two_digits():
    assert below(3.14e-5, 1e-12) == "3.1e-05"
    assert below(1.9e-9, 1e-6) == "below 1e-6"


@pytest.mark.parametrize("bound", [0.0, -1e-6, 3e-6])
def test_the_bound_must_be_a_power_of_ten(bound):
    with pytest.raises(ValueError, match="power of ten"):
        below(1.0, bound)
