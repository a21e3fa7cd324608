"""Paired bootstrap (coverage on a known difference), verdicts, tables, seed aggregation."""

import numpy as np
import pandas as pd
import pytest
import torch

from metarec_ref.batch import TaskBatch
from metarec_ref.eval import (
    EvalTasks,
    aggregate_seeds,
    compare_to_best,
    evaluate_per_task,
    paired_bootstrap,
    paired_comparison,
    per_task_metrics,
    verdict,
)


def test_verdict_reads_the_ci():
    assert verdict(0.01, 0.02) == "better"
    assert verdict(-0.02, -0.01) == "worse"
    assert verdict(-0.01, 0.02) == "no detectable difference"
    assert verdict(0.01, 0.02, higher_is_better=False) == "worse"
    assert verdict(float("nan"), 0.1) == "no detectable difference"


def test_paired_bootstrap_covers_the_true_difference_at_about_95_percent():
    # Paired tasks: a large shared task effect, a small true difference delta, per-method noise.
    rng = np.random.default_rng(0)
    delta, n_tasks, n_sims = 0.03, 80, 400
    covered = 0
    for sim in range(n_sims):
        task = rng.normal(0.3, 0.2, n_tasks)
        a = task + delta + rng.normal(0, 0.05, n_tasks)
        b = task + rng.normal(0, 0.05, n_tasks)
        d = paired_bootstrap(a, b, n_boot=400, seed=sim)
        covered += d.ci_low <= delta <= d.ci_high
    rate = covered / n_sims
    assert 0.91 <= rate <= 0.98, rate


def test_paired_bootstrap_detects_what_unpaired_cis_miss():
    rng = np.random.default_rng(1)
    task = rng.normal(0.3, 0.2, 100)
    a, b = task + 0.02, task + rng.normal(0, 0.01, 100)
    d = paired_bootstrap(torch.as_tensor(a), torch.as_tensor(b))
    assert d.verdict == "better" and d.ci_low > 0 and d.n_tasks == 100
    assert paired_bootstrap(b, a).verdict == "worse"
    same = paired_bootstrap(a, a)
    assert same.mean == 0 and same.ci_low == 0 and same.verdict == "no detectable difference"


def test_paired_bootstrap_drops_nan_tasks_and_pools_seeds():
    a = np.array([0.5, np.nan, 0.3])
    b = np.array([0.4, 0.2, np.nan])
    assert paired_bootstrap(a, b).n_tasks == 1
    seeds_a = np.array([[0.2, 0.4], [0.4, 0.6]])  # (seeds, tasks): per-task means 0.3, 0.5
    d = paired_bootstrap(seeds_a, np.array([[0.1, 0.1], [0.1, 0.1]]))
    assert d.mean == pytest.approx(0.3) and d.n_seeds == 2
    with pytest.raises(ValueError, match="same tasks"):
        paired_bootstrap(np.zeros(3), np.zeros(4))


def _three_methods(meta_offset: float) -> dict:
    """Popularity 0.1 below item-kNN on the same 200 tasks; meta ``meta_offset`` from item-kNN."""
    rng = np.random.default_rng(2)
    task = rng.normal(0.3, 0.1, 200)
    return {
        "popularity": {"ndcg@10": torch.as_tensor(task - 0.1)},
        "item-kNN": {"ndcg@10": torch.as_tensor(task)},
        "meta": {"ndcg@10": torch.as_tensor(task + meta_offset + rng.normal(0, 0.01, 200))},
    }


def test_compare_to_best_uses_the_best_baseline_as_reference():
    per_task = _three_methods(0.05)
    table = compare_to_best(per_task, baselines=["popularity", "item-kNN"]).set_index("method")
    assert set(table["reference"]) == {"item-kNN"}
    assert table.loc["item-kNN", "diff"] == 0
    assert table.loc["meta", "verdict"] == "better" and table.loc["popularity", "verdict"] == "worse"
    assert table.loc["meta", "diff"] == pytest.approx(0.05, abs=0.005)
    with pytest.raises(ValueError, match="baselines"):
        compare_to_best(per_task, baselines=["EASE"])


def test_compare_to_best_takes_a_reference_chosen_on_validation():
    per_task = _three_methods(-0.05)
    # Validation preferred popularity: meta is compared with it, not with the test's best.
    table = compare_to_best(per_task, ["popularity", "item-kNN"], reference="popularity").set_index("method")
    assert set(table["reference"]) == {"popularity"}
    assert table.loc["meta", "verdict"] == "better" and table.loc["item-kNN", "diff"] == pytest.approx(0.1)
    with pytest.raises(ValueError, match="not one of the baselines"):
        compare_to_best(per_task, ["popularity", "item-kNN"], reference="meta")


