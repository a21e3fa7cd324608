"""The item-item meta-learner: support items in the features, leave-one-out, MAML training."""

import ast
from pathlib import Path

import pandas as pd
import pytest
import torch

from metarec_ref.batch import TaskBatch
from metarec_ref.data import NegativeSampling
from metarec_ref.data import (
    Encoders,
    build_user_tasks,
    generate,
    split_users,
    ranking_targets,
    temporal_cold_start_split,
    to_task_batch,
    validate_events,
)
from metarec_ref.eval import EvalTasks, ItemKNN, RecentPopularity, cooccurrence, per_task_metrics
from metarec_ref.meta import MAML
from metarec_ref.models import ItemItemScorer, item_item, mix_hard_negatives, sampled_softmax_loss
from metarec_ref.models.item_item import (
    FEATURE_NAMES,
    SUPPORT_ITEMS,
    expand_support_items,
    support_item_codes,
)
from metarec_ref.recipes.item_item import with_support_items
from metarec_ref.train import MetaTrainConfig, MetaTrainer


def tiny_batch():
    # Task 0: positives 3, 1 and a negative 2; task 1: positive 4 and padding.
    sx = {"item": torch.tensor([[3, 2, 1], [4, 0, 0]])}
    sy = torch.tensor([[1.0, 0.0, 1.0], [1.0, 0.0, 0.0]])
    sm = torch.tensor([[True, True, True], [True, False, False]])
    qx = {"item": torch.tensor([[2, 4], [1, 3]])}
    return TaskBatch(sx, sy, sm, qx, torch.ones(2, 2), torch.ones(2, 2, dtype=torch.bool))


def test_support_items_are_positive_real_and_left_aligned():
    codes = support_item_codes(tiny_batch())
    assert codes.tolist() == [[3, 1], [4, 0]]
    assert support_item_codes(tiny_batch(), max_items=1).tolist() == [[3], [4]]
    batch = with_support_items(tiny_batch())
    assert batch.query_x[SUPPORT_ITEMS].shape == (2, 2, 2)
    assert batch.support_x[SUPPORT_ITEMS].shape == (2, 3, 2)
    assert torch.equal(batch.query_x[SUPPORT_ITEMS][1, 0], torch.tensor([4, 0]))
    short = with_support_items(tiny_batch(), max_support_events=1)
    assert short.support_mask.shape == (2, 1) and short.support_x[SUPPORT_ITEMS][0, 0].tolist() == [3, 1]


def test_item_item_is_a_pure_model_module():
    tree = ast.parse(Path(item_item.__file__).read_text(encoding="utf-8"))
    imported = {alias.name.split(".")[0] if isinstance(node, ast.Import) else node.module
                for node in ast.walk(tree) if isinstance(node, (ast.Import, ast.ImportFrom))
                for alias in node.names}
    assert imported <= {"__future__", "torch", "torch.nn.functional", "metarec_ref.batch"}, imported


def test_support_items_reach_every_candidate_of_eval_tasks():
    batch = tiny_batch()
    candidates_x = {"item": torch.arange(5).expand(2, 5)}
    relevant = torch.zeros(2, 5, dtype=torch.bool)
    tasks = with_support_items(EvalTasks(batch, candidates_x, ~relevant, relevant), max_items=1)
    assert isinstance(tasks, EvalTasks) and tasks.candidates_x[SUPPORT_ITEMS].shape == (2, 5, 1)
    assert tasks.candidates_x[SUPPORT_ITEMS][:, 4, 0].tolist() == [3, 4]
    x = expand_support_items(batch.query_x, torch.tensor([[3, 1], [4, 0]]))
    assert x[SUPPORT_ITEMS].shape == (2, 2, 2) and torch.equal(x["item"], batch.query_x["item"])


def test_split_users_splits_by_user():
    events = pd.DataFrame({"user_id": [f"u{i % 20}" for i in range(100)], "item_id": range(100)})
    fit, tasks = split_users(events, (0.3,), seed=1)
    assert len(fit) + len(tasks) == len(events) and tasks["user_id"].nunique() == 6  # round(0.3 * 20)
    assert not set(fit["user_id"]) & set(tasks["user_id"])
    assert split_users(events, (0.3,), seed=1)[1].equals(tasks)
    with pytest.raises(ValueError, match="fractions must be > 0 with a sum below 1"):
        split_users(events, (1.0,))


def test_features_by_hand_and_leave_one_out():
    sim = torch.zeros(5, 5)
    sim[3, 2], sim[1, 2], sim[3, 1] = 0.5, 0.25, 0.75
    model = ItemItemScorer(5, similarity=sim, item_category=torch.tensor([0, 1, 1, 2, 2]))
    x = {"item": torch.tensor([2, 1]), SUPPORT_ITEMS: torch.tensor([[3, 1], [3, 1]])}
    with torch.no_grad():
        f = dict(zip(FEATURE_NAMES, model.features(x).unbind(-1)))
        cos = float(torch.cosine_similarity(model.item.weight[1], model.item.weight[3], 0))
    assert f["knn_sum"].tolist() == [0.75, 0.75] and f["knn_max"].tolist() == [0.5, 0.75]
    # Item 2 shares category 1 with support item 1 (of 2); item 1 sees only item 3 (itself left out).
    assert f["same_category"].tolist() == [0.5, 0.0]
    assert float(f["emb_max"][1]) == pytest.approx(cos)
    with pytest.raises(ValueError, match="with_support_items"):
        model({"item": torch.tensor([1])})


