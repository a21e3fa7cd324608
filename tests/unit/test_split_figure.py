"""The temporal cold-start split figure: four cells, counts read from the split, bad splits rejected."""

from __future__ import annotations

import dataclasses
import re

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pandas as pd
import pytest

from metarec_ref.book import plot_temporal_split
from metarec_ref.book.split_figure import cell_counts
from metarec_ref.data import generate, temporal_cold_start_split, validate_events


@pytest.fixture(scope="module")
def split():
    log = generate(n_users=300, n_items=60, n_interactions=4000, initial_users=0.3, seed=0)
    return temporal_cold_start_split(validate_events(log.events), cut_quantile=0.7)


def texts(fig) -> str:
    return "\n".join(t.get_text() for ax in fig.axes for t in ax.texts)


def test_counts_match_the_split(split):
    counts = cell_counts(split)
    assert counts == {name: len(split.cells[name]) for name in counts}
    assert sum(counts.values()) == sum(len(df) for df in split.cells.values())
    fig = plot_temporal_split(split, title="demo")
    drawn = texts(fig)
    for value in counts.values():
        assert f"{value:,} events" in drawn
    assert len(fig.axes[1].patches) == 4 and "T" in drawn
    plt.close(fig)


def test_without_a_split_the_diagram_has_no_counts():
    fig = plot_temporal_split()
    assert re.search(r"\d events", texts(fig)) is None
    plt.close(fig)


def test_a_split_without_the_four_cells_is_rejected(split):
    broken = dataclasses.replace(split, cells={"warm": pd.DataFrame()})
    with pytest.raises(ValueError, match="expected"):
        cell_counts(broken)
