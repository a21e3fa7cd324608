"""The application chapters' helpers: curves against K on the same tasks, tuned budgets that warn on grid edges."""

import warnings

import numpy as np
import pytest
import torch

from metarec_ref.data import Encoders, NegativeSampling, SyntheticConfig, build_user_tasks, generate, to_task_batch
from metarec_ref.eval import (
    FineTune,
    GlobalModel,
    Popularity,
    SupervisedConfig,
    pool_events,
    train_supervised,
    tune_fine_tuning,
)
from metarec_ref.models import build_model
from metarec_ref.recipes import ColdStartCut, cold_start_shop
from metarec_ref.recipes.scenarios import (
    curve_against_k,
    events_with_negatives,
    tuned_epochs,
)
from metarec_ref.runtime import GridEdgeWarning


@pytest.fixture(scope="module")
def shop():
    log = generate(n_users=150, n_items=60, n_interactions=6000, seed=2)
    encoders = Encoders.fit(log.events)
    tasks = build_user_tasks(log.events, 6, 3, negatives=NegativeSampling(1, "popularity"), seed=0)
    torch.manual_seed(0)
    model = build_model("mlp", encoders.spec)
    train_supervised(model, *pool_events(to_task_batch(tasks, encoders)), SupervisedConfig(epochs=1, seed=0))
    return log, encoders, tasks, model


def test_curve_against_k_scores_the_same_tasks_and_a_flat_oracle(shop):
    log, encoders, tasks, model = shop
    methods = {"fine-tune": FineTune(model, steps=2, lr=0.1), "global": GlobalModel(model),
               "popularity": Popularity.fit(to_task_batch(tasks, encoders), encoders.spec.n_items)}
    results, comparison, values = curve_against_k(methods, tasks, log, encoders, [1, 3, 6], ["global", "popularity"],
                                                  n_boot=100)
    oracle = results[results["method"] == "oracle"]
    assert oracle["mean"].nunique() == 1  # the oracle ignores the support: flat in K
    assert (results.groupby("K")["n_tasks"].max() == tasks.num_tasks).all()
    glob = results[results["method"] == "global"]["mean"]
    assert glob.nunique() == 1  # no adaptation: the same tasks give the same score at every K
    assert set(comparison["K"]) == {1, 3, 6} and set(values) == {1, 3, 6}
    with pytest.raises(ValueError, match="k_support >= max"):
        curve_against_k(methods, tasks, log, encoders, [1, 7], ["global"])


def test_tuned_values_warn_on_grid_edges(shop):
    log, encoders, tasks, model = shop
    val = to_task_batch(tasks, encoders)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        choice = tune_fine_tuning(model, val, [1, 2], [0.1], warn_on_edge="test")  # two points: any choice is an edge
    assert choice.steps in (1, 2) and any(issubclass(w.category, GridEdgeWarning) for w in caught)
    x, y = events_with_negatives(log.events.head(300), encoders, NegativeSampling(1, "popularity"), seed=1)
    assert len(y) == 600 and float(y.sum()) == 300  # every event, each with one negative
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        epochs, trained = tuned_epochs(model, x, y, val, [0, 1], what="test", max_extensions=0)
    assert epochs in (0, 1) and trained is not model
    edge = [w for w in caught if issubclass(w.category, GridEdgeWarning)]
    assert (epochs == 1) == bool(edge)  # 0 epochs is a natural bound, 1 the upper edge
    assert np.isfinite(float(per_param_sum(trained)))


def per_param_sum(model):
    return sum(p.detach().sum() for p in model.parameters())


def test_tuning_without_a_name_stays_silent(shop):
    log, encoders, tasks, model = shop
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        choice = tune_fine_tuning(model, to_task_batch(tasks, encoders), [1, 2], [0.1])
    assert not any(issubclass(w.category, GridEdgeWarning) for w in caught)
    assert (choice.method.steps, choice.method.lr) == (choice.steps, choice.lr) == (choice.chosen["steps"], 0.1)


def test_the_shop_is_the_cold_start_pipeline_cut():
    log = SyntheticConfig(n_users=300, n_items=80, n_interactions=8000, initial_users=0.3, seed=3)
    cut = ColdStartCut(k_support=3, n_query=4, negatives=NegativeSampling(1, "popularity"), cut_quantile=0.7, seed=3)
    shop = cold_start_shop(log, cut)
    assert shop.split.cut_time == shop.events["timestamp"].quantile(0.7)
    assert shop.train.num_tasks > 10 and shop.val.num_tasks > 2
    real = shop.train.support_mask
    assert ((shop.train.support_y == 0) & real).sum() == ((shop.train.support_y == 1) & real).sum()  # one negative each


def test_tuned_epochs_extends_a_grid_whose_best_is_its_largest(shop, monkeypatch):
    import metarec_ref.recipes.scenarios as scenarios

    log, encoders, tasks, model = shop
    val = to_task_batch(tasks, encoders)
    x, y = events_with_negatives(log.events.head(300), encoders, NegativeSampling(1, "popularity"), seed=1)
    trained_for = []

    def fake_training(model, x, y, config):  # more epochs always validate better here
        trained_for.append(config.epochs)
        with torch.no_grad():
            next(model.parameters()).add_(config.epochs)

    monkeypatch.setattr(scenarios, "train_supervised", fake_training)
    monkeypatch.setattr(scenarios, "per_task_metrics",
                        lambda method, val: {"auc": next(method.model.parameters()).detach().mean().reshape(1)})
    epochs, _ = tuned_epochs(model, x, y, val, [0, 1, 2], what="test", max_extensions=2)
    assert trained_for == [1, 2, 4, 8] and epochs == 8  # 2 -> 4 -> 8: two extensions, the ratio of 1 and 2
