"""The synthetic e-commerce generator: determinism, structure, ground truth."""

import numpy as np
import pandas as pd
import pytest

from metarec_ref.data import validate_events
from metarec_ref.data import SyntheticConfig, generate
from metarec_ref.data.synthetic import main

SMALL = SyntheticConfig(n_users=300, n_items=150, n_interactions=15_000, seed=1)


@pytest.fixture(scope="module")
def log():
    return generate(SMALL)


def test_same_seed_same_log_and_other_seed_differs(log):
    pd.testing.assert_frame_equal(log.events, generate(SMALL).events)
    other = generate(SMALL, seed=2).events
    assert not other["item_id"].equals(log.events["item_id"])


def test_schema_and_size(log):
    ev = log.events
    assert len(ev) == SMALL.n_interactions
    assert list(ev.columns) == ["user_id", "item_id", "timestamp", "scenario", "category", "price", "event"]
    assert ev["timestamp"].is_monotonic_increasing
    assert ev.groupby("user_id").size().min() >= SMALL.min_events_per_user
    assert set(ev["event"]) == {"view", "purchase"}
    validated = validate_events(ev)
    assert len(validated) == len(ev)


def test_long_tail_popularity(log):
    counts = log.events["item_id"].value_counts()
    top_decile = counts.iloc[: len(counts) // 10].sum() / counts.sum()
    assert top_decile > 0.3


def test_users_and_items_arrive_over_time(log):
    ev, world = log.events, log.world
    first_user = ev.groupby("user_id")["timestamp"].min()
    assert (first_user > ev["timestamp"].min() + pd.Timedelta(days=30)).mean() > 0.2
    tau = world.tau(ev["timestamp"].to_numpy())
    assert (world.item_arrival[ev["item_id"].to_numpy()] <= tau + 1e-9).all()


def test_oracle_ranks_chosen_items_above_random_items(log):
    ev, world = log.events, log.world
    users, items = ev["user_id"].to_numpy(), ev["item_id"].to_numpy()
    times, scen = ev["timestamp"].to_numpy(), ev["scenario"].to_numpy()
    chosen = log.true_scores(users, items, times, scen)
    random_items = np.random.default_rng(0).integers(0, SMALL.n_items, len(ev))
    other = log.true_scores(users, random_items, times, scen)
    assert (chosen > other).mean() > 0.7


def test_true_scores_broadcast_to_a_user_by_item_matrix(log):
    scores = log.true_scores(np.arange(5)[:, None], np.arange(SMALL.n_items)[None, :])
    assert scores.shape == (5, SMALL.n_items) and np.isfinite(scores).all()


def test_purchases_follow_the_known_model(log):
    ev, world = log.events, log.world
    p = world.purchase_probability(ev["user_id"], ev["item_id"], ev["timestamp"].to_numpy(),
                                   ev["scenario"])
    bought = (ev["event"] == "purchase").to_numpy()
    assert abs(p.mean() - bought.mean()) < 0.02
    assert p[bought].mean() > p[~bought].mean() + 0.05


def test_scenarios_shift_preferences(log):
    ev = log.events
    share = pd.crosstab(ev["scenario"], ev["category"], normalize="index")
    assert share.std(axis=0).max() > 0.02


@pytest.mark.parametrize(
    "override, message",
    [
        ({"n_users": 0}, "n_users must be >= 1"),
        ({"n_interactions": 10}, "below n_users \\* min_events_per_user"),
        ({"initial_items": 1.5}, "initial_items must be in \\[0, 1\\]"),
        ({"temperature": 0.0}, "temperature must be > 0"),
    ],
)
def test_bad_configs(override, message):
    with pytest.raises(ValueError, match=message):
        generate(SMALL, **override)


def test_command_line_writes_a_csv(tmp_path, capsys):
    out = tmp_path / "sample.csv"
    main(["--out", str(out), "--users", "20", "--items", "30", "--interactions", "200"])
    df = pd.read_csv(out)
    assert len(df) == 200 and df["user_id"].nunique() == 20
    assert "wrote 200 events" in capsys.readouterr().out
