"""A picture of row-wise fast weights: a task gathers the rows it reads, adapts them, and scatters back.

Left: the shared item table, the rows one task's events read highlighted. Middle: the task-local
table of those rows only, adapted in the inner loop. Right: what the dense path would hold
instead, a full copy of the table per task. Arrows: the gather (forward) and the scatter-add of
the meta-gradient (backward).
"""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
from matplotlib.figure import Figure
from matplotlib.patches import FancyArrowPatch, Rectangle

SHARED, TOUCHED, LOCAL, DENSE = "#f0f0f0", "#fdae6b", "#9ecae1", "#e5e5e5"


def _rows(ax, x: float, n: int, colours: list[str], labels: Sequence[str] | None = None, width: float = 1.0) -> None:
    for i, colour in enumerate(colours):
        ax.add_patch(Rectangle((x, n - 1 - i), width, 1, facecolor=colour, edgecolor="grey", linewidth=0.6))
        if labels is not None:
            ax.text(x - 0.15, n - 0.5 - i, labels[i], ha="right", va="center", fontsize=7)


def _arrow(ax, start: tuple[float, float], end: tuple[float, float], colour: str, style: str = "-|>") -> None:
    ax.add_patch(FancyArrowPatch(start, end, arrowstyle=style, mutation_scale=9, color=colour, linewidth=1,
                                 connectionstyle="arc3,rad=0.15"))


def plot_row_gather(n_rows: int = 16, task_rows: Sequence[int] = (1, 4, 9, 13), tasks: int = 3,
                    title: str | None = None) -> Figure:
    """Draw the row gather for one task over a table of ``n_rows`` rows (``task_rows``: the rows it reads)."""
    task_rows = sorted(set(task_rows))
    if not task_rows or task_rows[0] < 0 or task_rows[-1] >= n_rows:
        raise ValueError(f"task_rows must be row numbers in [0, {n_rows}), got {list(task_rows)}")
    fig, ax = plt.subplots(figsize=(8, 4))
    shared = [TOUCHED if i in task_rows else SHARED for i in range(n_rows)]
    _rows(ax, 0, n_rows, shared, [str(i) for i in range(n_rows)])
    ax.text(0.5, n_rows + 0.6, "shared table\n(N rows, meta-parameter)", ha="center", fontsize=8)
    top = n_rows - (n_rows - len(task_rows)) / 2
    local_y = [top - 1 - j for j in range(len(task_rows))]
    for j, row in enumerate(task_rows):
        ax.add_patch(Rectangle((3.2, local_y[j]), 1, 1, facecolor=LOCAL, edgecolor="grey", linewidth=0.6))
        ax.text(4.35, local_y[j] + 0.5, f"row {row}", va="center", fontsize=7)
        _arrow(ax, (1.05, n_rows - 0.5 - row), (3.15, local_y[j] + 0.5), "#e6550d")
        _arrow(ax, (3.15, local_y[j] + 0.3), (1.05, n_rows - 0.7 - row), "#3182bd", style="<|-")
    ax.text(3.7, top + 0.6, "task-local rows\n(adapted per task)", ha="center", fontsize=8)
    for t in range(tasks):  # the dense path: one full copy per task
        _rows(ax, 6.4 + 0.35 * t, n_rows, [DENSE] * n_rows, width=0.3)
    ax.text(6.4 + 0.35 * tasks / 2, n_rows + 0.6, "dense path:\none full copy per task", ha="center", fontsize=8)
    ax.text(2.1, -1.2, "gather (forward)", color="#e6550d", ha="center", fontsize=8)
    ax.text(2.1, -2.0, "scatter-add of the meta-gradient (backward)", color="#3182bd", ha="center", fontsize=8)
    ax.set_xlim(-1, 8.2)
    ax.set_ylim(-2.5, n_rows + 2)
    ax.set_axis_off()
    ax.set_title(title or "Row-wise fast weights: a task adapts only the rows it reads", fontsize=10)
    fig.tight_layout()
    return fig


__all__ = ["plot_row_gather"]
