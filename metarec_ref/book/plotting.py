"""Plots for the book: metric vs support size K, metric vs inner steps, training curves.

Each function draws on ``ax`` (a new figure when None) and returns the axes: labelled axes, a
title (pass one that states the finding), a legend, and the 95% CI as a shaded band.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd
from matplotlib.axes import Axes


def _require(df: pd.DataFrame, columns: list[str], what: str) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ValueError(f"{what} needs columns {missing}; found {list(df.columns)}")


def _axes(ax: Axes | None) -> Axes:
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 4))
    return ax


def _lines(ax: Axes, df: pd.DataFrame, x: str, group: str | None) -> None:
    groups = df.groupby(group, sort=False) if group else [(None, df)]
    for name, part in groups:
        part = part.sort_values(x)
        line = ax.plot(part[x], part["mean"], marker="o", label=name)[0]
        if {"ci_low", "ci_high"} <= set(part.columns):
            ax.fill_between(part[x], part["ci_low"], part["ci_high"], color=line.get_color(), alpha=0.2)


def _select(results: pd.DataFrame, metric: str, cell: str | None) -> pd.DataFrame:
    df = results[results["metric"] == metric]
    if df.empty:
        raise ValueError(f"metric {metric!r} is not in the results; found {sorted(results['metric'].unique())}")
    if cell is not None:
        df = df[df["cell"] == cell]
        if df.empty:
            raise ValueError(f"cell {cell!r} is not in the results; found {sorted(results['cell'].unique())}")
    elif "cell" in df.columns and df["cell"].nunique() > 1:
        raise ValueError(f"results hold several cells {sorted(df['cell'].unique())}; pass cell=...")
    return df


def plot_metric_vs_k(
    results: pd.DataFrame, metric: str, cell: str | None = None, ax: Axes | None = None, title: str | None = None
) -> Axes:
    """Mean metric (with 95% CI band) against the support size K, one line per method.

    results: the tidy table of :func:`metarec_ref.eval.evaluate.evaluate`.
    """
    _require(results, ["method", "K", "metric", "mean"], "plot_metric_vs_k")
    df = _select(results, metric, cell)
    ax = _axes(ax)
    _lines(ax, df, "K", "method")
    ax.set_xlabel("support size K (events per task)")
    ax.set_ylabel(metric)
    ax.set_title(title or f"{metric} vs support size" + (f" ({cell})" if cell else ""))
    ax.legend(loc="best")
    return ax


def plot_metric_vs_inner_steps(
    curve: pd.DataFrame, metric: str, ax: Axes | None = None, title: str | None = None
) -> Axes:
    """Mean metric (with 95% CI band) against the number of inner steps; one line per ``method``
    when that column exists (e.g. concatenated :func:`~metarec_ref.eval.evaluate.inner_steps_curve`)."""
    _require(curve, ["inner_steps", "metric", "mean"], "plot_metric_vs_inner_steps")
    df = curve[curve["metric"] == metric]
    if df.empty:
        raise ValueError(f"metric {metric!r} is not in the curve; found {sorted(curve['metric'].unique())}")
    ax = _axes(ax)
    _lines(ax, df, "inner_steps", "method" if "method" in df.columns else None)
    ax.set_xlabel("inner (adaptation) steps")
    ax.set_ylabel(metric)
    ax.set_title(title or f"{metric} vs inner steps")
    if "method" in df.columns:
        ax.legend(loc="best")
    return ax


def plot_history(history: pd.DataFrame, ax: Axes | None = None, title: str | None = None) -> Axes:
    """Training and validation loss against meta-training steps (from ``MetaTrainer.history``)."""
    _require(history, ["step", "train_loss", "val_loss"], "plot_history")
    ax = _axes(ax)
    ax.plot(history["step"], history["train_loss"], marker="o", label="train (meta-batch query loss)")
    if history["val_loss"].notna().any():
        ax.plot(history["step"], history["val_loss"], marker="o", label="validation (query loss)")
    ax.set_xlabel("meta-training step")
    ax.set_ylabel("query loss after adaptation")
    ax.set_title(title or "meta-training curve")
    ax.legend(loc="best")
    return ax


__all__ = ["plot_history", "plot_metric_vs_inner_steps", "plot_metric_vs_k"]
