"""Cluster bootstrap (users owning several tasks), unpaired group differences, Holm over a gathered table."""

import numpy as np
import pandas as pd
import pytest
import torch

from metarec_ref.eval.family import holm_verdicts, independent_bootstrap
from metarec_ref.eval.paired import paired_bootstrap


def test_one_task_per_cluster_is_the_task_bootstrap():
    rng = np.random.default_rng(0)
    a, b = rng.normal(0.6, 0.1, 120), rng.normal(0.5, 0.1, 120)
    plain = paired_bootstrap(a, b, n_boot=500, seed=3)
    clustered = paired_bootstrap(a, b, n_boot=500, seed=3, clusters=np.arange(120))
    assert (clustered.mean, clustered.ci_low, clustered.ci_high) == pytest.approx(
        (plain.mean, plain.ci_low, plain.ci_high))
    assert clustered.p_value == plain.p_value


def clustered_diffs(rng, n_users=60, per_user=6, delta=0.0, user_sd=0.1, task_sd=0.02):
    """Per-task differences where each user's tasks share a large user effect."""
    user_effect = rng.normal(0, user_sd, n_users)
    users = np.repeat(np.arange(n_users), per_user)
    return delta + user_effect[users] + rng.normal(0, task_sd, len(users)), users


def test_cluster_interval_covers_where_the_task_interval_does_not():
    rng = np.random.default_rng(1)
    covered = {"tasks": 0, "users": 0}
    n_sims = 150
    for _ in range(n_sims):
        diff, users = clustered_diffs(rng)
        zeros = np.zeros_like(diff)
        by_task = paired_bootstrap(diff, zeros, n_boot=300)
        by_user = paired_bootstrap(diff, zeros, n_boot=300, clusters=users)
        covered["tasks"] += by_task.ci_low <= 0 <= by_task.ci_high
        covered["users"] += by_user.ci_low <= 0 <= by_user.ci_high
    # Six tasks per user with a shared effect: resampling tasks covers about half the time.
    assert covered["users"] / n_sims > 0.88
    assert covered["tasks"] / n_sims < 0.7


def test_clusters_drop_nan_tasks_and_check_their_shape():
    a = torch.tensor([0.5, float("nan"), 0.7, 0.9])
    b = torch.zeros(4)
    d = paired_bootstrap(a, b, n_boot=200, clusters=["u1", "u1", "u2", "u2"])
    assert d.n_tasks == 3 and d.mean == pytest.approx(0.7)
    with pytest.raises(ValueError, match="one label per task"):
        paired_bootstrap(a, b, clusters=[1, 2])
    with pytest.raises(ValueError, match="one seed per side"):
        paired_bootstrap(np.ones((2, 4)), np.zeros((2, 4)), clusters=[1, 1, 2, 2])


def test_independent_bootstrap_difference_of_group_means():
    rng = np.random.default_rng(2)
    high, low = rng.normal(0.3, 0.1, 80), rng.normal(0.1, 0.1, 90)
    d = independent_bootstrap(high, low, n_boot=1000)
    assert d.mean == pytest.approx(high.mean() - low.mean())
    assert d.ci_low < d.mean < d.ci_high and d.verdict == "better" and d.n_tasks == 170
    same = independent_bootstrap(rng.normal(0, 1, 50), rng.normal(0, 1, 50), n_boot=1000)
    assert same.ci_low < 0 < same.ci_high or same.p_value < 0.05
    assert independent_bootstrap([np.nan], [1.0]).verdict == "no detectable difference"


def test_holm_verdicts_keep_only_what_survives_the_family():
    table = pd.DataFrame({"p_value": [0.001, 0.02, 0.04, np.nan],
                          "verdict": ["better", "worse", "better", "no detectable difference"]})
    out = holm_verdicts(table)
    assert out["p_holm"].iloc[:3].tolist() == pytest.approx([0.003, 0.04, 0.04])
    assert out["verdict_holm"].tolist() == ["better", "worse", "better", "no detectable difference"]
    bigger = holm_verdicts(pd.concat([table, pd.DataFrame({"p_value": [0.5] * 3, "verdict": ["no detectable difference"] * 3})]))
    assert bigger["verdict_holm"].tolist()[:3] == ["better", "no detectable difference", "no detectable difference"]
    with pytest.raises(ValueError, match="p_value"):
        holm_verdicts(pd.DataFrame({"verdict": ["better"]}))


def test_family_rows_and_difference_rows_gather_one_family():
    from metarec_ref.eval.family import difference_row, family_rows
    from metarec_ref.eval.paired import compare_to_best

    rng = np.random.default_rng(5)
    per_task = {name: {"auc": torch.as_tensor(rng.normal(mu, 0.1, 60))}
                for name, mu in (("MAML", 0.7), ("global", 0.6), ("popularity", 0.5))}
    table = compare_to_best(per_task, ["global", "popularity"], "auc", n_boot=300).assign(K=5)
    rows = family_rows(table, "new users")
    assert rows["method"].tolist() == ["MAML", "popularity"] and (rows["against"] == "global").all()
    assert (rows["part"] == "new users").all() and (rows["K"] == 5).all()
    extra = difference_row("personalisation", "MAML", "global",
                           paired_bootstrap(per_task["MAML"]["auc"], per_task["global"]["auc"], n_boot=300), K=5)
    family = holm_verdicts(pd.concat([rows, pd.DataFrame([extra])], ignore_index=True))
    assert len(family) == 3 and family["p_holm"].notna().all()
    assert family.loc[0, "verdict_holm"] == "better"  # a 0.1 gain on 60 tasks survives a family of 3
