"""Baselines: popularity, global model, functional fine-tuning, scratch, rating means."""

import pytest
import torch

from metarec_ref.batch import TaskBatch
from metarec_ref.eval import (
    FineTune,
    GlobalModel,
    ItemMean,
    Popularity,
    ScratchPerTask,
    SupervisedConfig,
    UserMean,
    pool_events,
    reinitialized,
    train_supervised,
    tune_fine_tuning,
)
from metarec_ref.meta import masked_bce_loss as masked_bce
from metarec_ref.eval.metrics import per_task_auc
from metarec_ref.models import MLP, MeLU, build_model
from tests.unit.helpers import SPEC, catalog_features, toy_tasks, toy_world


def mean_auc(method, batch):
    state = method.adapt(batch)
    return torch.nanmean(per_task_auc(method.score(state, batch.query_x), batch.query_y, batch.query_mask)).item()


@pytest.fixture(scope="module")
def data():
    world = toy_world()
    return world, toy_tasks(300, seed=1, world=world), toy_tasks(60, seed=2, world=world)


@pytest.fixture(scope="module")
def trained(data):
    _, train, _ = data
    torch.manual_seed(0)
    model = MLP(SPEC, hidden=(32, 16), emb_dim=8)
    untrained = reinitialized(model, seed=0)
    x, y = pool_events(train)
    history = train_supervised(model, x, y, SupervisedConfig(epochs=15, batch_size=128, lr=5e-3), disable=True)
    return model, untrained, history


def test_pool_events_keeps_only_real_events(data):
    _, train, _ = data
    x, y = pool_events(train)
    n_real = int(train.support_mask.sum() + train.query_mask.sum())
    assert y.shape == (n_real,) and x["item"].shape == (n_real,) and x["dense"].shape == (n_real, 2)
    xs, ys = pool_events(train, include_query=False)
    assert ys.shape == (int(train.support_mask.sum()),)


def test_global_model_learns_and_beats_its_initialisation(data, trained):
    _, _, val = data
    model, untrained, history = trained
    assert history["train_loss"].iloc[-1] < history["train_loss"].iloc[0]
    assert mean_auc(GlobalModel(model), val) > mean_auc(GlobalModel(untrained), val) + 0.1


def test_popularity_counts_positives_and_ranks(data):
    world, train, val = data
    pop = Popularity.fit(train, SPEC.n_items)
    x, y = pool_events(train)
    item = int(x["item"][0])
    assert pop.counts[item] == y[x["item"] == item].sum()
    assert not pop.calibrated
    assert mean_auc(pop, val) > 0.55  # items have a popularity effect in the toy world
    scores = pop.score(None, catalog_features(world, torch.zeros(3, dtype=torch.long)))
    assert scores.shape == (3, SPEC.n_items)


def test_fine_tune_is_functional_and_helps(data, trained):
    _, _, val = data
    model, _, _ = trained
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    tuned = FineTune(model, steps=5, lr=0.1)
    state = tuned.adapt(val)
    assert state.adapted["head.weight"].shape == (val.num_tasks, *model.head.weight.shape)
    for n, p in model.named_parameters():
        assert torch.equal(p, before[n]), f"{n} was mutated"
    # Per-task adaptation on the support set lowers the support loss of each task on average.
    sl = lambda m, s: masked_bce(m.score(s, val.support_x), val.support_y, val.support_mask)  # noqa: E731
    assert sl(tuned, state) < sl(FineTune(model, steps=0), FineTune(model, steps=0).adapt(val))
    assert mean_auc(tuned, val) > mean_auc(GlobalModel(model), val)


def test_fine_tune_batched_equals_per_task_loop(data, trained):
    _, _, val = data
    model, _, _ = trained
    tuned = FineTune(model, steps=3, lr=0.1, adapt="head")
    batched = tuned.score(tuned.adapt(val), val.query_x)
    for t in [0, 1, 5]:
        one = val.select([t])
        torch.testing.assert_close(tuned.score(tuned.adapt(one), one.query_x)[0], batched[t])


def test_fine_tune_steps_zero_equals_global_model(data, trained):
    _, _, val = data
    model, _, _ = trained
    tuned = FineTune(model, steps=0)
    torch.testing.assert_close(tuned.score(tuned.adapt(val), val.query_x), GlobalModel(model).score(None, val.query_x))


def test_fine_tune_adapts_only_the_filtered_parameters(data):
    _, _, val = data
    model = build_model("wide_deep", SPEC, hidden=(8,), emb_dim=4)
    state = FineTune(model, steps=2, lr=0.1, adapt="head").adapt(val)
    assert set(state.adapted) == {"head.weight", "head.bias"}
    melu = MeLU(SPEC, emb_dim=4, hidden=(8,))
    state = FineTune(melu, steps=1, adapt=MeLU.adapted_parameter).adapt(val)
    assert state.adapted and all(n.startswith(("decision.", "head.")) for n in state.adapted)
    with pytest.raises(ValueError, match="selects no parameter"):
        FineTune(model, adapt=lambda n: False)
    with pytest.raises(ValueError, match="steps"):
        FineTune(model, steps=-1)