def test_batched_and_looped_maml_agree():
    torch.manual_seed(0)
    batch = with_support_items(tiny_batch())
    model = ItemItemScorer(5, similarity=torch.rand(5, 5), popularity=torch.rand(5))
    losses = [MAML(model, inner_lr=0.1, adapt="head", batched=b).meta_loss(batch) for b in (True, False)]
    assert torch.allclose(losses[0], losses[1], atol=1e-6)


@pytest.fixture(scope="module")
def synthetic_setup():
    torch.manual_seed(0)
    log = generate(n_users=1500, n_items=300, n_interactions=40_000, seed=0)
    events = validate_events(log.events)
    split = temporal_cold_start_split(events, 0.8)
    enc = Encoders.fit(events)
    catalog = enc.catalog()
    available = catalog.available(split.cut_time)
    val = build_user_tasks(split.valid, 3, 10, negatives=NegativeSampling(1, history=events))
    targets = ranking_targets(val, enc, candidates=available)
    val_tasks = EvalTasks.from_catalog(to_task_batch(val, enc), catalog, targets)
    # The similarity the meta-training tasks read excludes their own users (no leakage).
    fit_events, task_events = split_users(split.train, (0.4,), seed=0)
    train = to_task_batch(build_user_tasks(task_events, 3, 10, negatives=NegativeSampling(4, history=events)), enc)
    return dict(split=split, enc=enc, val=val_tasks, train=with_support_items(train, 20),
                sim_train=ItemKNN.similarity(cooccurrence(fit_events, enc), 10.0),
                sim_all=ItemKNN.similarity(cooccurrence(split.train, enc), 10.0),
                pop=RecentPopularity.fit(split.train, enc, window_days=30).scores)


def ndcg(method, tasks):
    return float(torch.nanmean(per_task_metrics(method, tasks, ks=(10,), chunk_size=64)["ndcg@10"]))


def test_meta_training_beats_the_untrained_start(synthetic_setup):
    s = synthetic_setup
    model = ItemItemScorer(s["enc"].spec.n_items, s["sim_all"], s["pop"], torch.as_tensor(s["enc"].item_category))
    model.fit_feature_scaling(s["train"].support_x, s["train"].support_mask)
    learner = MAML(model, inner_steps=1, inner_lr=0.1, adapt="head")
    val = with_support_items(s["val"], 20)
    before = ndcg(learner, val)
    model.set_similarity(s["sim_train"])
    config = MetaTrainConfig(meta_batch_size=32, outer_lr=3e-3, meta_steps=150, eval_every=50, patience=None)
    history = MetaTrainer(learner, s["train"], val.batch, config, disable=True).fit()
    model.set_similarity(s["sim_all"])
    after = ndcg(learner, val)
    assert history["train_loss"].iloc[-1] < history["train_loss"].iloc[0]
    assert after > before + 0.05, (before, after)


def test_sampled_softmax_loss_by_hand():
    logits = torch.tensor([2.0, 0.0, 1.0, 5.0])
    y = torch.tensor([1.0, 0.0, 0.0, 0.0])
    mask = torch.tensor([True, True, True, False])  # the padded 5.0 is ignored
    expected = torch.nn.functional.softplus(torch.logsumexp(torch.tensor([0.0, 1.0]), 0) - 2.0)
    assert sampled_softmax_loss(logits, y, mask) == pytest.approx(float(expected))
    assert sampled_softmax_loss(logits, torch.ones(4), mask) == 0  # no negative: no signal
    batch = with_support_items(tiny_batch())
    model = ItemItemScorer(5, similarity=torch.rand(5, 5))
    loss = MAML(model, loss_fn=sampled_softmax_loss, inner_lr=0.1, adapt="head").meta_loss(batch)
    assert torch.isfinite(loss)


def test_hard_negatives_come_from_the_support_neighbourhood():
    sim = torch.zeros(6, 6)
    sim[3, 5] = sim[1, 5] = 1.0  # item 5 is the only neighbour of the support items 3 and 1
    batch = tiny_batch()
    hard = mix_hard_negatives(batch, sim, top=1, share=1.0)
    # Task 0's support negative (item 2) becomes item 5; positives and padding are untouched.
    assert hard.support_x["item"][0].tolist() == [3, 5, 1]
    assert torch.equal(hard.support_x["item"][1], batch.support_x["item"][1])
    assert torch.equal(hard.query_x["item"], batch.query_x["item"])  # the query holds positives only
    assert torch.equal(mix_hard_negatives(batch, sim, share=0.0).support_x["item"], batch.support_x["item"])


def test_several_similarity_matrices_add_features():
    knn, ease = torch.zeros(5, 5), torch.zeros(5, 5)
    knn[3, 2], ease[3, 2], ease[1, 2] = 0.5, -0.2, 0.3
    model = ItemItemScorer(5, similarity=torch.stack([knn, ease]))
    assert model.feature_names[-2:] == ("sim1_sum", "sim1_max")
    x = {"item": torch.tensor([2]), SUPPORT_ITEMS: torch.tensor([[3, 1]])}
    with torch.no_grad():
        f = dict(zip(model.feature_names, model.features(x)[0].tolist()))
    assert f["knn_sum"] == pytest.approx(0.5) and f["sim1_sum"] == pytest.approx(0.1)
    assert f["sim1_max"] == pytest.approx(0.3) and model(x).shape == (1,)
    with pytest.raises(ValueError, match="similarity"):
        model.set_similarity(knn)  # one matrix where the model was built for two
