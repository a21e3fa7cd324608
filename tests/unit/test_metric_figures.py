"""The metric-based figures: the prototype plane shows ProtoNet's decision exactly; both figures check shapes."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from metarec_ref.book import plot_attention, plot_prototypes  # noqa: E402
from metarec_ref.book.metric_figures import prototype_plane  # noqa: E402


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def test_first_coordinate_is_the_protonet_logit_over_twice_the_prototype_gap():
    rng = np.random.default_rng(0)
    points, positive, negative = rng.normal(size=(20, 6)), rng.normal(size=6), rng.normal(size=6)
    plane = prototype_plane(points, positive, negative)
    logit = ((points - negative) ** 2).sum(1) - ((points - positive) ** 2).sum(1)
    np.testing.assert_allclose(plane[:, 0], logit / (2 * np.linalg.norm(positive - negative)), atol=1e-12)
    # the second axis is orthogonal to the first: it never changes the decision
    assert plane.shape == (20, 2)
    with pytest.raises(ValueError, match="coincide"):
        prototype_plane(points, positive, positive)


def test_plot_prototypes_draws_one_panel_per_user_and_counts_the_right_side():
    support = torch.tensor([[[1.0, 0.0], [-1.0, 0.0]], [[0.0, 2.0], [0.0, -2.0]]])
    support_y = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    query = torch.tensor([[[2.0, 1.0], [3.0, 0.0], [-2.0, 0.0]], [[0.0, 1.0], [0.0, -1.0], [1.0, 3.0]]])
    query_y = torch.tensor([[1.0, 0.0, 0.0], [1.0, 0.0, 0.0]])
    fig = plot_prototypes(support, support_y, query, query_y, support[:, 0], support[:, 1], users=["a", "b"])
    titles = [ax.get_title() for ax in fig.axes]
    assert titles == ["a: 2 of 3 query events on their label's side", "b: 2 of 3 query events on their label's side"]
    with pytest.raises(ValueError, match="same users"):
        plot_prototypes(support, support_y, query[:1], query_y, support[:, 0], support[:, 1])
    with pytest.raises(ValueError, match="3 dimensions"):
        plot_prototypes(support[0], support_y, query, query_y, support[:, 0], support[:, 1])


def test_plot_attention_writes_every_weight_and_checks_shapes():
    weights = torch.tensor([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8]])
    ax = plot_attention(weights, torch.tensor([1.0, 0.0, 0.0]), torch.tensor([1.0, 0.0]), torch.tensor([0.7, 0.1]))
    texts = [t.get_text() for t in ax.texts]
    assert texts == ["0.70", "0.20", "0.10", "0.10", "0.10", "0.80"]
    assert ax.get_yticklabels()[0].get_text() == "query 1 (click): p = 0.70"
    with pytest.raises(ValueError, match="support_y needs shape"):
        plot_attention(weights, torch.tensor([1.0, 0.0]), torch.tensor([1.0, 0.0]), torch.tensor([0.7, 0.1]))