def test_lower_is_better_metrics_flip_the_verdict():
    per_task = {"base": {"log_loss": torch.full((50,), 0.7)}, "m": {"log_loss": torch.full((50,), 0.5)}}
    table = compare_to_best(per_task, baselines=["base"], metric="log_loss").set_index("method")
    assert table.loc["m", "verdict"] == "better" and table.loc["m", "diff"] == pytest.approx(-0.2)


class ConstantScorer:
    """Scores item codes by a fixed vector (a stand-in for a fitted baseline)."""

    calibrated = False

    def __init__(self, scores):
        self.scores = torch.as_tensor(scores, dtype=torch.float32)

    def adapt(self, batch):
        return None

    def score(self, state, x):
        return self.scores[x["item"]]


def ranking_cell(t=30, n=5):
    """Tasks whose only relevant item is 2, ranked among all n items."""
    ones = torch.ones(t, 1)
    batch = TaskBatch({"item": torch.ones(t, 1, dtype=torch.int64)}, ones, ones.bool(),
                      {"item": torch.full((t, 1), 2)}, ones, ones.bool())
    relevant = torch.zeros(t, n, dtype=torch.bool)
    relevant[:, 2] = True
    return EvalTasks(batch, {"item": torch.arange(n).expand(t, n)}, torch.ones(t, n, dtype=torch.bool), relevant)


def test_paired_comparison_reads_per_task_results():
    methods = {"good": ConstantScorer([0, 0, 5, 1, 2]), "bad": ConstantScorer([0, 0, 1, 5, 2])}
    per_task = evaluate_per_task(methods, {("new users", 5): ranking_cell()})
    table = paired_comparison(per_task, baselines=["bad"], n_boot=100)
    row = table.set_index("method").loc["good"]
    assert row["K"] == 5 and row["cell"] == "new users" and row["verdict"] == "better"
    assert row["diff"] == pytest.approx(1 - 1 / np.log2(4))


def test_paired_comparison_matches_running_the_methods_per_cell():
    # Noisy scores, so the bootstrap CIs are not degenerate; two cells, two support sizes.
    rng = np.random.default_rng(0)
    methods = {name: ConstantScorer(rng.normal(size=5)) for name in ("a", "b", "c")}
    tasks = {"cold": {3: ranking_cell(20), 5: ranking_cell(12)}, "warm": {3: ranking_cell(9)}}
    # A method's score per task varies through the task's own candidate set.
    for by_k in tasks.values():
        for cell_tasks in by_k.values():
            cell_tasks.candidates[:, 0] = torch.from_numpy(rng.random(cell_tasks.candidates.shape[0]) < 0.5)
            cell_tasks.candidates[:, 3] = torch.from_numpy(rng.random(cell_tasks.candidates.shape[0]) < 0.5)
    per_task = evaluate_per_task(methods, tasks, seed=4)
    table = paired_comparison(per_task, baselines=["b", "c"], metrics=("ndcg@10", "hr@10"), n_boot=300, seed=4)
    expected = []
    for cell, by_k in tasks.items():
        for k, cell_tasks in by_k.items():
            values = {name: per_task_metrics(m, cell_tasks, seed=4) for name, m in methods.items()}
            for metric in ("ndcg@10", "hr@10"):
                frame = compare_to_best(values, ["b", "c"], metric, n_boot=300, seed=4)
                expected.append(frame.assign(cell=cell, K=k))
    expected = pd.concat(expected, ignore_index=True)[list(table.columns)]
    pd.testing.assert_frame_equal(table, expected, check_exact=True)
    assert list(table.columns[:2]) == ["cell", "K"]
    with pytest.raises(ValueError, match="empty"):
        paired_comparison({}, baselines=["b"])


def test_aggregate_seeds_reports_mean_and_spread():
    tables = [pd.DataFrame({"method": ["a", "b"], "K": [5, 5], "mean": [0.1 + s, 0.2], "verdict": ["x", "y"]})
              for s in (0.0, 0.1, 0.2)]
    out = aggregate_seeds(tables).set_index("method")
    assert out.loc["a", "n_seeds"] == 3
    assert out.loc["a", "mean_mean"] == pytest.approx(0.2)
    assert out.loc["a", "mean_std"] == pytest.approx(0.1)
    assert out.loc["b", "mean_std"] == 0 and out.loc["a", "mean_max"] == pytest.approx(0.3)
    with pytest.raises(ValueError, match="at least 3"):
        aggregate_seeds(tables[:2])
    with pytest.raises(ValueError, match="seed"):
        aggregate_seeds(tables[0])
