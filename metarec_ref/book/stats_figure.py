"""Reading a comparison, drawn from a chapter's own per-user values.

:func:`read_comparison` gathers what a reader needs to judge "method a against method b on the
same users": the difference per user, its 95% interval three ways (paired over users; paired over
users and training seeds, as the chapters report it; unpaired, as two separate intervals would
judge it), and a family of p-values against Holm's thresholds, beside a family of the same size
with no true difference (each user's two values swapped at random), which shows what chance alone
does to uncorrected p-values. :func:`plot_reading_a_comparison` draws them. Every interval and
adjusted p-value comes from :mod:`metarec_ref.eval.paired` and :mod:`metarec_ref.eval.family`, so
the figure shows the numbers the chapters' tables show.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.figure import Figure

from metarec_ref.eval import holm_adjust, independent_bootstrap, paired_bootstrap
from metarec_ref.eval.paired import PairedDifference

PAIRED_COLOR = "tab:blue"
SEEDS_COLOR = "tab:purple"
UNPAIRED_COLOR = "tab:grey"


@dataclass(frozen=True)
class ComparisonReading:
    """One comparison ``a - b`` read three ways, and the family of p-values it belongs to.

    per_user: the difference per user (averaged over seeds first), NaN users dropped.
    per_seed: the mean difference of each training seed.
    paired_users: paired bootstrap over users of the per-user means (seeds averaged, not resampled).
    paired_seeds: paired bootstrap over users and training seeds (the chapters' interval).
    unpaired: each method's users resampled on their own, as two separate intervals would judge it.
    p_values: the family's p-values, sorted ascending; thresholds: Holm's ``(1 - level) / (m - i + 1)``
    for the i-th smallest; detectable: which of them survive Holm (adjusted p-value below 1 - level).
    null_p_values: sorted p-values of as many comparisons with no true difference, each made from
    ``per_user`` with every user's sign flipped by a fair coin (the two methods' values swapped);
    null_detectable: which of those survive Holm.
    """

    per_user: np.ndarray
    per_seed: np.ndarray
    paired_users: PairedDifference
    paired_seeds: PairedDifference
    unpaired: PairedDifference
    p_values: np.ndarray
    thresholds: np.ndarray
    detectable: np.ndarray
    null_p_values: np.ndarray
    null_detectable: np.ndarray
    level: float
    n_boot: int

    @property
    def null_uncorrected(self) -> int:
        """How many no-difference comparisons pass ``1 - level`` without a correction."""
        return int((self.null_p_values < 1 - self.level).sum())

    @property
    def p_floor(self) -> float:
        """The smallest two-sided p-value ``n_boot`` resamples can give (all on one side of zero)."""
        return 2 / (self.n_boot + 1)


def _seeds_by_users(name: str, values) -> np.ndarray:
    if isinstance(values, torch.Tensor):
        values = values.detach().cpu().to(torch.float64).numpy()
    values = np.asarray(values, dtype=np.float64)
    if values.ndim == 1:
        values = values[None, :]
    if values.ndim != 2:
        raise ValueError(f"{name} must have shape (users,) or (seeds, users), got {values.shape}")
    return values


def read_comparison(a, b, family_p_values, *, level: float = 0.95, n_boot: int = 2000,
                    seed: int = 0) -> ComparisonReading:
    """Read ``a - b`` (per-user values of two methods on the same users) and a family of p-values.

    a, b: ``(users,)`` or ``(seeds, users)``, users in the same order. family_p_values: the p-values
    of every comparison of the family (e.g. the ``p_value`` column of a
    :func:`~metarec_ref.eval.paired.paired_comparison` table, reference rows left out); NaN entries
    are not part of the family. seed: the bootstrap's and the coin flips' random seed.
    """
    a, b = _seeds_by_users("a", a), _seeds_by_users("b", b)
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"a and b must hold the same users; got {a.shape[1]} and {b.shape[1]} values")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a user NaN in every seed stays NaN
        a_mean, b_mean = np.nanmean(a, axis=0), np.nanmean(b, axis=0)
    per_user = a_mean - b_mean
    both = ~np.isnan(per_user)
    options = {"n_boot": n_boot, "level": level, "seed": seed}
    p = np.asarray(family_p_values, dtype=np.float64).ravel()
    p = np.sort(p[~np.isnan(p)])
    if len(p) == 0:
        raise ValueError("family_p_values holds no p-value; pass the p_value column of the family's table")
    differences = per_user[both]
    flips = np.random.default_rng(seed).choice([-1.0, 1.0], size=(len(p), len(differences)))
    null_p = np.sort([paired_bootstrap(f * differences, np.zeros_like(differences), **options).p_value
                      for f in flips])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        per_seed = np.nanmean(a - b, axis=1)
    return ComparisonReading(
        per_user=differences,
        per_seed=per_seed,
        paired_users=paired_bootstrap(a_mean, b_mean, **options),
        paired_seeds=paired_bootstrap(a, b, **options),
        unpaired=independent_bootstrap(a_mean[both], b_mean[both], **options),
        p_values=p,
        thresholds=(1 - level) / (len(p) - np.arange(len(p))),
        detectable=holm_adjust(p) < 1 - level,
        null_p_values=null_p,
        null_detectable=holm_adjust(null_p) < 1 - level,
        level=level,
        n_boot=n_boot,
    )


def plot_reading_a_comparison(reading: ComparisonReading, *, a_name: str = "a", b_name: str = "b",
                              metric: str = "AUC") -> Figure:
    """Three panels: the per-user differences, the three intervals, the p-values against Holm's thresholds."""
    fig, axes = plt.subplots(1, 3, figsize=(15, 5))
    percent = f"{reading.level:.0%}"

    ax = axes[0]
    ax.hist(reading.per_user, bins=30, color=PAIRED_COLOR, alpha=0.6)
    ax.axvline(0, color="black", lw=1)
    ax.axvline(reading.paired_seeds.mean, color="tab:red", lw=2,
               label=f"mean over {len(reading.per_user)} users")
    ax.axvspan(reading.paired_seeds.ci_low, reading.paired_seeds.ci_high, color="tab:red", alpha=0.25,
               label=f"its {percent} interval")
    ax.set_xlabel(f"{metric} of {a_name} minus {metric} of {b_name}, per user")
    ax.set_ylabel("number of users")
    ax.set_title("Users vary; their mean is pinned down")
    ax.legend(loc="upper right", fontsize=8)

    ax = axes[1]
    rows = [("unpaired: each method's\nusers drawn separately", reading.unpaired, UNPAIRED_COLOR),
            ("paired: users drawn,\nseeds averaged", reading.paired_users, PAIRED_COLOR),
            ("paired: users and\ntraining seeds drawn", reading.paired_seeds, SEEDS_COLOR)]
    for y, (label, d, color) in enumerate(rows):
        ax.errorbar(d.mean, y, xerr=[[d.mean - d.ci_low], [d.ci_high - d.mean]], fmt="o", color=color,
                    capsize=5, lw=2)
    if len(reading.per_seed) > 1:
        ax.plot(reading.per_seed, np.full(len(reading.per_seed), len(rows) - 1 + 0.25), "x", color=SEEDS_COLOR,
                label="mean of each training seed")
        ax.legend(loc="lower left", fontsize=8)
    ax.axvline(0, color="black", lw=1)
    ax.set_yticks(range(len(rows)), [label for label, _, _ in rows], fontsize=8)
    ax.set_ylim(-0.6, len(rows) - 0.4)
    ax.set_xlim(min(0.0, *(d.ci_low for _, d, _ in rows)) - 0.01, max(0.0, *(d.ci_high for _, d, _ in rows)) + 0.01)
    ax.set_xlabel(f"mean difference in {metric}, {percent} bootstrap interval")
    ax.set_title("Pairing narrows the interval; seeds widen it")

    ax = axes[2]
    rank = np.arange(1, len(reading.p_values) + 1)
    alpha = 1 - reading.level
    ax.step(rank, reading.thresholds, where="mid", color="black", label=f"Holm: {alpha:.2f} / (m - i + 1)")
    ax.axhline(alpha, color="black", ls="--", lw=1, label=f"{alpha:.2f}, no correction")
    ax.plot(rank, reading.p_values, "o", color=PAIRED_COLOR, label="this chapter's comparisons")
    ax.plot(rank, reading.null_p_values, "s", mfc="white", color="tab:orange",
            label="no true difference (values swapped)")
    ax.axhline(reading.p_floor, color="grey", ls=":", lw=1, label=f"smallest p-value of {reading.n_boot} draws")
    ax.set_yscale("log")
    ax.set_ylim(reading.p_floor / 2, 1.5)
    ax.set_xlabel(f"comparison i, sorted by p-value (m = {len(rank)})")
    ax.set_ylabel("bootstrap p-value")
    ax.set_title("Many comparisons: a stricter bar for each")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.2), fontsize=7, ncol=2)
    fig.tight_layout()
    return fig


__all__ = ["ComparisonReading", "plot_reading_a_comparison", "read_comparison"]
