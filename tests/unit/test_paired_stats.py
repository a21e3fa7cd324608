"""Seed-and-task bootstrap (exactness with one seed, NaN cells, coverage), p-values, Holm, corrected verdicts."""

import numpy as np
import pytest
import torch

from metarec_ref.eval import (
    compare_to_best,
    holm_adjust,
    paired_bootstrap,
    paired_comparison,
    verdict_every_seed,
)


def old_task_bootstrap(a, b, n_boot=2000, level=0.95, seed=0):
    """The task-only paired bootstrap as it was: one value per task, tasks resampled."""
    diff = a - b
    diff = diff[~np.isnan(diff)]
    means = diff[np.random.default_rng(seed).integers(0, len(diff), size=(n_boot, len(diff)))].mean(axis=1)
    alpha = (1 - level) / 2
    return float(diff.mean()), *np.quantile(means, [alpha, 1 - alpha])


def test_one_seed_gives_exactly_the_task_bootstrap():
    rng = np.random.default_rng(3)
    a, b = rng.normal(0.5, 0.1, 150), rng.normal(0.5, 0.1, 150)
    a[4] = np.nan
    expected = old_task_bootstrap(a, b, n_boot=700, seed=5)
    for left, right in ((a, b), (a[None], b), (a[None], b[None]), (torch.as_tensor(a), b)):
        d = paired_bootstrap(left, right, n_boot=700, seed=5)
        assert (d.mean, d.ci_low, d.ci_high) == expected
        assert d.n_tasks == 149 and d.n_seeds == 1


def test_seed_cells_with_nan_are_ignored_per_seed():
    a = np.array([[0.5, np.nan, 0.3], [0.7, np.nan, np.nan]])
    b = np.full(3, 0.1)  # one seed: paired with every seed of a
    d = paired_bootstrap(a, b, n_boot=300)
    assert d.n_tasks == 2 and d.n_seeds == 2  # task 1 has no value in any seed
    assert d.mean == pytest.approx((0.4 + 0.2 + 0.6) / 3)
    assert d.ci_low <= d.mean <= d.ci_high
    unequal = paired_bootstrap(np.full((3, 3), 0.5), np.full((5, 3), 0.2), n_boot=100)
    assert unequal.mean == pytest.approx(0.3) and unequal.n_seeds == 5


def test_seed_spread_widens_the_interval():
    rng = np.random.default_rng(4)
    task = rng.normal(0.5, 0.2, 300)
    gain = 0.01 + rng.normal(0, 0.01, 300)
    seed_offsets = np.array([-0.03, 0.0, 0.03, 0.01, -0.01])[:, None]  # std 0.02 > the task-level CI
    a = task + gain + seed_offsets
    pooled = paired_bootstrap(a.mean(0), task)
    both = paired_bootstrap(a, task)
    assert pooled.verdict == "better" and both.verdict == "no detectable difference"
    assert both.mean == pytest.approx(pooled.mean)
    assert both.ci_high - both.ci_low > 3 * (pooled.ci_high - pooled.ci_low)


def simulate_coverage(n_seeds, n_sims=200, n_tasks=100, delta=0.02, seed_sd=0.015, n_boot=400):
    """Coverage of the true ``delta`` by the seed-and-task CI and by the CI of seed-averaged tasks.

    Per task: a shared user level, a per-task gain (sd 0.04) and per-run noise (sd 0.03); per seed
    and method: an offset (sd ``seed_sd``), so the seed part of the error (about 0.0067 for 10
    seeds) exceeds the task part (about 0.0042).
    """
    rng = np.random.default_rng(0)
    covered_both = covered_pooled = 0
    for sim in range(n_sims):
        user = rng.normal(0.5, 0.2, n_tasks)
        gain = delta + rng.normal(0, 0.04, n_tasks)
        a = user + gain + rng.normal(0, seed_sd, (n_seeds, 1)) + rng.normal(0, 0.03, (n_seeds, n_tasks))
        b = user + rng.normal(0, seed_sd, (n_seeds, 1)) + rng.normal(0, 0.03, (n_seeds, n_tasks))
        both = paired_bootstrap(a, b, n_boot=n_boot, seed=sim)
        pooled = paired_bootstrap(a.mean(0), b.mean(0), n_boot=n_boot, seed=sim)
        covered_both += both.ci_low <= delta <= both.ci_high
        covered_pooled += pooled.ci_low <= delta <= pooled.ci_high
    return covered_both / n_sims, covered_pooled / n_sims


def test_seed_and_task_bootstrap_covers_where_averaging_seeds_does_not():
    both, pooled = simulate_coverage(n_seeds=10)
    assert 0.88 <= both <= 0.99, both
    assert pooled < 0.80 and pooled < both - 0.1, (both, pooled)


