"""Paired comparisons: per-task differences with a paired bootstrap CI, verdicts, seed spread.

Two methods evaluated on the same tasks give paired per-task values; the difference per task
removes the (large) task-to-task variation that makes two separate CIs overlap. The verdict
is read off the CI, never typed by hand: ``"better"`` if the whole 95% CI of
``method - reference`` is above zero, ``"worse"`` if below, else ``"no detectable difference"``.

- :func:`paired_bootstrap`: mean difference and percentile-bootstrap CI (tasks resampled with
  replacement, the same draw for both methods). Values of shape ``(seeds, tasks)`` are first
  averaged over seeds per task.
- :func:`compare_to_best`: a table with each method's difference to the best baseline.
- :func:`paired_comparison`: that table for every ``(cell, K)``, from the per-task values of
  :func:`metarec_ref.eval.evaluate.evaluate_per_task` (so methods are not run again).
- :func:`aggregate_seeds`: mean and spread over seeds of any results table.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from torch import Tensor

VERDICTS = ("better", "worse", "no detectable difference")
LOWER_IS_BETTER = ("log_loss", "mae", "rmse")


@dataclass(frozen=True)
class PairedDifference:
    """Mean of ``a - b`` over tasks with a bootstrap CI, and the verdict it implies."""

    mean: float
    ci_low: float
    ci_high: float
    n_tasks: int
    verdict: str


def _as_array(name: str, values) -> np.ndarray:
    if isinstance(values, Tensor):
        values = values.detach().cpu().to(torch.float64).numpy()
    values = np.asarray(values, dtype=np.float64)
    if values.ndim == 2:  # (seeds, tasks): one averaged value per task
        with warnings.catch_warnings():  # a task NaN in every seed stays NaN, silently
            warnings.simplefilter("ignore", RuntimeWarning)
            values = np.nanmean(values, axis=0) if values.shape[0] else values.ravel()
    if values.ndim != 1:
        raise ValueError(f"{name} must have shape (tasks,) or (seeds, tasks), got {values.shape}")
    return values


def verdict(ci_low: float, ci_high: float, higher_is_better: bool = True) -> str:
    """``"better"`` / ``"worse"`` / ``"no detectable difference"`` from a CI of ``method - reference``."""
    if math.isnan(ci_low) or math.isnan(ci_high):
        return "no detectable difference"
    if not higher_is_better:
        ci_low, ci_high = -ci_high, -ci_low
    if ci_low > 0:
        return "better"
    if ci_high < 0:
        return "worse"
    return "no detectable difference"


def paired_bootstrap(
    a, b, n_boot: int = 2000, level: float = 0.95, seed: int = 0, higher_is_better: bool = True
) -> PairedDifference:
    """Mean per-task difference ``a - b`` with a paired percentile-bootstrap CI.

    a, b: per-task values of two methods on the same tasks, ``(tasks,)`` or ``(seeds, tasks)``.
    Tasks where either value is NaN are dropped.
    """
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level!r}")
    if n_boot < 1:
        raise ValueError(f"n_boot must be >= 1, got {n_boot}")
    a, b = _as_array("a", a), _as_array("b", b)
    if a.shape != b.shape:
        raise ValueError(f"a and b must hold the same tasks; got {a.shape[0]} and {b.shape[0]} values")
    diff = (a - b)[~(np.isnan(a) | np.isnan(b))]
    n = len(diff)
    if n == 0:
        return PairedDifference(math.nan, math.nan, math.nan, 0, "no detectable difference")
    rng = np.random.default_rng(seed)
    means = diff[rng.integers(0, n, size=(n_boot, n))].mean(axis=1)
    alpha = (1 - level) / 2
    low, high = (float(v) for v in np.quantile(means, [alpha, 1 - alpha]))
    return PairedDifference(float(diff.mean()), low, high, n, verdict(low, high, higher_is_better))


def compare_to_best(
    per_task: Mapping[str, Mapping[str, Tensor]],
    baselines: Sequence[str],
    metric: str = "ndcg@10",
    n_boot: int = 2000,
    seed: int = 0,
) -> pd.DataFrame:
    """Each method's difference to the best baseline (by mean ``metric``), with CI and verdict.

    per_task: ``{method: {metric: values (tasks,) or (seeds, tasks)}}`` on the same tasks, e.g.
    from :func:`metarec_ref.eval.evaluate.per_task_metrics`. Columns: method, metric, mean,
    reference, diff, ci_low, ci_high, verdict, n_tasks. The reference itself gets diff 0.
    """
    missing = [name for name in baselines if name not in per_task]
    if not baselines or missing:
        raise ValueError(f"baselines must name methods of per_task; missing {missing or 'all'}; have {list(per_task)}")
    for name, values in per_task.items():
        if metric not in values:
            raise ValueError(f"method {name!r} has no metric {metric!r}; it has {list(values)}")
    higher = not metric.startswith(LOWER_IS_BETTER)
    means = {name: float(np.nanmean(_as_array(name, v[metric]))) for name, v in per_task.items()}
    sign = 1 if higher else -1
    reference = max(baselines, key=lambda name: sign * means[name])
    rows = []
    for name, values in per_task.items():
        d = paired_bootstrap(values[metric], per_task[reference][metric], n_boot, seed=seed, higher_is_better=higher)
        rows.append({"method": name, "metric": metric, "mean": means[name], "reference": reference,
                     "diff": d.mean, "ci_low": d.ci_low, "ci_high": d.ci_high, "verdict": d.verdict,
                     "n_tasks": d.n_tasks})
    return pd.DataFrame(rows)


def paired_comparison(
    per_task: Mapping[tuple[str, str, int], Mapping[str, Tensor]],
    baselines: Sequence[str],
    metrics: Sequence[str] = ("ndcg@10",),
    n_boot: int = 2000,
    seed: int = 0,
) -> pd.DataFrame:
    """Compare every method to the best baseline of each ``(cell, K)``, from stored per-task values.

    per_task: ``{(method, cell, K): {metric: (tasks,)}}`` as returned by
    :func:`metarec_ref.eval.evaluate.evaluate_per_task` (methods run on the same tasks of a cell).
    Columns: cell, K, then those of :func:`compare_to_best`.
    """
    if not per_task:
        raise ValueError("per_task is empty; build it with evaluate_per_task(methods, tasks)")
    by_cell: dict[tuple[str, int], dict[str, Mapping[str, Tensor]]] = {}
    for (name, cell, k), values in per_task.items():
        by_cell.setdefault((cell, k), {})[name] = values
    frames = []
    for (cell, k), values in by_cell.items():
        for metric in metrics:
            table = compare_to_best(values, baselines, metric, n_boot, seed)
            table.insert(0, "K", k)
            table.insert(0, "cell", cell)
            frames.append(table)
    return pd.concat(frames, ignore_index=True)


def aggregate_seeds(
    tables: Sequence[pd.DataFrame] | pd.DataFrame,
    values: Sequence[str] = ("mean",),
    by: Sequence[str] | None = None,
    min_seeds: int = 3,
) -> pd.DataFrame:
    """Mean and spread (std, min, max) over seeds of results tables, one row per method/cell/...

    tables: one table per seed, or one table with a ``seed`` column. by: the key columns
    (default: every non-numeric column but ``verdict`` / ``reference``, plus ``K``). Raises if fewer than
    ``min_seeds`` seeds are given: a headline number needs a seed spread.
    """
    if isinstance(tables, pd.DataFrame):
        if "seed" not in tables.columns:
            raise ValueError("a single table needs a 'seed' column; or pass a list of one table per seed")
        table = tables
    else:
        table = pd.concat([t.assign(seed=i) for i, t in enumerate(tables)], ignore_index=True)
    n_seeds = table["seed"].nunique()
    if n_seeds < min_seeds:
        raise ValueError(f"got {n_seeds} seed(s); headline tables need at least {min_seeds} (or lower min_seeds)")
    missing = [v for v in values if v not in table.columns]
    if missing:
        raise ValueError(f"value column {missing[0]!r} is missing; found {list(table.columns)}")
    if by is None:
        # Verdict and reference are per-seed outcomes, not keys.
        by = [c for c in table.columns if c not in ("seed", "verdict", "reference", *values)
              and (not pd.api.types.is_numeric_dtype(table[c]) or c == "K")]
    grouped = table.groupby(list(by), sort=False, dropna=False)
    out = grouped.size().rename("n_seeds").to_frame()
    for v in values:
        stats = grouped[v].agg(["mean", "std", "min", "max"])
        stats.columns = [f"{v}_{s}" if s != "mean" else f"{v}_mean" for s in stats.columns]
        out = out.join(stats)
    return out.reset_index()


__all__ = [
    "LOWER_IS_BETTER",
    "PairedDifference",
    "VERDICTS",
    "aggregate_seeds",
    "compare_to_best",
    "paired_bootstrap",
    "paired_comparison",
    "verdict",
]
