"""Conceptual figures, drawn by code so they rerun: tasks cut from a log, MAML's two loops, the
computation graph of a second-order meta-gradient.

Each function takes no data, draws a new figure and returns it. The symbols are those of the
notation page: tasks T_i, support S_i, query Q_i, start theta, fast weights theta'_i, inner
learning rate alpha (``inner_lr``), outer learning rate beta (``outer_lr``).
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import FancyBboxPatch, Rectangle

SUPPORT_COLOR = "tab:blue"
QUERY_COLOR = "tab:orange"
BACKWARD_COLOR = "tab:red"


def draw_tasks_timeline(n_users: int = 4, k_support: int = 3, seed: int = 0) -> Figure:
    """(a) An event log on a timeline, cut into one task per user: first K events support, later query.

    Events are drawn at random times (seeded); a filled dot is a click, a hollow one a non-click.
    """
    if n_users < 1 or k_support < 1:
        raise ValueError(f"n_users and k_support must be >= 1, got {n_users} and {k_support}")
    rng = np.random.default_rng(seed)
    fig, ax = plt.subplots(figsize=(9, 0.9 * n_users + 1.6))
    for row in range(n_users):
        y = n_users - row
        n_events = k_support + int(rng.integers(3, 7))
        first = rng.uniform(0.0, 3.0)
        times = np.sort(first + rng.exponential(0.9, size=n_events).cumsum())
        clicks = rng.random(n_events) < 0.4
        cut = (times[k_support - 1] + times[k_support]) / 2
        end = times[-1] + 0.3
        ax.add_patch(Rectangle((times[0] - 0.3, y - 0.3), cut - times[0] + 0.3, 0.6,
                               color=SUPPORT_COLOR, alpha=0.15, lw=0))
        ax.add_patch(Rectangle((cut, y - 0.3), end - cut, 0.6, color=QUERY_COLOR, alpha=0.15, lw=0))
        for t, clicked in zip(times, clicks):
            color = SUPPORT_COLOR if t < cut else QUERY_COLOR
            ax.plot(t, y, "o", ms=8, mec=color, mfc=color if clicked else "white", mew=1.5)
        ax.text(times[0] - 0.5, y, f"task $T_{row + 1}$ (user {row + 1})", ha="right", va="center")
        if row == 0:
            ax.text((times[0] + cut) / 2, y + 0.42, f"support $S_1$: first K = {k_support} events",
                    ha="center", va="bottom", color=SUPPORT_COLOR)
            ax.text((cut + end) / 2, y + 0.42, "query $Q_1$: later events", ha="center", va="bottom",
                    color=QUERY_COLOR)
    ax.plot([], [], "o", color="grey", label="click (label 1)")
    ax.plot([], [], "o", mec="grey", mfc="white", label="no click (label 0)")
    ax.set_xlim(-4.5, None)
    right = ax.get_xlim()[1]
    ax.set_xticks(np.arange(0, right, 2.5))
    ax.spines["bottom"].set_bounds(0, right)
    ax.set_ylim(0.3, n_users + 1.0)
    ax.set_yticks([])
    ax.set_xlabel("time (days since the log starts)")
    for side in ("left", "right", "top"):
        ax.spines[side].set_visible(False)
    ax.legend(loc="lower right", fontsize="small", frameon=False)
    ax.set_title("An event log cut into tasks: adapt on each user's first events, score on the later ones")
    fig.tight_layout()
    return fig


def _task_loss_contours(ax, centers: np.ndarray, colors: list[str]) -> None:
    xs, ys = np.meshgrid(np.linspace(-3.2, 3.2, 200), np.linspace(-2.6, 2.6, 200))
    for center, color in zip(centers, colors):
        loss = (xs - center[0]) ** 2 + 1.6 * (ys - center[1]) ** 2
        ax.contour(xs, ys, loss, levels=[0.3, 1.0], colors=[color], alpha=0.35, linewidths=1)


def draw_maml_loops(inner_steps: int = 2, inner_lr: float = 0.3) -> Figure:
    """(b) MAML's inner loop (per task, from theta to theta'_i) and outer loop (theta moves).

    Left: the loops as a flow chart. Right: the same in parameter space, with each task's
    support-loss contours, the inner steps of three tasks and the outer update of theta.
    """
    fig, (flow, space) = plt.subplots(1, 2, figsize=(12, 4.8), gridspec_kw={"width_ratios": [1, 1.15]})
    flow.set_axis_off()
    flow.set_xlim(0, 10)
    flow.set_ylim(0, 10)
    boxes = {
        "start": (5, 9.0, r"start $\theta$ (the model's weights)"),
        "inner": (5, 6.6, "inner loop, per task $T_i$:\n"
                          r"$\theta'_i \leftarrow \theta'_i - \alpha\,\nabla\mathcal{L}(\theta'_i; S_i)$"
                          f"\nrepeated {inner_steps} times (inner_steps), " r"$\alpha$ = inner_lr"),
        "query": (5, 4.0, "score the fast weights on the query set:\n"
                          r"$\mathcal{L}(\theta'_i; Q_i)$"),
        "outer": (5, 1.4, "outer loop, per meta-batch B:\n"
                          r"$\theta \leftarrow \theta - \beta\,\nabla_\theta \frac{1}{|B|}"
                          r"\sum_{i \in B} \mathcal{L}(\theta'_i; Q_i)$"),
    }
    for key, (x, y, text) in boxes.items():
        color = {"inner": SUPPORT_COLOR, "query": QUERY_COLOR}.get(key, "grey")
        flow.text(x, y, text, ha="center", va="center", fontsize=10,
                  bbox=dict(boxstyle="round,pad=0.4", fc="white", ec=color, lw=1.5))
    arrow = dict(arrowstyle="-|>", color="black", lw=1.2)
    for a, b in (("start", "inner"), ("inner", "query"), ("query", "outer")):
        flow.annotate("", xy=(5, boxes[b][1] + 0.75), xytext=(5, boxes[a][1] - 0.55), arrowprops=arrow)
    flow.annotate("", xy=(9.2, 9.0), xytext=(9.2, 1.4),
                  arrowprops=dict(arrowstyle="-|>", color="black", lw=1.2, connectionstyle="arc3,rad=0"))
    flow.text(9.4, 5.2, "repeat for\nmeta_steps", rotation=90, ha="left", va="center", fontsize=9)
    flow.set_title("The two loops")

    theta = np.array([0.0, -0.4])
    optima = np.array([[-2.0, 1.3], [2.1, 1.2], [0.3, -2.0]])
    colors = ["tab:green", "tab:purple", "tab:brown"]
    _task_loss_contours(space, optima, colors)
    ends = []
    for i, (optimum, color) in enumerate(zip(optima, colors)):
        point = theta.copy()
        for _ in range(inner_steps):
            nxt = point + 0.6 * (optimum - point) * min(1.0, inner_lr / 0.3)
            space.annotate("", xy=nxt, xytext=point,
                           arrowprops=dict(arrowstyle="-|>", color=color, lw=1.3))
            point = nxt
        ends.append(point)
        space.plot(*point, "o", color=color, ms=7)
        space.text(point[0] + 0.12, point[1] + 0.12, rf"$\theta'_{i + 1}$", color=color, fontsize=12)
        space.text(optimum[0], optimum[1] - 0.3, rf"task $T_{i + 1}$", color=color, ha="center",
                   va="top", fontsize=9)
    new_theta = theta + np.array([0.15, 0.55])
    space.annotate("", xy=new_theta, xytext=theta,
                   arrowprops=dict(arrowstyle="-|>", color="black", lw=2.2))
    space.plot(*theta, "ko", ms=8)
    space.text(theta[0] + 0.15, theta[1] - 0.35, r"$\theta$", fontsize=14)
    space.text(new_theta[0] + 0.12, new_theta[1] + 0.05, "outer step\n(query losses)", fontsize=9)
    space.text(-3.0, -2.4, "arrows in colour: inner loop on $S_i$", fontsize=9, color="dimgrey")
    space.set_xlim(-3.2, 3.2)
    space.set_ylim(-2.6, 2.6)
    space.set_xticks([])
    space.set_yticks([])
    space.set_xlabel("parameter 1")
    space.set_ylabel("parameter 2")
    space.set_title(r"In parameter space: one start $\theta$, one $\theta'_i$ per task")
    fig.suptitle("MAML: the inner loop adapts to each task, the outer loop moves the start")
    fig.tight_layout()
    return fig


def _node(ax, x: float, y: float, text: str, color: str = "black") -> None:
    ax.add_patch(FancyBboxPatch((x - 0.62, y - 0.32), 1.24, 0.64, boxstyle="round,pad=0.05",
                                fc="white", ec=color, lw=1.5))
    ax.text(x, y, text, ha="center", va="center", fontsize=13)


def draw_meta_gradient_graph(inner_steps: int = 2) -> Figure:
    """(c) The computation graph of one task's second-order meta-gradient, forward and backward.

    Forward (black): theta'_s -> g_s = grad L(theta'_s; S) -> theta'_{s+1} = theta'_s - alpha g_s,
    then the query loss. Backward (red): v_n = grad L(theta'_n; Q), and each step multiplies by
    (I - alpha H_s): the H_s v term is the Hessian-vector product autograd computes by
    backpropagating through g_s, which it recorded because the inner gradient was taken with
    ``create_graph=True``. First-order MAML does not record g_s and keeps v unchanged.
    """
    if inner_steps < 1:
        raise ValueError(f"inner_steps must be >= 1, got {inner_steps}")
    width = 3.0 * inner_steps + 3.4
    fig, ax = plt.subplots(figsize=(1.1 * width + 1.0, 4.6))
    ax.set_axis_off()
    ax.set_xlim(-1.0, width)
    ax.set_ylim(-2.7, 2.4)
    y_theta, y_grad = 0.0, 1.5
    for s in range(inner_steps + 1):
        x = 3.0 * s
        label = r"$\theta$" if s == 0 else rf"$\theta'_{s}$"
        _node(ax, x, y_theta, label)
        if s < inner_steps:
            _node(ax, x + 1.5, y_grad, rf"$g_{s}$", SUPPORT_COLOR)
            ax.annotate("", xy=(x + 1.0, y_grad - 0.2), xytext=(x + 0.4, y_theta + 0.35),
                        arrowprops=dict(arrowstyle="-|>", color=SUPPORT_COLOR))
            ax.text(x + 0.25, y_grad - 0.1, r"$\nabla\mathcal{L}(\cdot; S_i)$", fontsize=9,
                    color=SUPPORT_COLOR, ha="right")
            ax.annotate("", xy=(x + 2.4, y_theta + 0.1), xytext=(x + 0.65, y_theta + 0.1),
                        arrowprops=dict(arrowstyle="-|>", color="black"))
            ax.annotate("", xy=(x + 2.5, y_theta + 0.35), xytext=(x + 2.0, y_grad - 0.2),
                        arrowprops=dict(arrowstyle="-|>", color=SUPPORT_COLOR))
            ax.text(x + 2.35, y_grad - 0.55, r"$-\alpha g_" f"{s}$", fontsize=9, color=SUPPORT_COLOR)
            # backward: v_{s+1} -> v_s, with the Hessian-vector product taken through g_s
            ax.annotate("", xy=(x + 0.65, y_theta - 0.25), xytext=(x + 2.35, y_theta - 0.25),
                        arrowprops=dict(arrowstyle="-|>", color=BACKWARD_COLOR, lw=1.5))
            ax.text(x + 1.5, y_theta - 0.75, rf"$v_{s} = v_{s + 1} - \alpha H_{s} v_{s + 1}$",
                    ha="center", fontsize=10, color=BACKWARD_COLOR)
            ax.text(x + 1.5, y_theta - 1.25, f"Hessian-vector product\nthrough $g_{s}$",
                    ha="center", va="top", fontsize=8.5, color=BACKWARD_COLOR)
    x_loss = 3.0 * inner_steps + 2.2
    _node(ax, x_loss, y_theta, r"$\mathcal{L}_Q$", QUERY_COLOR)
    ax.annotate("", xy=(x_loss - 0.65, y_theta + 0.1), xytext=(x_loss - 1.55, y_theta + 0.1),
                arrowprops=dict(arrowstyle="-|>", color="black"))
    ax.text(x_loss, y_theta + 0.55, r"$\mathcal{L}(\theta'_" f"{inner_steps}" r"; Q_i)$", ha="center",
            fontsize=9, color=QUERY_COLOR)
    ax.annotate("", xy=(x_loss - 1.55, y_theta - 0.25), xytext=(x_loss - 0.65, y_theta - 0.25),
                arrowprops=dict(arrowstyle="-|>", color=BACKWARD_COLOR, lw=1.5))
    ax.text(x_loss - 1.1, y_theta - 0.75, rf"$v_{inner_steps}$", ha="center", fontsize=10,
            color=BACKWARD_COLOR)
    ax.text(-0.9, -2.45, r"meta-gradient $\nabla_\theta \mathcal{L}(\theta'_i; Q_i) = v_0$."
            "   black: forward pass; blue: inner gradients, recorded with create_graph=True;"
            " red: backward pass.\nfirst_order=True records no $g_s$, so every $H_s v$ term vanishes"
            r" and $v_0 = v_{" f"{inner_steps}" r"}$.",
            fontsize=9, ha="left", va="bottom")
    ax.set_title("One task's second-order meta-gradient: each inner step adds a Hessian-vector product")
    fig.tight_layout()
    return fig


__all__ = ["draw_maml_loops", "draw_meta_gradient_graph", "draw_tasks_timeline"]
