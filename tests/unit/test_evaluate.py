"""Evaluation API and plots: tidy results over cells and K, full ranking, sampled mode."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from metarec_ref.data import NegativeSampling
from metarec_ref.book import plot_history, plot_metric_vs_inner_steps, plot_metric_vs_k
from metarec_ref.eval import (
    EvalTasks,
    FineTune,
    GlobalModel,
    Popularity,
    UserMean,
    evaluate,
    evaluate_per_task,
    inner_steps_curve,
    per_task_metrics,
    results_table,
)
from metarec_ref.eval.evaluate import RESULT_COLUMNS
from metarec_ref.meta import MAML
from metarec_ref.models import MLP
from tests.unit.helpers import SPEC, catalog_features, toy_tasks, toy_world  # noqa: E402


def ranking_tasks(batch, world):
    """Full-ranking inputs: all items, minus support items; relevant = query positives."""
    n = SPEC.n_items
    scenario = batch.support_x["scenario"][:, 0]
    candidates = torch.ones(batch.num_tasks, n, dtype=torch.bool)
    support_items = torch.where(batch.support_mask, batch.support_x["item"], torch.zeros_like(batch.support_x["item"]))
    candidates.scatter_(1, support_items, False)
    candidates[:, 0] = False  # item 0 stands for unknown / padding
    relevant = torch.zeros_like(candidates)
    positive = batch.query_mask & (batch.query_y > 0)
    relevant.scatter_(1, torch.where(positive, batch.query_x["item"], torch.zeros_like(batch.query_x["item"])), True)
    relevant &= candidates
    return EvalTasks(batch, catalog_features(world, scenario), candidates, relevant)


@pytest.fixture(scope="module")
def setup():
    world = toy_world()
    train = toy_tasks(200, seed=1, world=world)
    torch.manual_seed(0)
    model = MLP(SPEC, hidden=(16,), emb_dim=4)
    methods = {
        "popularity": Popularity.fit(train, SPEC.n_items),
        "global": GlobalModel(model),
        "fine-tune": FineTune(model, steps=2, lr=0.1),
        "MAML": MAML(model, inner_lr=0.1),
    }
    tasks = {
        "new_user": {k: ranking_tasks(toy_tasks(30, k=k, seed=10 + k, world=world), world) for k in (3, 8)},
        "warm": {8: toy_tasks(30, k=8, seed=30, world=world)},  # no ranking inputs: AUC / log loss only
    }
    return world, methods, tasks


def test_evaluate_returns_tidy_table(setup):
    _, methods, tasks = setup
    results = evaluate(methods, tasks, ks=(5, 10), n_boot=200, disable=True)
    assert list(results.columns) == RESULT_COLUMNS
    assert set(results["method"]) == set(methods)
    assert set(zip(results["cell"], results["K"])) == {("new_user", 3), ("new_user", 8), ("warm", 8)}
    maml_new = results[(results["method"] == "MAML") & (results["cell"] == "new_user") & (results["K"] == 3)]
    assert set(maml_new["metric"]) == {"auc", "log_loss", "ndcg@5", "hr@5", "ndcg@10", "hr@10"}
    warm = results[(results["method"] == "MAML") & (results["cell"] == "warm")]
    assert set(warm["metric"]) == {"auc", "log_loss"}
    pop = results[results["method"] == "popularity"]
    assert "log_loss" not in set(pop["metric"])  # popularity is not a probability
    ok = results.dropna(subset=["mean"])
    assert ((ok["ci_low"] <= ok["mean"]) & (ok["mean"] <= ok["ci_high"])).all()
    assert (results["n_tasks"] <= 30).all()


def test_evaluate_is_deterministic_and_chunking_invariant(setup):
    _, methods, tasks = setup
    a = evaluate({"MAML": methods["MAML"]}, tasks, n_boot=100, disable=True)
    b = evaluate({"MAML": methods["MAML"]}, tasks, n_boot=100, chunk_size=7, disable=True)
    pd.testing.assert_frame_equal(a, b, check_exact=False, rtol=1e-5)


def test_per_task_results_keep_every_run_and_summarise_to_the_table(setup):
    _, methods, tasks = setup
    per_task = evaluate_per_task(methods, tasks, ks=(5,), disable=True)
    assert list(per_task) == [(m, c, k) for m in methods for c, k in (("new_user", 3), ("new_user", 8), ("warm", 8))]
    assert per_task[("MAML", "new_user", 3)]["ndcg@5"].shape == (30,)
    direct = per_task_metrics(methods["MAML"], tasks["new_user"][3], ks=(5,))
    for metric, values in per_task[("MAML", "new_user", 3)].items():
        torch.testing.assert_close(values, direct[metric], rtol=0, atol=0, equal_nan=True)
    table = evaluate(methods, tasks, ks=(5,), n_boot=100, disable=True)
    pd.testing.assert_frame_equal(results_table(per_task, n_boot=100), table, check_exact=True)
    with pytest.raises(ValueError, match="empty"):
        results_table({})


def test_ranking_excludes_support_items_and_popularity_ranks(setup):
    world, methods, tasks = setup
    eval_tasks = tasks["new_user"][8]
    assert not (eval_tasks.relevant & ~eval_tasks.candidates).any()
    values = per_task_metrics(methods["popularity"], eval_tasks, ks=(10,))
    assert values["hr@10"].shape == (30,)
    # Popularity beats a constant scorer's expected hit rate (k / candidates) in this world.
    chance = torch.nanmean(10 / eval_tasks.candidates.sum(1).double()).item()
    assert torch.nanmean(values["hr@10"]).item() > chance


def test_sampled_negative_mode_is_labelled_and_optimistic(setup):
    _, methods, tasks = setup
    full = per_task_metrics(methods["global"], tasks["new_user"][8], ks=(5,))
    sampled = per_task_metrics(methods["global"], tasks["new_user"][8], ks=(5,), n_sampled_negatives=5)
    assert "hr@5 (sampled 5)" in sampled and "hr@5" not in sampled
    assert torch.nanmean(sampled["hr@5 (sampled 5)"]) >= torch.nanmean(full["hr@5"])


def test_rating_target_reports_mae_rmse():
    batch = toy_tasks(10, seed=3)
    batch.query_y = batch.query_y * 4 + 1  # pretend ratings 1..5
    batch.support_y = batch.support_y * 4 + 1
    values = per_task_metrics(UserMean.fit(batch), batch, target="rating")
    assert set(values) == {"mae", "rmse"} and (values["rmse"] >= values["mae"] - 1e-9).all()
    with pytest.raises(ValueError, match="target"):
        per_task_metrics(UserMean.fit(batch), batch, target="ranking")


def test_eval_tasks_validation(setup):
    world, _, tasks = setup
    batch = tasks["warm"][8]
    with pytest.raises(ValueError, match="all of"):
        EvalTasks(batch, candidates_x=catalog_features(world, torch.zeros(30, dtype=torch.long)))
    with pytest.raises(ValueError, match="bool"):
        cand_x = catalog_features(world, torch.zeros(30, dtype=torch.long))
        EvalTasks(batch, cand_x, torch.ones(30, 40), torch.ones(30, 40))
    with pytest.raises(ValueError, match="methods is empty"):
        evaluate({}, tasks)


def test_inner_steps_curve_and_plots(setup):
    _, methods, tasks = setup
    model = methods["global"].model
    curve = inner_steps_curve(lambda n: FineTune(model, steps=n, lr=0.1), [0, 1, 3], tasks["new_user"][8], n_boot=50)
    assert list(curve["inner_steps"].unique()) == [0, 1, 3]
    ax = plot_metric_vs_inner_steps(curve, "auc")
    assert ax.get_xlabel() and ax.get_ylabel() == "auc" and ax.get_title()
    results = evaluate(methods, tasks, n_boot=50, disable=True)
    ax = plot_metric_vs_k(results, "auc", cell="new_user")
    assert len(ax.get_lines()) == len(methods) and ax.get_legend() is not None
    with pytest.raises(ValueError, match="several cells"):
        plot_metric_vs_k(results, "auc")
    with pytest.raises(ValueError, match="metric 'mrr'"):
        plot_metric_vs_k(results, "mrr", cell="new_user")
    history = pd.DataFrame({"step": [1, 2], "train_loss": [0.7, 0.6], "val_loss": [0.71, 0.65], "val_auc": [0.5, 0.6]})
    ax = plot_history(history)
    assert len(ax.get_lines()) == 2
    plt.close("all")


def test_end_to_end_with_the_data_layer():
    """Synthetic log -> temporal split -> tasks -> meta-training -> full-ranking evaluation."""
    from metarec_ref.data import (
        Encoders,
        build_user_tasks,
        generate,
        temporal_cold_start_split,
        to_task_batch,
        validate_events,
    )
    from metarec_ref.eval import cold_start_eval_tasks
    from metarec_ref.train import MetaTrainConfig, MetaTrainer

    events = validate_events(generate(n_users=300, n_items=200, n_interactions=8000, seed=0).events)
    split = temporal_cold_start_split(events, 0.7)
    encoders = Encoders.fit(split.train)
    train = to_task_batch(build_user_tasks(split.train, k_support=5, n_query=10, negatives=NegativeSampling(1)), encoders)
    cells = {c: split.cells[c] for c in ("new_user_existing_item", "warm")}
    available = encoders.catalog().available(split.cut_time)
    eval_tasks = cold_start_eval_tasks(cells, encoders, ks=(3, 5), n_query=10, candidates=available,
                                       negatives=NegativeSampling(1))
    assert set(eval_tasks) == set(cells) and set(eval_tasks["warm"]) == {3, 5}
    for cell in eval_tasks.values():
        for t in cell.values():
            assert not (t.relevant & ~t.candidates).any() and not t.candidates[:, 0].any()

    torch.manual_seed(0)
    learner = MAML(MLP(encoders.spec, hidden=(16,), emb_dim=8), inner_lr=0.1)
    config = MetaTrainConfig(meta_batch_size=16, outer_lr=0.01, meta_steps=30, eval_every=30, patience=None)
    MetaTrainer(learner, train, None, config, disable=True).fit()
    methods = {"MAML": learner, "popularity": Popularity.fit(train, encoders.spec.n_items)}
    results = evaluate(methods, eval_tasks, ks=(10,), n_boot=100, disable=True)
    assert set(results["metric"]) == {"auc", "log_loss", "ndcg@10", "hr@10"}
    assert len(results[["method", "cell", "K"]].drop_duplicates()) == 2 * 2 * 2
    assert results["n_tasks"].min() > 0
    bounded = results[results["metric"] != "log_loss"]
    assert bounded["mean"].between(0, 1).all()
    maml_auc = results.query("method == 'MAML' and metric == 'auc' and K == 5 and cell == 'new_user_existing_item'")
    assert maml_auc["mean"].item() > 0.55  # negatives are sampled items the user did not pick: learnable
