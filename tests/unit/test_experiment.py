"""The one-call cold-start comparison on a small synthetic log."""

from __future__ import annotations

import pytest

from metarec_ref.data import validate_events
from metarec_ref.recipes import ColdStartConfig, run_cold_start
from metarec_ref.recipes.cold_start import BASELINES
from metarec_ref.data import generate


@pytest.fixture(scope="module")
def events():
    log = generate(n_users=600, n_items=120, n_interactions=12000, initial_users=0.3, seed=3)
    return validate_events(log.events)


def test_run_cold_start_reports_every_method_with_cis(events):
    result = run_cold_start(events, ColdStartConfig(meta_steps=20, cut_quantile=0.7))
    methods = set(result.results["method"])
    assert methods == {"MAML", *BASELINES}
    auc = result.results[result.results["metric"] == "auc"]
    assert ((auc["ci_low"] <= auc["mean"]) & (auc["mean"] <= auc["ci_high"])).all()
    assert (auc["mean"] > 0.5).all()  # with uniform negatives even popularity beats chance
    assert set(result.paired["verdict"]) <= {"better", "worse", "no detectable difference"}
    best = result.paired[(result.paired["metric"] == "auc") & (result.paired["method"] == result.paired["reference"])]
    assert (best["diff"] == 0).all() and set(best["reference"]) <= set(BASELINES)
    assert result.counts["train_tasks"] > 50 and result.counts["test_tasks_new_user_existing_item"] > 5
    assert len(result.history) == 5


def test_run_cold_start_is_deterministic(events):
    config = ColdStartConfig(meta_steps=10, cut_quantile=0.7)
    a, b = run_cold_start(events, config), run_cold_start(events, config)
    assert a.results.equals(b.results)


@pytest.mark.parametrize(
    "kwargs, message",
    [({"algorithm": "protonet"}, "gradient-based"), ({"cut_quantile": 1.5}, "cut_quantile"),
     ({"negatives": "hard"}, "negatives")],
)
def test_bad_config(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ColdStartConfig(**kwargs)


def test_too_few_tasks_is_explained(events):
    with pytest.raises(ValueError, match="lower k_support"):
        run_cold_start(events, ColdStartConfig(k_support=200, meta_steps=2, cut_quantile=0.7))