def test_verdict_every_seed_needs_every_seed_to_agree():
    rng = np.random.default_rng(5)
    task = rng.normal(0.5, 0.2, 200)
    noise = rng.normal(0, 0.005, (4, 200))
    gains = np.array([0.05, 0.05, 0.05, 0.0])[:, None]  # one seed without the gain
    a = task + gains + noise
    assert paired_bootstrap(a, task).verdict == "better"
    assert verdict_every_seed(a, task) == "no detectable difference"
    assert verdict_every_seed(a[:3], task) == "better"
    assert verdict_every_seed(task, a[:3]) == "worse"
    assert verdict_every_seed(a[:3], task, higher_is_better=False) == "worse"
    with pytest.raises(ValueError, match="paired by index"):
        verdict_every_seed(a[:3], a[:2])


def test_bootstrap_p_value():
    rng = np.random.default_rng(6)
    task = rng.normal(0.5, 0.2, 100)
    assert paired_bootstrap(task, task).p_value == 1.0
    clear = paired_bootstrap(task + 0.1, task, n_boot=999)
    assert clear.p_value == pytest.approx(2 / 1000)  # no replicate at or below zero
    noisy = paired_bootstrap(task + rng.normal(0, 0.1, 100), task)
    assert 0 < noisy.p_value <= 1
    assert np.isnan(paired_bootstrap([np.nan], [1.0]).p_value)


def test_holm_adjust():
    adjusted = holm_adjust([0.01, 0.04, 0.03, 0.005])
    np.testing.assert_allclose(adjusted, [0.03, 0.06, 0.06, 0.02])
    np.testing.assert_allclose(holm_adjust([0.5, 0.6]), [1.0, 1.0])  # capped at 1, monotone
    with_nan = holm_adjust([0.01, np.nan, 0.02])  # NaN is outside the family
    assert np.isnan(with_nan[1])
    np.testing.assert_allclose(with_nan[[0, 2]], [0.02, 0.02])
    assert holm_adjust([]).shape == (0,)


def marginal_family(n_nulls, n_tasks=400):
    """A reference, one method ahead by 2.6 standard errors, and ``n_nulls`` methods exactly level with it."""
    rng = np.random.default_rng(7)
    task = rng.normal(0.5, 0.1, n_tasks)

    def standardized():
        z = rng.normal(size=n_tasks)
        return (z - z.mean()) / z.std()

    spread = 0.05
    per_task = {"reference": {"auc": torch.as_tensor(task)},
                "marginal": {"auc": torch.as_tensor(task + 2.6 * spread / np.sqrt(n_tasks) + spread * standardized())}}
    for i in range(n_nulls):
        per_task[f"null {i}"] = {"auc": torch.as_tensor(task + spread * standardized())}
    return per_task


def test_holm_correction_turns_a_marginal_gain_in_a_large_family_into_no_difference():
    large = marginal_family(n_nulls=9)
    plain = compare_to_best(large, ["reference"], "auc").set_index("method")
    assert plain.loc["marginal", "verdict"] == "better"
    assert 0.005 <= plain.loc["marginal", "p_value"] <= 0.02
    assert "p_holm" not in plain.columns
    corrected = compare_to_best(large, ["reference"], "auc", correction="holm").set_index("method")
    # The smallest of 10 p-values is multiplied by 10: at least 0.05.
    assert corrected.loc["marginal", "p_holm"] == pytest.approx(10 * plain.loc["marginal", "p_value"])
    assert corrected.loc["marginal", "verdict"] == "no detectable difference"
    assert np.isnan(corrected.loc["reference", "p_holm"])
    assert (corrected.drop(columns=["verdict", "p_holm"]) == plain.drop(columns=["verdict"])).all().all()
    small = compare_to_best(marginal_family(n_nulls=1), ["reference"], "auc", correction="holm").set_index("method")
    assert small.loc["marginal", "verdict"] == "better"  # a family of two: 2 * p < 0.05
    with pytest.raises(ValueError, match="correction"):
        compare_to_best(large, ["reference"], "auc", correction="bonferroni")


def test_paired_comparison_corrects_over_the_whole_table():
    rng = np.random.default_rng(8)
    per_task = {}
    for cell, k in (("cold", 3), ("cold", 5), ("warm", 3)):
        task = rng.normal(0.5, 0.1, 80)
        per_task[("base", cell, k)] = {"auc": torch.as_tensor(task), "ndcg@10": torch.as_tensor(task)}
        for name, gain in (("a", 0.01), ("b", 0.03)):
            values = torch.as_tensor(task + gain + rng.normal(0, 0.05, 80))
            per_task[(name, cell, k)] = {"auc": values, "ndcg@10": values}
    table = paired_comparison(per_task, ["base"], metrics=("auc", "ndcg@10"), n_boot=500, correction="holm")
    family = (table["method"] != "base").to_numpy()
    assert family.sum() == 12
    np.testing.assert_allclose(table.loc[family, "p_holm"], holm_adjust(table.loc[family, "p_value"]))
    assert table.loc[~family, "p_holm"].isna().all()
    kept = table["p_holm"] < 0.05
    assert (table.loc[~kept, "verdict"] == "no detectable difference").all()
    plain = paired_comparison(per_task, ["base"], metrics=("auc", "ndcg@10"), n_boot=500)
    assert (plain.loc[kept, "verdict"] == table.loc[kept, "verdict"]).all()
