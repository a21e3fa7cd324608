"""The conceptual figures draw without error and show their labelled parts."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.text import Text  # noqa: E402

from metarec_ref.book import draw_maml_loops, draw_meta_gradient_graph, draw_tasks_timeline  # noqa: E402


def _texts(fig: Figure) -> str:
    fig.canvas.draw()  # lays out mathtext too: a malformed formula raises here
    return "\n".join(t.get_text() for t in fig.findobj(Text))


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def test_tasks_timeline_labels_every_task_support_and_query():
    fig = draw_tasks_timeline(n_users=3, k_support=2, seed=1)
    assert isinstance(fig, Figure)
    text = _texts(fig)
    for i in (1, 2, 3):
        assert f"task $T_{i}$" in text
    assert "task $T_4$" not in text
    assert "support $S_1$: first K = 2 events" in text
    assert "query $Q_1$" in text
    assert "time" in fig.axes[0].get_xlabel()
    # one dot per event: each user has K support events plus at least 3 query events
    dots = [line for line in fig.axes[0].lines if len(line.get_xdata()) == 1]
    assert len(dots) >= 3 * (2 + 3)


def test_tasks_timeline_is_reproducible_and_checks_its_arguments():
    first = [tuple(line.get_xydata().ravel()) for line in draw_tasks_timeline(seed=3).axes[0].lines]
    again = [tuple(line.get_xydata().ravel()) for line in draw_tasks_timeline(seed=3).axes[0].lines]
    assert first == again
    with pytest.raises(ValueError, match="k_support"):
        draw_tasks_timeline(k_support=0)


def test_maml_loops_shows_both_loops_and_each_task():
    fig = draw_maml_loops(inner_steps=3)
    text = _texts(fig)
    assert "inner loop, per task" in text and "outer loop, per meta-batch" in text
    assert "repeated 3 times (inner_steps)" in text
    assert "inner_lr" in text
    for i in (1, 2, 3):
        assert rf"$\theta'_{i}$" in text
    assert len(fig.axes) == 2


def test_meta_gradient_graph_has_one_hessian_vector_product_per_inner_step():
    for steps in (1, 2, 3):
        fig = draw_meta_gradient_graph(inner_steps=steps)
        text = _texts(fig)
        assert text.count("Hessian-vector product\nthrough") == steps
        for s in range(steps):
            assert rf"$v_{s} = v_{s + 1} - \alpha H_{s} v_{s + 1}$" in text
            assert f"$g_{s}$" in text
        assert "create_graph=True" in text and "first_order=True" in text
        plt.close(fig)
    with pytest.raises(ValueError, match="inner_steps"):
        draw_meta_gradient_graph(inner_steps=0)
