"""Fixtures shared by the unit tests: fresh copies of the test data of ``helpers.py``, so a test
may modify what it gets. Helpers that take arguments stay functions in ``helpers.py``."""

import pandas as pd
import pytest
import torch

from tests.unit import helpers


@pytest.fixture
def world() -> dict[str, torch.Tensor]:
    """The default toy world of ``helpers.SPEC`` (item vectors, categories, user centres)."""
    return helpers.toy_world()


@pytest.fixture
def small_log() -> pd.DataFrame:
    """Three users, fourteen events, ties in time: a validated log to build tasks from."""
    return helpers.small_log()


@pytest.fixture
def raw_rows() -> pd.DataFrame:
    """A few raw Online Retail rows, cancellations, duplicates and non-products included."""
    return helpers.raw_rows()
