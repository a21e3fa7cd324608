"""A picture of the temporal cold-start split: a cut time T, then four cells of users x items.

Left panel: the timeline. Everything before T is meta-training; after T, new users (first event
after T) are ordered by their first event, the earlier ones validate, the later ones test.
Right panel: the events after T in four cells, new / existing users x new / existing items, each
with its event count when a :class:`~metarec_ref.data.splits.ColdStartSplit` is given.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from metarec_ref.data import ColdStartSplit

# (cell name, row: 0 existing users / 1 new users, column: 0 existing items / 1 new items, colour, role)
SPLIT_CELLS = (
    ("warm", 0, 0, "#d9d9d9", "warm: not a cold start"),
    ("existing_user_new_item", 0, 1, "#fdd0a2", "new items"),
    ("new_user_existing_item", 1, 0, "#9ecae1", "new users"),
    ("new_user_new_item", 1, 1, "#c7b9e2", "new users, new items"),
)


def _box(ax, x: float, y: float, w: float, h: float, colour: str, text: str) -> None:
    ax.add_patch(Rectangle((x, y), w, h, facecolor=colour, edgecolor="black", linewidth=1))
    ax.text(x + w / 2, y + h / 2, text, ha="center", va="center", fontsize=9)


def cell_counts(split: ColdStartSplit | None) -> dict[str, int | None]:
    """Events per cell of ``split`` (None for every cell without a split)."""
    if split is not None and not {name for name, *_ in SPLIT_CELLS} <= set(split.cells):
        raise ValueError(f"the split has cells {sorted(split.cells)}; expected {[name for name, *_ in SPLIT_CELLS]}")
    return {name: None if split is None else len(split.cells[name]) for name, *_ in SPLIT_CELLS}


def plot_temporal_split(split: ColdStartSplit | None = None, title: str | None = None) -> Figure:
    """Draw the temporal cold-start split; event counts come from ``split`` when given."""
    counts = cell_counts(split)
    fig, (timeline, grid) = plt.subplots(1, 2, figsize=(11, 3.8), gridspec_kw={"width_ratios": [1.5, 1]})

    # Timeline: time runs left to right, T at 0.55; rows are existing users (top) and new users.
    cut, test_start = 0.55, 0.78
    _box(timeline, 0.0, 0.55, cut, 0.35, "#e5f5e0", "meta-training\n(every event before T)")
    _box(timeline, cut, 0.55, 1 - cut, 0.35, "#d9d9d9", "existing users\nafter T")
    _box(timeline, cut, 0.1, test_start - cut, 0.35, "#fee391", "validation users\n(tune)")
    _box(timeline, test_start, 0.1, 1 - test_start, 0.35, "#9ecae1", "test users\n(score once)")
    for x, label in ((cut, "T"), (test_start, "first test user")):
        timeline.axvline(x, color="black", linestyle="--", linewidth=1.2)
        timeline.text(x, 0.97, label, ha="center", va="center", fontsize=9,
                      bbox={"facecolor": "white", "edgecolor": "none", "pad": 1})
    timeline.text(cut / 2, 0.27, "new users have\nno events before T", ha="center", va="center", fontsize=9,
                  style="italic")
    timeline.set_xlim(0, 1)
    timeline.set_ylim(0, 1.05)
    timeline.set_xticks([])
    timeline.set_yticks([0.275, 0.725], ["new users", "existing users"])
    timeline.set_xlabel("time (events sorted by timestamp)")
    timeline.set_title("Cut at time T: the past trains, new users arrive later")

    # Grid: the four cells of events after T.
    for name, row, col, colour, role in SPLIT_CELLS:
        text = role if counts[name] is None else f"{role}\n{counts[name]:,} events"
        _box(grid, col, 1 - row, 1, 1, colour, text)
    grid.set_xlim(0, 2)
    grid.set_ylim(0, 2)
    grid.set_xticks([0.5, 1.5], ["existing items", "new items"])
    grid.set_yticks([1.5, 0.5], ["existing users", "new users"])
    grid.tick_params(length=0)
    grid.set_title("Events after T fall into four cells")
    for side in grid.spines.values():
        side.set_visible(False)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


__all__ = ["SPLIT_CELLS", "cell_counts", "plot_temporal_split"]
