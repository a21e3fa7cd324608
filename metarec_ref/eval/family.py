"""A family of comparisons: Holm over a gathered table, and differences between independent groups.

A chapter that states many verdicts gathers every comparison (one row each, with its bootstrap
p-value) into one table and keeps a "better" / "worse" only where it survives Holm's correction
over that whole family (:func:`~metarec_ref.eval.paired.holm_verdicts`, the one Holm path). :func:`independent_bootstrap` compares the means
of two groups of different units (the most and the least typical users), where no pairing exists.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from metarec_ref.eval.paired import (
    PairedDifference,
    bootstrap_p_value,
    holm_verdicts,
    verdict,
)


def _flat(values) -> np.ndarray:
    if isinstance(values, Tensor):
        values = values.detach().cpu().to(torch.float64).numpy()
    return np.asarray(values, dtype=np.float64).ravel()


def independent_bootstrap(
    a, b, n_boot: int = 2000, level: float = 0.95, seed: int = 0, higher_is_better: bool = True
) -> PairedDifference:
    """Difference of the means of two independent groups, ``mean(a) - mean(b)``, each resampled on its own.

    For groups of different units (the most and the least typical users), where no pairing exists.
    NaN values are dropped; ``n_tasks`` is the number of values in both groups together.
    """
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level!r}")
    a, b = (_flat(v) for v in (a, b))
    a, b = a[~np.isnan(a)], b[~np.isnan(b)]
    if len(a) == 0 or len(b) == 0:
        return PairedDifference(math.nan, math.nan, math.nan, len(a) + len(b), "no detectable difference")
    rng = np.random.default_rng(seed)
    means = (a[rng.integers(0, len(a), size=(n_boot, len(a)))].mean(axis=1)
             - b[rng.integers(0, len(b), size=(n_boot, len(b)))].mean(axis=1))
    alpha = (1 - level) / 2
    low, high = (float(v) for v in np.quantile(means, [alpha, 1 - alpha]))
    return PairedDifference(float(a.mean() - b.mean()), low, high, len(a) + len(b),
                            verdict(low, high, higher_is_better), 1, bootstrap_p_value(means))


FAMILY_COLUMNS = ("part", "method", "against", "diff", "ci_low", "ci_high", "p_value", "verdict")


def family_rows(table: pd.DataFrame, part: str, methods=None) -> pd.DataFrame:
    """Rows of a :func:`~metarec_ref.eval.paired.compare_to_best` table as members of a family.

    Keeps ``methods`` (default: every row but the reference's), names the reference ``against``
    and adds ``part``; key columns such as ``K`` are kept.
    """
    rows = table[table["method"] != table["reference"]] if methods is None else table[table["method"].isin(list(methods))]
    rows = rows.rename(columns={"reference": "against"}).assign(part=part)
    keys = [c for c in rows.columns if c not in FAMILY_COLUMNS and c not in ("metric", "mean", "n_tasks")]
    return rows[[*FAMILY_COLUMNS, *keys]].reset_index(drop=True)


def difference_row(part: str, method: str, against: str, d: PairedDifference, **keys) -> dict:
    """One member of a family from a :class:`~metarec_ref.eval.paired.PairedDifference`."""
    return {"part": part, "method": method, "against": against, "diff": d.mean, "ci_low": d.ci_low,
            "ci_high": d.ci_high, "p_value": d.p_value, "verdict": d.verdict, **keys}


__all__ = ["FAMILY_COLUMNS", "difference_row", "family_rows", "holm_verdicts", "independent_bootstrap"]
