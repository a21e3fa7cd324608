"""Reading a comparison: the intervals and thresholds of the figure are the library's, and behave as taught."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from metarec_ref.book import plot_reading_a_comparison, read_comparison  # noqa: E402
from metarec_ref.eval import holm_adjust, independent_bootstrap, paired_bootstrap  # noqa: E402


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def two_methods(n_users=300, n_seeds=3, effect=0.05, seed_shift=0.0, rng_seed=0):
    """Per-user values of two methods: a large user effect shared by both, a small gain for ``a``."""
    rng = np.random.default_rng(rng_seed)
    user = rng.normal(0.7, 0.15, size=n_users)  # easy and hard users, the same for both methods
    shifts = seed_shift * rng.standard_normal(n_seeds)[:, None]
    a = user + effect + shifts + 0.03 * rng.standard_normal((n_seeds, n_users))
    b = user + 0.03 * rng.standard_normal((n_seeds, n_users))
    return a, b


def test_intervals_are_the_librarys_and_pairing_narrows_them():
    a, b = two_methods()
    p_family = [0.001, 0.02, 0.2, np.nan]
    reading = read_comparison(a, b, p_family, seed=3)
    assert reading.paired_seeds == paired_bootstrap(a, b, seed=3)
    assert reading.paired_users == paired_bootstrap(a.mean(0), b.mean(0), seed=3)
    assert reading.unpaired == independent_bootstrap(a.mean(0), b.mean(0), seed=3)
    np.testing.assert_allclose(reading.per_user, a.mean(0) - b.mean(0))
    np.testing.assert_allclose(reading.per_seed, (a - b).mean(1))
    # The user effect cancels in the paired difference only: the unpaired interval is several times wider.
    paired_width = reading.paired_users.ci_high - reading.paired_users.ci_low
    unpaired_width = reading.unpaired.ci_high - reading.unpaired.ci_low
    assert unpaired_width > 3 * paired_width
    assert reading.paired_users.verdict == "better" and reading.unpaired.verdict == "better"


def test_seed_spread_widens_the_interval():
    a, b = two_methods(seed_shift=0.02, rng_seed=1)
    reading = read_comparison(torch.as_tensor(a), torch.as_tensor(b), [0.01], seed=0)
    with_seeds = reading.paired_seeds.ci_high - reading.paired_seeds.ci_low
    users_only = reading.paired_users.ci_high - reading.paired_users.ci_low
    assert with_seeds > 1.5 * users_only


def test_holm_thresholds_and_the_family_without_a_difference():
    a, b = two_methods(n_seeds=1)
    p_family = [0.04, 0.001, 0.012, 0.3, 0.02]
    reading = read_comparison(a[0], b[0], p_family, level=0.95)
    np.testing.assert_allclose(reading.p_values, sorted(p_family))
    np.testing.assert_allclose(reading.thresholds, [0.05 / 5, 0.05 / 4, 0.05 / 3, 0.05 / 2, 0.05])
    # Step down: 0.001 < 0.01 passes, 0.012 < 0.0125 passes, 0.02 > 0.0167 stops the rest.
    assert reading.detectable.tolist() == [True, True, False, False, False]
    assert reading.detectable.tolist() == (holm_adjust(sorted(p_family)) < 0.05).tolist()
    # Swapping each user's two values at random leaves no true difference: p-values spread out.
    assert len(reading.null_p_values) == 5
    assert np.all(np.diff(reading.null_p_values) >= 0)
    assert reading.null_p_values.max() > 0.05
    assert reading.p_floor <= reading.null_p_values.min() <= 1
    assert reading.null_uncorrected == int((reading.null_p_values < 0.05).sum())


def test_bad_input_names_the_fix():
    a, b = two_methods(n_seeds=1)
    with pytest.raises(ValueError, match="same users"):
        read_comparison(a[0], b[0, :10], [0.01])
    with pytest.raises(ValueError, match="holds no p-value"):
        read_comparison(a[0], b[0], [np.nan])
    with pytest.raises(ValueError, match=r"\(users,\) or \(seeds, users\)"):
        read_comparison(a[None], b[None], [0.01])


def test_figure_has_three_labelled_panels():
    a, b = two_methods()
    fig = plot_reading_a_comparison(read_comparison(a, b, [0.001, 0.2]), a_name="MAML", b_name="fine-tune")
    assert isinstance(fig, Figure) and len(fig.axes) == 3
    assert "MAML" in fig.axes[0].get_xlabel() and "fine-tune" in fig.axes[0].get_xlabel()
    assert fig.axes[2].get_yscale() == "log"
    labels = [t.get_text() for t in fig.axes[2].get_legend().get_texts()]
    assert any("Holm" in label for label in labels)
