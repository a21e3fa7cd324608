"""The Online Retail protocol: cleaning counts, session tasks, tuned baselines, the item-item learners, tables."""

import math

import numpy as np
import pandas as pd
import pytest
import torch

from metarec_ref.data import (
    Encoders,
    NegativeSampling,
    build_basket_tasks,
    build_next_session_tasks,
    generate,
    split_users,
    temporal_cold_start_split,
    validate_events,
)
from metarec_ref.eval import EvalTasks, GlobalModel, ItemKNN, cooccurrence, per_task_metrics
from metarec_ref.meta import MetaSGD
from metarec_ref.recipes import (
    ClassicalBaselines,
    ClassicalGrid,
    ItemItemConfig,
    ItemItemInputs,
    item_item_training_batch,
    load_online_retail_with_report,
    meta_train_item_item,
    ranking_table,
    stack_seeds,
    train_item_item_global,
    with_item_item_features,
)
from metarec_ref.recipes.online_retail import CLEANING_STEPS, online_retail_cleaning
from tests.unit.helpers import raw_rows


def test_cleaning_report_counts_each_rule_once_in_order():
    raw = raw_rows()
    events, report = online_retail_cleaning(raw)
    steps = report.set_index("step")
    assert list(report["step"]) == list(CLEANING_STEPS)
    # 11 rows: 2 cancellations, 1 without customer, 1 zero quantity, 1 postage, 1 duplicate.
    assert steps["rows_dropped"].tolist() == [0, 2, 1, 1, 1, 1]
    assert steps["rows_left"].tolist() == [11, 9, 8, 7, 6, 5]
    assert len(events) == 5 == report["rows_left"].iloc[-1]
    assert report["rows_left"].iloc[0] - report["rows_dropped"].sum() == len(events)
    # A cancellation without customer counts once, as a cancellation (the first rule it breaks).
    raw.loc[3, "CustomerID"] = None
    assert online_retail_cleaning(raw)[1]["rows_dropped"].tolist() == [0, 2, 1, 1, 1, 1]
    kept = online_retail_cleaning(raw_rows(), drop_non_products=False)[1].set_index("step")
    assert kept.loc["non-product codes", "rows_dropped"] == 0 and kept["rows_left"].iloc[-1] == 6


def test_load_with_report_reads_a_folder(tmp_path):
    folder = tmp_path / "online_retail"
    folder.mkdir()
    raw_rows().astype({"Description": str}).to_parquet(folder / "online_retail.parquet")
    events, report = load_online_retail_with_report(tmp_path)
    assert len(events) == 5 and report["rows_left"].iloc[-1] == 5
    with pytest.raises(FileNotFoundError, match="METAREC_DATA_DIR|online_retail"):
        load_online_retail_with_report(tmp_path / "nowhere")


@pytest.fixture(scope="module")
def shop():
    """A synthetic log with sessions: a user's events in one calendar month form one invoice."""
    log = generate(n_users=1500, n_items=150, n_interactions=30_000, initial_users=0.3, seed=1)
    events = validate_events(log.events)
    events["session_id"] = events["user_id"].astype(str) + "/" + events["timestamp"].dt.strftime("%Y-%m")
    split = temporal_cold_start_split(events, 0.7)
    encoders = Encoders.fit(split.train)
    available = encoders.catalog().available(split.cut_time)
    history = pd.concat([split.train, split.valid, split.test])
    val = session_eval_tasks(build_basket_tasks, split.valid, 3, 5, encoders, available, history)
    assert val is not None
    fit_events, task_events = split_users(split.train, (0.4,), seed=0)
    return dict(split=split, enc=encoders, available=available, history=history, val=val,
                fit_events=fit_events, task_events=task_events)


def session_eval_tasks(build, events, k, n_query, encoders, candidates, history):
    """Full-ranking tasks of one session definition, negatives drawn against ``history``; None if no user qualifies."""
    tasks = build(events, k, n_query, negatives=NegativeSampling(1, history=history))
    return EvalTasks.from_tasks(tasks, encoders, candidates=candidates) if tasks.num_tasks else None


def test_session_eval_tasks_rank_only_available_items(shop):
    val = shop["val"]
    assert isinstance(val, EvalTasks) and val.has_ranking and val.batch.num_tasks > 20
    assert not (val.candidates & ~shop["available"]).any()  # never rank an item unseen before the cut
    assert not (val.relevant & ~val.candidates).any()
    none = session_eval_tasks(build_next_session_tasks, shop["split"].valid.iloc[:3], 3, 5, shop["enc"],
                              shop["available"], shop["history"])
    assert none is None


