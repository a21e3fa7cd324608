"""The closing chapter's map: does adapting move a model, and does that beat the best baseline?

Each point is one setting: on the x axis the gain of adapting over the same model's unadapted
start, on the y axis the gain over the best tuned baseline, both paired differences per user with
their 95% intervals. Toy shops of growing user heterogeneity form a curve; the real log's settings
(chapters 7 and 7b) are placed on the same axes, in their own metric.
"""

from __future__ import annotations

import re

import matplotlib.pyplot as plt
import pandas as pd
from matplotlib.figure import Figure

COLUMNS = ("setting", "source", "x", "x_low", "x_high", "y", "y_low", "y_high")


def real_log_points(ch7: dict, ch7b: dict) -> pd.DataFrame:
    """Chapter 7's and 7b's settings as points, from their glued results (NDCG@10 differences).

    Chapter 7: the item-item meta-learner, adapted against not adapted (x; no interval glued, so
    the point's x interval is the point) and against the best classical recommender (y).
    Chapter 7b: the residual meta-learner against its own unadapted score (x) and against the best
    classical scorer (y).
    """
    rows = []
    for key in ch7:
        m = re.fullmatch(r"ch7_meta_diff_(\w+)_k(\d+)", key)
        if m is None or f"ch7_adapt_diff_{m[1]}_k{m[2]}" not in ch7:
            continue
        name, k = m[1], m[2]
        x = ch7[f"ch7_adapt_diff_{name}_k{k}"]
        rows.append({"setting": f"{name} K={k}", "source": "Online Retail, item-item (ch. 7)", "x": x, "x_low": x,
                     "x_high": x, "y": ch7[key], "y_low": ch7[f"ch7_meta_diff_low_{name}_k{k}"],
                     "y_high": ch7[f"ch7_meta_diff_high_{name}_k{k}"]})
    for key in ch7b:
        m = re.fullmatch(r"ch7b_retail_(\w+)_k(\d+)_meta_vs_best_classical_diff", key)
        if m is None:
            continue
        x_key = f"ch7b_retail_{m[1]}_k{m[2]}_meta_vs_unadapted"
        y_key = key.removesuffix("_diff")
        if f"{x_key}_low" not in ch7b:
            continue
        rows.append({"setting": f"{m[1]} K={m[2]}", "source": "Online Retail, residual (ch. 7b)",
                     "x": ch7b[f"{x_key}_diff"], "x_low": ch7b[f"{x_key}_low"], "x_high": ch7b[f"{x_key}_high"],
                     "y": ch7b[f"{y_key}_diff"], "y_low": ch7b[f"{y_key}_low"], "y_high": ch7b[f"{y_key}_high"]})
    return pd.DataFrame(rows, columns=list(COLUMNS))


def plot_when_it_helps(toy: pd.DataFrame, real: pd.DataFrame | None = None) -> Figure:
    """Toy shops (labelled by spread) and real-log settings on the adapt-gain / best-baseline axes."""
    fig, ax = plt.subplots(figsize=(7, 4.5))
    ax.axhline(0, color="black", lw=0.8)
    ax.axvline(0, color="black", lw=0.8)
    parts = [("toy shops (AUC)", toy, "tab:blue", "o")]
    if real is not None and len(real):
        for (source, part), (color, marker) in zip(real.groupby("source", sort=True),
                                                    [("tab:red", "s"), ("tab:orange", "^")]):
            parts.append((f"{source} (NDCG@10)", part, color, marker))
    for label, part, color, marker in parts:
        ax.errorbar(part["x"], part["y"], xerr=[part["x"] - part["x_low"], part["x_high"] - part["x"]],
                    yerr=[part["y"] - part["y_low"], part["y_high"] - part["y"]], fmt=marker, color=color,
                    ecolor=color, alpha=0.8, capsize=2, label=label)
    if "spread" in toy:
        ax.plot(toy["x"], toy["y"], color="tab:blue", lw=0.8, alpha=0.6)
        offsets = [(6, -12), (6, 4), (-52, 6)]  # neighbouring shops can sit on one spot: stagger labels
        for i, row in enumerate(toy.itertuples()):
            ax.annotate(f"spread {row.spread:g}", (row.x, row.y), textcoords="offset points",
                        xytext=offsets[i % len(offsets)], fontsize=8, color="tab:blue")
    ax.set_xlabel("gain from adapting: adapted - its own unadapted start")
    ax.set_ylabel("gain over the best tuned baseline")
    ax.set_title("Meta-learning pays only where adapting moves the model")
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    return fig


__all__ = ["plot_when_it_helps", "real_log_points"]