def test_fine_tune_with_the_budget_of_maml(data, trained):
    from metarec_ref.meta import MAML

    _, _, val = data
    model, _, _ = trained
    maml = MAML(model, inner_steps=3, inner_lr=0.05, adapt="head")
    tuned = FineTune.with_budget_of(maml, model)
    assert (tuned.steps, tuned.lr, tuned.adapt_filter) == (3, 0.05, "head")
    # Same start, same inner loop, same budget: the very same adapted scores as MAML's adapt.
    torch.testing.assert_close(tuned.score(tuned.adapt(val), val.query_x), maml.score(maml.adapt(val), val.query_x))
    assert FineTune.with_budget_of(maml, model, lr=0.2).lr == 0.2


def test_tune_fine_tuning_returns_grid_and_best(data, trained):
    _, _, val = data
    model, _, _ = trained
    choice = tune_fine_tuning(model, val, steps_grid=(1, 3), lr_grid=(0.0, 0.03))
    assert len(choice.table) == 4
    assert choice.table["val_loss"].min() == choice.table.loc[
        (choice.table["steps"] == choice.steps) & (choice.table["lr"] == choice.lr), "val_loss"
    ].item()
    assert choice.lr == 0.03  # lr=0 is no adaptation; adaptation helps in this world


def test_scratch_per_task_learns_support_but_transfers_nothing(data):
    _, _, val = data
    model = MLP(SPEC, hidden=(16,), emb_dim=4)
    scratch = ScratchPerTask(model, steps=30, lr=0.5, seed=3)
    state = scratch.adapt(val)
    support_loss = masked_bce(scratch.score(state, val.support_x), val.support_y, val.support_mask)
    init_loss = masked_bce(
        scratch.score(FineTune(scratch.model, steps=0).adapt(val), val.support_x), val.support_y, val.support_mask
    )
    assert support_loss < init_loss
    assert not torch.equal(scratch.model.head.weight, model.head.weight)  # really re-initialised


def _rating_batch():
    x = {
        "item": torch.tensor([[0, 1, 2], [1, 1, 0]]),
        "category": torch.zeros(2, 3, dtype=torch.long),
        "scenario": torch.zeros(2, 3, dtype=torch.long),
        "dense": torch.zeros(2, 3, 2),
    }
    y = torch.tensor([[4.0, 2.0, 3.0], [5.0, 1.0, 9.0]])
    mask = torch.tensor([[True, True, True], [False, False, False]])
    return TaskBatch(x, y, mask, x, y, torch.ones(2, 3, dtype=torch.bool))


def test_user_mean_and_item_mean():
    batch = _rating_batch()
    um = UserMean.fit(batch)
    state = um.adapt(batch)
    # Task 0: mean of its support 3.0; task 1 has no support -> the global mean.
    assert state.tolist() == pytest.approx([3.0, um.global_mean])
    assert um.score(state, batch.query_x).shape == (2, 3)
    im = ItemMean.fit(batch, n_items=4, prior_weight=0.0)
    # Item 0 is rated 4 (support), 4 and 9 (queries) in the pooled events; item 2 is rated 3 twice.
    assert im.score(None, {"item": torch.tensor([[0, 2]])})[0].tolist() == pytest.approx([17 / 3, 3.0])
    shrunk = ItemMean.fit(batch, n_items=4, prior_weight=1000.0)
    assert shrunk.item_means[0].item() == pytest.approx(float(pool_events(batch)[1].mean()), abs=0.01)


def test_tune_fine_tuning_extends_a_learning_rate_grid_that_stops_short(data, trained):
    from metarec_ref.eval.baselines import tune_fine_tuning

    _, _, val = data
    model, _, _ = trained
    # learning rates far too small: the best is the largest, so the grid grows upwards
    fixed = tune_fine_tuning(model, val, steps_grid=(1, 3), lr_grid=(1e-5, 1e-4))
    grown = tune_fine_tuning(model, val, steps_grid=(1, 3), lr_grid=(1e-5, 1e-4), max_extensions=3,
                             steps_bounds=(1, 5))
    assert fixed.lr == 1e-4 and len(fixed.table) == 4  # without extensions, the grid as given
    assert grown.search.extended["lr"] and grown.lr > 1e-4
    assert grown.table["val_loss"].min() < fixed.table["val_loss"].min()
    assert grown.table.loc[grown.table["val_loss"].idxmin(), "lr"] == grown.lr
    assert max(grown.search.final["steps"]) <= 5  # the cap holds