def test_classical_baselines_fit_every_grid_value_and_tune_on_validation(shop):
    grid = ClassicalGrid(shrinkage=(0.0, 50.0), ease_lambda=(10.0, 500.0), window_days=(7, None))
    classical = ClassicalBaselines.fit(shop["split"].train, shop["enc"], grid)
    assert set(classical.knn) == {0.0, 50.0} and set(classical.ease) == {10.0, 500.0}
    assert torch.equal(classical.popularity.counts, classical.recent[None].counts)
    best = classical.tune(shop["val"])
    for name, grid_values in (("knn", grid.shrinkage), ("ease", grid.ease_lambda), ("recent", grid.window_days)):
        table = best[name].table
        assert len(table) == len(grid_values)
        assert best[name].value == grid_values[int(table["ndcg@10"].to_numpy().argmax())]
        assert best[name].method is getattr(classical, name)[best[name].value]
    with pytest.raises(ValueError, match="None"):
        ClassicalBaselines.fit(shop["split"].train, shop["enc"], ClassicalGrid(window_days=(7,)))


def test_item_item_learners_train_and_switch_to_the_evaluation_similarity(shop):
    enc = shop["enc"]
    sim_train = ItemKNN.similarity(cooccurrence(shop["fit_events"], enc), 10.0)
    sim_eval = ItemKNN.similarity(cooccurrence(shop["split"].train, enc), 10.0)
    inputs = ItemItemInputs(sim_train, sim_eval, torch.zeros(enc.spec.n_items), torch.as_tensor(enc.item_category))
    config = ItemItemConfig(algorithm="metasgd", meta_steps=20, eval_every=10, n_query=5, max_support_items=10)
    tasks = build_basket_tasks(shop["task_events"], 3, config.n_query,
                               negatives=NegativeSampling(config.n_neg, history=shop["history"]))
    train = item_item_training_batch(tasks, enc, config)
    assert train.num_tasks > 50 and train.support_x["support_items"].shape[-1] <= 10
    learner = meta_train_item_item(inputs, train, shop["val"], config, seed=0)
    assert isinstance(learner, MetaSGD)
    assert torch.equal(learner.model.similarity[0], sim_eval.float())
    again = meta_train_item_item(inputs, train, shop["val"], config, seed=0)
    val = with_item_item_features(shop["val"], config)
    ndcg = [per_task_metrics(m, val, ks=(10,))["ndcg@10"] for m in (learner, again)]
    assert torch.allclose(ndcg[0], ndcg[1], rtol=0, atol=0, equal_nan=True)  # same seed, same numbers
    model = train_item_item_global(inputs, train, config, seed=0, epochs=1)
    assert torch.equal(model.similarity[0], sim_eval.float())
    assert per_task_metrics(GlobalModel(model), val, ks=(10,))["ndcg@10"].shape == (val.batch.num_tasks,)
    with pytest.raises(ValueError, match="algorithm"):
        ItemItemConfig(algorithm="reptile")


def test_ranking_table_cis_verdicts_and_seed_spread():
    gen = torch.Generator().manual_seed(0)
    base = torch.rand(200, generator=gen)
    per_task = {
        "weak": {"ndcg@10": base * 0.5},
        "strong": {"ndcg@10": base},
        "learner": {"ndcg@10": torch.stack([base + 0.1, base + 0.3])},  # (seeds, tasks)
    }
    table = ranking_table(per_task, ["weak", "strong"], metrics=("ndcg@10",), n_boot=500).set_index("method")
    assert set(table["reference"]) == {"strong"}
    assert table.loc["learner", "diff"] == pytest.approx(0.2)
    assert table.loc["learner", "verdict"] == "better" and table.loc["weak", "verdict"] == "worse"
    assert table.loc["strong", "verdict"] == "no detectable difference"
    assert table.loc["learner", "n_seeds"] == 2 and table.loc["weak", "n_seeds"] == 1
    # The spread of the per-seed means (0.1 + m and 0.3 + m), with n - 1: 0.2 / sqrt(2).
    assert table.loc["learner", "seed_std"] == pytest.approx(0.2 / math.sqrt(2), abs=1e-6)
    assert table.loc["weak", "seed_std"] == 0
    for name, row in table.iterrows():
        assert row["ci_low"] <= row["mean"] <= row["ci_high"]
        assert row["diff_low"] <= row["diff"] <= row["diff_high"]
    assert math.isclose(table.loc["strong", "mean"], float(base.mean()), rel_tol=1e-6)


def test_stack_seeds_shapes_and_errors():
    seeds = [{"hr@10": torch.zeros(4), "ndcg@10": torch.ones(4)}, {"hr@10": torch.ones(4), "ndcg@10": torch.ones(4)}]
    stacked = stack_seeds(seeds)
    assert stacked["hr@10"].shape == (2, 4) and np.allclose(stacked["hr@10"].mean(0).numpy(), 0.5)
    with pytest.raises(ValueError, match="at least one seed"):
        stack_seeds([])
