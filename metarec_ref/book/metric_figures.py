"""Pictures of the metric-based learners: ProtoNet's prototypes, MatchingNet's attention.

:func:`plot_prototypes` draws each user's embedded support and query events with the two
prototypes, in the plane that shows ProtoNet's decision exactly; :func:`plot_attention` draws the
weights with which a few query events attend over one user's support events.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure

CLICK, NO_CLICK = "tab:orange", "tab:blue"


def _array(value, name: str, ndim: int) -> np.ndarray:
    array = value.detach().cpu().double().numpy() if isinstance(value, torch.Tensor) else np.asarray(value, float)
    if array.ndim != ndim:
        raise ValueError(f"{name} must have {ndim} dimensions, got shape {array.shape}")
    return array


def prototype_plane(points: np.ndarray, positive: np.ndarray, negative: np.ndarray) -> np.ndarray:
    """2-D coordinates of ``points`` ``(n, d)``: along ``positive - negative``, then the largest remaining spread.

    The first coordinate is measured from the midpoint of the prototypes, so it is the logit
    ``|z - p_-|^2 - |z - p_+|^2`` divided by ``2 |p_+ - p_-|``: its sign is ProtoNet's decision, and
    the line x = 0 is its boundary, exactly. The second axis only spreads the points for the eye.
    """
    gap = positive - negative
    norm = np.linalg.norm(gap)
    if norm == 0:
        raise ValueError("the two prototypes coincide; the user needs support events of both classes that differ")
    along = gap / norm
    centred = points - (positive + negative) / 2
    x = centred @ along
    rest = centred - np.outer(x, along)
    _, _, vt = np.linalg.svd(rest - rest.mean(0), full_matrices=False)
    return np.stack([x, rest @ vt[0]], axis=1)


def plot_prototypes(support, support_y, query, query_y, positive, negative, *,
                    users: list[str] | None = None, title: str | None = None) -> Figure:
    """One panel per user: support events (filled), query events (hollow), prototypes (stars).

    support ``(users, k, d)``, support_y ``(users, k)``, query ``(users, n, d)``, query_y
    ``(users, n)``: embedded events and their click labels; positive, negative ``(users, d)``:
    the prototypes. Every user needs support events of both classes.
    """
    support, query = _array(support, "support", 3), _array(query, "query", 3)
    support_y, query_y = _array(support_y, "support_y", 2) > 0.5, _array(query_y, "query_y", 2) > 0.5
    positive, negative = _array(positive, "positive", 2), _array(negative, "negative", 2)
    n_users = support.shape[0]
    if not (query.shape[0] == support_y.shape[0] == query_y.shape[0] == positive.shape[0] == negative.shape[0]
            == n_users):
        raise ValueError("support, support_y, query, query_y, positive and negative must hold the same users")
    users = users or [f"user {u + 1}" for u in range(n_users)]
    fig, axes = plt.subplots(1, n_users, figsize=(4.2 * n_users, 4.2), squeeze=False)
    for u, ax in enumerate(axes[0]):
        points = np.concatenate([support[u], query[u], positive[u][None], negative[u][None]])
        plane = prototype_plane(points, positive[u], negative[u])
        k, n = support.shape[1], query.shape[1]
        s, q, p_pos, p_neg = plane[:k], plane[k:k + n], plane[-2], plane[-1]
        right = (q[:, 0] > 0) == query_y[u]
        ax.axvspan(0, max(np.abs(plane[:, 0]).max() * 1.15, 1e-6), color=CLICK, alpha=0.07)
        ax.axvline(0, color="grey", linestyle="--", linewidth=1)
        for clicked, colour, label in ((True, CLICK, "click"), (False, NO_CLICK, "no click")):
            ax.scatter(*s[support_y[u] == clicked].T, s=70, color=colour, edgecolor="black",
                       label=f"support: {label}", zorder=3)
            ax.scatter(*q[query_y[u] == clicked].T, s=40, facecolor="none", edgecolor=colour, linewidth=1.5,
                       label=f"query: {label}", zorder=2)
        ax.scatter(*p_pos, marker="*", s=400, color=CLICK, edgecolor="black", label="prototype $p_+$", zorder=4)
        ax.scatter(*p_neg, marker="*", s=400, color=NO_CLICK, edgecolor="black", label="prototype $p_-$", zorder=4)
        limit = np.abs(plane[:, 0]).max() * 1.15
        ax.set_xlim(-limit, limit)
        ax.set_title(f"{users[u]}: {int(right.sum())} of {n} query events on their label's side", fontsize=10)
        ax.set_xlabel(r"along $p_+ - p_-$ (right of 0: scored as a click)")
        if u == 0:
            ax.set_ylabel("largest remaining spread (embedding units)")
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=len(labels), fontsize="small", frameon=False)
    if title:
        fig.suptitle(title)
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    return fig


def plot_attention(weights, support_y, query_y, probability, *, title: str | None = None,
                   ax: Axes | None = None) -> Axes:
    """A heat map of one user's attention: query events (rows) over support events (columns).

    weights ``(n, k)`` (rows sum to 1), support_y ``(k,)``, query_y ``(n,)``: click labels;
    probability ``(n,)``: the predicted click probability of each query event.
    """
    weights = _array(weights, "weights", 2)
    support_y, query_y = _array(support_y, "support_y", 1) > 0.5, _array(query_y, "query_y", 1) > 0.5
    probability = _array(probability, "probability", 1)
    n, k = weights.shape
    if support_y.shape != (k,) or query_y.shape != (n,) or probability.shape != (n,):
        raise ValueError(f"weights are {weights.shape}: support_y needs shape ({k},), query_y and probability ({n},)")
    if ax is None:
        _, ax = plt.subplots(figsize=(1.1 * k + 3.5, 0.55 * n + 1.8))
    ax.imshow(weights, cmap="Greys", vmin=0, vmax=1, aspect="auto")
    for i in range(n):
        for j in range(k):
            ax.text(j, i, f"{weights[i, j]:.2f}", ha="center", va="center", fontsize=9,
                    color="white" if weights[i, j] > 0.5 else "black")
    ax.set_xticks(range(k), [f"support {j + 1}\n{'click' if c else 'no click'}" for j, c in enumerate(support_y)],
                  fontsize=8)
    for tick, clicked in zip(ax.get_xticklabels(), support_y):
        tick.set_color(CLICK if clicked else NO_CLICK)
    ax.set_yticks(range(n), [f"query {i + 1} ({'click' if c else 'no click'}): p = {p:.2f}"
                             for i, (c, p) in enumerate(zip(query_y, probability))], fontsize=8)
    for tick, clicked in zip(ax.get_yticklabels(), query_y):
        tick.set_color(CLICK if clicked else NO_CLICK)
    ax.set_xlabel("support events of the user (weight of each in the query's prediction)")
    if title:
        ax.set_title(title, fontsize=10)
    return ax


__all__ = ["plot_attention", "plot_prototypes", "prototype_plane"]
