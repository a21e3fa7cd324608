"""Figures of the new-products chapter: the Meta-Embedding pipeline and the gain against K."""

from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch


def _box(ax, x, y, text, color, width=2.1, height=0.9):
    ax.add_patch(FancyBboxPatch((x - width / 2, y - height / 2), width, height, boxstyle="round,pad=0.05",
                                facecolor=color, edgecolor="black", linewidth=0.8))
    ax.text(x, y, text, ha="center", va="center", fontsize=9)


def _arrow(ax, start, end, text="", offset=0.25):
    ax.add_patch(FancyArrowPatch(start, end, arrowstyle="-|>", mutation_scale=12, linewidth=1.0, color="black"))
    if text:
        ax.text((start[0] + end[0]) / 2, (start[1] + end[1]) / 2 + offset, text, ha="center", fontsize=8)


def draw_meta_embedding():
    """Content -> generator -> cold embedding -> warm-up on the first buyers -> scores over customers."""
    fig, ax = plt.subplots(figsize=(12, 3.8))
    xs = (1.2, 4.3, 7.4, 10.5, 13.6)
    _box(ax, xs[0], 2.0, "new product\n\"RED HEART MUG\"\n£2.10, family 220", "#fde9d9", height=1.2)
    _box(ax, xs[1], 2.0, "content x\nn-grams | log price\n| family", "#fff2cc")
    _box(ax, xs[2], 2.0, "cold embedding\nv0 = g(x)", "#dae8fc")
    _box(ax, xs[3], 2.0, "warm embedding\nvK = v0 - lr * grad", "#d5e8d4")
    _box(ax, xs[4], 2.0, "score(c) =\ne_c . v + b_c", "#e1d5e7")
    _box(ax, xs[3], 0.3, "first K buyers\n(the support)", "#f5f5f5", height=0.7)
    for (left, right), label in zip(zip(xs[:-1], xs[1:]), ("encode", "generate", "warm up", "rank")):
        _arrow(ax, (left + 1.1, 2.0), (right - 1.1, 2.0), label, offset=0.2)
    _arrow(ax, (xs[3], 0.68), (xs[3], 1.52))
    ax.annotate("", xy=(xs[2], 2.5), xytext=(xs[4], 2.5),
                arrowprops={"arrowstyle": "-|>", "linestyle": "--", "color": "grey", "connectionstyle": "arc3,rad=0.3"})
    ax.text(xs[3], 3.75, "meta-training: the later buyers' loss, cold and warm, trains g and lr", ha="center",
            fontsize=8, color="dimgrey")
    ax.set_xlim(0, 14.8)
    ax.set_ylim(-0.2, 4.0)
    ax.axis("off")
    ax.set_title("Meta-Embedding: a new product's embedding from its content, warmed up by its first buyers")
    fig.tight_layout()
    return fig


def draw_gain_against_k(table: pd.DataFrame, title: str):
    """Meta-learner minus the best opponent and minus its own cold embedding, per K, with 95% CIs.

    table: rows of :func:`~metarec_ref.recipes.new_product_experiment.new_product_verdicts`.
    """
    fig, ax = plt.subplots(figsize=(8, 4.4))
    labels = {"meta_vs_best_opponent": "against the best opponent (chosen on validation)",
              "meta_vs_cold_generator": "against its own cold embedding (no warm-up)"}
    for i, (comparison, rows) in enumerate(table.groupby("comparison", sort=False)):
        x = rows["K"].to_numpy() + (i - 0.5) * 0.12
        ax.errorbar(x, rows["diff"], yerr=[rows["diff"] - rows["ci_low"], rows["ci_high"] - rows["diff"]],
                    marker="o", capsize=3, linestyle="none", label=labels.get(comparison, comparison))
    ax.axhline(0, color="black", linewidth=0.8)
    ks = sorted(table["K"].unique())
    ax.set_xticks(ks, [str(k) for k in ks])
    ax.set_xlabel("first buyers in the support, K")
    ax.set_ylabel("NDCG@10 difference per product\n(95% CI, products x seeds)")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=2, fontsize=8)
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return fig


__all__ = ["draw_gain_against_k", "draw_meta_embedding"]
