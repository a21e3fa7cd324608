"""The closing chapter's recipe and figure helpers."""

from __future__ import annotations

import math

import pandas as pd
import pytest
import torch

from metarec_ref.book import real_log_points
from metarec_ref.data import ToyConfig
from metarec_ref.recipes import ToyComparisonConfig, compare_on_toy_shop, heterogeneity_shops
from metarec_ref.recipes.when_it_helps import METHODS


def test_heterogeneity_shops_scale_both_distances():
    base = ToyConfig(segment_scale=2.0, user_noise=0.5)
    shops = heterogeneity_shops([0.5, 1, 2], base)
    assert shops[1.0] == base
    assert shops[0.5].segment_scale == 1.0 and shops[0.5].user_noise == 0.25
    assert shops[2.0].segment_scale == 4.0 and shops[2.0].sharpness == base.sharpness
    with pytest.raises(ValueError, match="spread"):
        heterogeneity_shops([-1])


@pytest.mark.slow
def test_compare_on_toy_shop_gives_every_method_the_same_users():
    config = ToyComparisonConfig(n_train_tasks=64, n_val_tasks=32, n_test_tasks=40, meta_steps=5)
    auc, fine_tune = compare_on_toy_shop(ToyConfig(), config, seed=3)
    assert list(auc) == list(METHODS)
    assert all(v.shape == (40,) for v in auc.values())
    assert fine_tune["ft_steps"] <= config.inner_steps and fine_tune["ft_lr"] in config.ft_lr_grid
    # The oracle knows each user's preferences: on average no learner beats it.
    assert auc["oracle"].nanmean() > max(auc[m].nanmean() for m in METHODS if m != "oracle")
    again, _ = compare_on_toy_shop(ToyConfig(), config, seed=3)
    assert all(torch.equal(auc[m], again[m]) for m in METHODS)  # same seed, same numbers


def test_real_log_points_read_both_chapters_keys():
    ch7 = {"ch7_meta_diff_basket_k5": -0.02, "ch7_meta_diff_low_basket_k5": -0.03, "ch7_meta_diff_high_basket_k5": -0.01,
           "ch7_adapt_diff_basket_k5": 0.001, "ch7_meta_diff_orphan_k3": 0.5}
    prefix = "ch7b_retail_heldout_basket_k1"
    ch7b = {f"{prefix}_meta_vs_best_classical_{s}": v for s, v in (("diff", 0.002), ("low", -0.001), ("high", 0.004))}
    ch7b |= {f"{prefix}_meta_vs_unadapted_{s}": v for s, v in (("diff", 0.0), ("low", 0.0), ("high", 0.0))}
    points = real_log_points(ch7, ch7b).set_index("setting")
    assert list(points.index) == ["basket K=5", "heldout_basket K=1"]  # the orphan has no adaptation diff
    assert points.loc["basket K=5", "x"] == 0.001 and points.loc["basket K=5", "y_low"] == -0.03
    assert points.loc["heldout_basket K=1", "y_high"] == 0.004
    assert isinstance(real_log_points({}, {}), pd.DataFrame) and real_log_points({}, {}).empty
    assert not math.isnan(points["x"].sum())
