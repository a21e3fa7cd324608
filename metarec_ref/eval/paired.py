"""Paired comparisons: per-task differences with a paired bootstrap CI, verdicts, seed spread.

Two methods evaluated on the same tasks give paired per-task values; the difference per task
removes the (large) task-to-task variation that makes two separate CIs overlap. The verdict
is read off the CI, never typed by hand: ``"better"`` if the whole 95% CI of
``method - reference`` is above zero, ``"worse"`` if below, else ``"no detectable difference"``.

With several training seeds, a difference has two sources of chance: which tasks (users) were
drawn, and which seeds trained the models. The CI resamples both: each bootstrap replicate draws
seeds with replacement and tasks with replacement (the same tasks for both methods and every
drawn seed) and averages ``a - b`` over the drawn seeds x tasks, so seed-to-seed spread widens
the interval. With few seeds the seed part is underestimated (a percentile bootstrap over 3 seeds
gives optimistic intervals); where seeds differ a lot use at least 5, or :func:`verdict_every_seed`.

- :func:`paired_bootstrap`: mean difference, CI, two-sided bootstrap p-value and verdict.
- :func:`verdict_every_seed`: a verdict only when each seed's own paired CI agrees.
- :func:`holm_adjust`: Holm-Bonferroni adjusted p-values for a family of comparisons.
- :func:`compare_to_best`: a table with each method's difference to the best baseline.
- :func:`paired_comparison`: that table for every ``(cell, K)``, from the per-task values of
  :func:`metarec_ref.eval.evaluate.evaluate_per_task` (so methods are not run again).

``paired_bootstrap(..., clusters=...)`` resamples clusters (users) instead of tasks when one
cluster owns several tasks (a user in several time windows): tasks of one user are not
independent, so resampling them one by one gives too narrow an interval.
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
CORRECTIONS = ("holm",)
# Replicates are processed in chunks of about this many (replicate, task) counts, to bound memory.
_CHUNK_CELLS = 1 << 22


@dataclass(frozen=True)
class PairedDifference:
    """Mean of ``a - b`` over tasks (and seeds) with a bootstrap CI, p-value, and the verdict it implies."""

    mean: float
    ci_low: float
    ci_high: float
    n_tasks: int
    verdict: str
    n_seeds: int = 1
    p_value: float = math.nan


def _as_seeds_by_tasks(name: str, values) -> np.ndarray:
    """Values as a float64 array of shape ``(seeds, tasks)``; ``(tasks,)`` is one seed."""
    if isinstance(values, Tensor):
        values = values.detach().cpu().to(torch.float64).numpy()
    values = np.asarray(values, dtype=np.float64)
    if values.ndim == 1:
        values = values[None, :]
    if values.ndim != 2:
        raise ValueError(f"{name} must have shape (tasks,) or (seeds, tasks), got {values.shape}")
    if values.shape[0] == 0:  # no seeds: no values
        values = np.full((1, values.shape[1]), np.nan)
    return values


def _per_task_mean(name: str, values) -> np.ndarray:
    """Mean over seeds per task; a task NaN in every seed stays NaN."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(_as_seeds_by_tasks(name, values), axis=0)


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


def _draw_counts(draws: np.ndarray, n: int) -> np.ndarray:
    """How often each of ``n`` indices occurs in each row of ``draws``: ``(rows, k)`` -> ``(rows, n)``."""
    rows = len(draws)
    flat = (draws + n * np.arange(rows)[:, None]).ravel()
    return np.bincount(flat, minlength=rows * n).reshape(rows, n).astype(np.float64)


def _cell_means(values: np.ndarray, task_draws: np.ndarray, seed_draws: np.ndarray) -> np.ndarray:
    """Per replicate, the mean of the non-NaN cells of ``values`` ``(seeds, tasks)`` over the drawn
    seeds x drawn tasks (a cell drawn twice counts twice); NaN where the drawn cells hold no value.

    Computed from draw counts (tasks per replicate times values, weighted by seed counts), so the
    ``replicates x seeds x tasks`` resampled array is never built.
    """
    n_seeds, n_tasks = values.shape
    present = ~np.isnan(values)
    # Per task and seed: the sum of values and the number of cells (0 or 1), side by side.
    by_task = np.concatenate([np.where(present, values, 0.0), present.astype(np.float64)]).T
    seed_counts = _draw_counts(seed_draws, n_seeds)  # (replicates, seeds)
    totals, cells = np.empty(len(task_draws)), np.empty(len(task_draws))
    step = max(1, _CHUNK_CELLS // n_tasks)
    for start in range(0, len(task_draws), step):
        per_seed = _draw_counts(task_draws[start:start + step], n_tasks) @ by_task  # (chunk, 2 * seeds)
        weights = seed_counts[start:start + step]
        totals[start:start + step] = (per_seed[:, :n_seeds] * weights).sum(axis=1)
        cells[start:start + step] = (per_seed[:, n_seeds:] * weights).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return totals / cells


def _nan_mean(values: np.ndarray) -> float:
    return float(values[~np.isnan(values)].mean())


def bootstrap_p_value(means: np.ndarray) -> float:
    """Two-sided bootstrap p-value of a zero difference, with the +1 correction of a finite resample."""
    below = (np.count_nonzero(means <= 0) + 1) / (len(means) + 1)
    above = (np.count_nonzero(means >= 0) + 1) / (len(means) + 1)
    return float(min(1.0, 2 * min(below, above)))


def paired_bootstrap(
    a, b, n_boot: int = 2000, level: float = 0.95, seed: int = 0, higher_is_better: bool = True,
    *, clusters=None,
) -> PairedDifference:
    """Mean difference ``a - b`` with a paired percentile-bootstrap CI and a two-sided p-value.

    a, b: per-task values of two methods on the same tasks, ``(tasks,)`` or ``(seeds, tasks)``.
    Seeds are paired by index; one seed (or ``(tasks,)``) is paired with every seed of the other.
    Two different seed counts (both above one) are independent runs: each side's seeds are then
    resampled on their own. Several seeds: replicates resample seeds and tasks (module docstring);
    NaN cells are ignored and a task without any value is dropped. One seed on both sides: tasks
    where either value is NaN are dropped and only tasks are resampled.

    clusters: optional ``(tasks,)`` labels (e.g. the user of each (window, user) task); replicates
    then draw clusters with replacement and keep all their tasks (one seed on each side only).
    """
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level!r}")
    if n_boot < 1:
        raise ValueError(f"n_boot must be >= 1, got {n_boot}")
    a, b = _as_seeds_by_tasks("a", a), _as_seeds_by_tasks("b", b)
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"a and b must hold the same tasks; got {a.shape[1]} and {b.shape[1]} values")
    n_seeds = max(len(a), len(b))
    rng = np.random.default_rng(seed)
    if clusters is not None:
        if n_seeds > 1:
            raise ValueError("clusters work with one seed per side; average the seeds per task first, "
                             "or use verdict_every_seed")
        return _cluster_bootstrap((a - b)[0], clusters, n_boot, level, higher_is_better, rng)
    if n_seeds == 1:
        diff = (a - b)[0]
        diff = diff[~np.isnan(diff)]
        n_tasks = len(diff)
        if n_tasks:
            means = diff[rng.integers(0, n_tasks, size=(n_boot, n_tasks))].mean(axis=1)
            estimate = float(diff.mean())
    elif len(a) == len(b) or min(len(a), len(b)) == 1:
        diff = a - b  # one seed broadcasts to every seed of the other
        diff = diff[:, ~np.isnan(diff).all(axis=0)]
        n_tasks = diff.shape[1]
        if n_tasks:
            task_draws = rng.integers(0, n_tasks, size=(n_boot, n_tasks))
            means = _cell_means(diff, task_draws, rng.integers(0, n_seeds, size=(n_boot, n_seeds)))
            estimate = _nan_mean(diff)
    else:
        kept = ~(np.isnan(a).all(axis=0) | np.isnan(b).all(axis=0))
        a, b = a[:, kept], b[:, kept]
        n_tasks = int(kept.sum())
        if n_tasks:
            task_draws = rng.integers(0, n_tasks, size=(n_boot, n_tasks))
            means_a = _cell_means(a, task_draws, rng.integers(0, len(a), size=(n_boot, len(a))))
            means = means_a - _cell_means(b, task_draws, rng.integers(0, len(b), size=(n_boot, len(b))))
            estimate = _nan_mean(a) - _nan_mean(b)
    if n_tasks == 0:
        return PairedDifference(math.nan, math.nan, math.nan, 0, "no detectable difference", n_seeds)
    means = means[~np.isnan(means)]  # replicates whose drawn cells held no value
    alpha = (1 - level) / 2
    low, high = (float(v) for v in np.quantile(means, [alpha, 1 - alpha]))
    return PairedDifference(estimate, low, high, n_tasks, verdict(low, high, higher_is_better),
                            n_seeds, bootstrap_p_value(means))


def _cluster_bootstrap(diff: np.ndarray, clusters, n_boot: int, level: float, higher_is_better: bool,
                       rng: np.random.Generator) -> PairedDifference:
    """Paired bootstrap over clusters: each replicate is the mean of ``diff`` over all tasks of the
    drawn clusters (a cluster drawn twice counts twice)."""
    clusters = np.asarray(clusters)
    if clusters.shape != diff.shape:
        raise ValueError(f"clusters must have one label per task, shape {diff.shape}; got {clusters.shape}")
    kept = ~np.isnan(diff)
    diff, clusters = diff[kept], clusters[kept]
    if len(diff) == 0:
        return PairedDifference(math.nan, math.nan, math.nan, 0, "no detectable difference")
    codes = pd.factorize(clusters, sort=True)[0]
    n_clusters = int(codes.max()) + 1
    sums = np.bincount(codes, weights=diff, minlength=n_clusters)
    sizes = np.bincount(codes, minlength=n_clusters).astype(np.float64)
    means = np.empty(n_boot)
    step = max(1, _CHUNK_CELLS // n_clusters)
    for start in range(0, n_boot, step):
        counts = _draw_counts(rng.integers(0, n_clusters, size=(min(step, n_boot - start), n_clusters)), n_clusters)
        means[start:start + len(counts)] = (counts @ sums) / (counts @ sizes)
    alpha = (1 - level) / 2
    low, high = (float(v) for v in np.quantile(means, [alpha, 1 - alpha]))
    return PairedDifference(float(diff.mean()), low, high, len(diff), verdict(low, high, higher_is_better),
                            1, bootstrap_p_value(means))


def verdict_every_seed(
    a, b, n_boot: int = 2000, level: float = 0.95, seed: int = 0, higher_is_better: bool = True
) -> str:
    """``"better"`` / ``"worse"`` only if the paired task-bootstrap CI of every seed says so.

    A stricter reading than :func:`paired_bootstrap` for few seeds, where resampling seeds gives
    optimistic intervals. a, b: ``(tasks,)`` or ``(seeds, tasks)``, seeds paired by index; one seed
    is paired with every seed of the other.
    """
    a, b = _as_seeds_by_tasks("a", a), _as_seeds_by_tasks("b", b)
    if len(a) != len(b) and min(len(a), len(b)) > 1:
        raise ValueError(f"seeds are paired by index; got {len(a)} and {len(b)} seeds")
    verdicts = {
        paired_bootstrap(a[min(s, len(a) - 1)], b[min(s, len(b) - 1)], n_boot, level, seed, higher_is_better).verdict
        for s in range(max(len(a), len(b)))
    }
    return verdicts.pop() if len(verdicts) == 1 else "no detectable difference"


def holm_adjust(p_values) -> np.ndarray:
    """Holm-Bonferroni step-down adjusted p-values: monotone in the raw p-values and capped at 1.

    p_values: one family, 1-D; NaN entries are not part of the family and stay NaN.
    """
    p = np.asarray(p_values, dtype=np.float64)
    if p.ndim != 1:
        raise ValueError(f"p_values must be 1-D, got shape {p.shape}")
    adjusted = np.full(p.shape, np.nan)
    tested = np.flatnonzero(~np.isnan(p))
    order = tested[np.argsort(p[tested], kind="stable")]
    factors = len(order) - np.arange(len(order))  # m, m-1, ..., 1 from the smallest p up
    adjusted[order] = np.minimum(1.0, np.maximum.accumulate(factors * p[order]))
    return adjusted


def holm_verdicts(table: pd.DataFrame, level: float = 0.95, *, by=None, members=None) -> pd.DataFrame:
    """``table`` with ``p_holm`` (Holm over its family of comparisons) and ``verdict_holm``: the one Holm path.

    table: one row per comparison with columns ``p_value`` and ``verdict`` (e.g. rows of
    :func:`compare_to_best` and :func:`paired_bootstrap` results gathered into one family). A
    "better" / "worse" verdict survives only where ``p_holm < 1 - level``; rows outside the family
    (no p-value, or not in ``members``) get no ``p_holm`` and "no detectable difference".
    by: column(s) splitting the table into separate families, each corrected on its own.
    members: bool per row, the rows that are comparisons at all (e.g. not a reference against itself).
    """
    missing = [c for c in ("p_value", "verdict") if c not in table.columns]
    if missing:
        raise ValueError(f"holm_verdicts needs columns p_value and verdict; missing {missing}")
    p = table["p_value"].to_numpy(dtype=np.float64)
    in_family = ~np.isnan(p) if members is None else np.asarray(members, dtype=bool) & ~np.isnan(p)
    families = [np.arange(len(table))] if by is None else list(table.groupby(by, sort=False).indices.values())
    p_holm = np.full(len(table), np.nan)
    for rows in families:
        rows = rows[in_family[rows]]
        p_holm[rows] = holm_adjust(p[rows])
    significant = p_holm < 1 - level  # NaN is never significant
    return table.assign(p_holm=p_holm,
                        verdict_holm=np.where(significant, table["verdict"], "no detectable difference"))


def _apply_correction(table: pd.DataFrame, correction: str | None, level: float) -> pd.DataFrame:
    """Holm over the family of non-reference rows (:func:`holm_verdicts`); the CI verdict kept only where it survives."""
    if correction is None:
        return table
    corrected = holm_verdicts(table, level, members=(table["method"] != table["reference"]).to_numpy())
    return corrected.assign(verdict=corrected["verdict_holm"]).drop(columns="verdict_holm")


def _check_correction(correction: str | None) -> None:
    if correction is not None and correction not in CORRECTIONS:
        raise ValueError(f"correction must be None or one of {CORRECTIONS}, got {correction!r}")


def compare_to_best(
    per_task: Mapping[str, Mapping[str, Tensor]],
    baselines: Sequence[str],
    metric: str = "ndcg@10",
    n_boot: int = 2000,
    seed: int = 0,
    *,
    level: float = 0.95,
    correction: str | None = None,
    reference: str | None = None,
) -> pd.DataFrame:
    """Each method's difference to the best baseline (by mean ``metric``), with CI and verdict.

    per_task: ``{method: {metric: values (tasks,) or (seeds, tasks)}}`` on the same tasks, e.g.
    from :func:`metarec_ref.eval.evaluate.per_task_metrics`; seeds are resampled as in
    :func:`paired_bootstrap`. Columns: method, metric, mean, reference, diff, ci_low, ci_high,
    verdict, n_tasks, p_value. The reference itself gets diff 0.
    correction: ``"holm"`` adds ``p_holm``, Holm-adjusted over the family of every row but the
    reference's, and keeps a "better" / "worse" verdict only where ``p_holm < 1 - level``.
    """
    _check_correction(correction)
    missing = [name for name in baselines if name not in per_task]
    if not baselines or missing:
        raise ValueError(f"baselines must name methods of per_task; missing {missing or 'all'}; have {list(per_task)}")
    for name, values in per_task.items():
        if metric not in values:
            raise ValueError(f"method {name!r} has no metric {metric!r}; it has {list(values)}")
    higher = not metric.startswith(LOWER_IS_BETTER)
    means = {name: float(np.nanmean(_per_task_mean(name, v[metric]))) for name, v in per_task.items()}
    sign = 1 if higher else -1
    if reference is None:
        reference = max(baselines, key=lambda name: sign * means[name])
    elif reference not in baselines:
        raise ValueError(f"reference {reference!r} is not one of the baselines {list(baselines)}")
    rows = []
    for name, values in per_task.items():
        d = paired_bootstrap(values[metric], per_task[reference][metric], n_boot, level, seed, higher)
        rows.append({"method": name, "metric": metric, "mean": means[name], "reference": reference,
                     "diff": d.mean, "ci_low": d.ci_low, "ci_high": d.ci_high, "verdict": d.verdict,
                     "n_tasks": d.n_tasks, "p_value": d.p_value})
    return _apply_correction(pd.DataFrame(rows), correction, level)


def paired_comparison(
    per_task: Mapping[tuple[str, str, int], Mapping[str, Tensor]],
    baselines: Sequence[str],
    metrics: Sequence[str] = ("ndcg@10",),
    n_boot: int = 2000,
    seed: int = 0,
    *,
    level: float = 0.95,
    correction: str | None = None,
) -> pd.DataFrame:
    """Compare every method to the best baseline of each ``(cell, K)``, from stored per-task values.

    per_task: ``{(method, cell, K): {metric: (tasks,)}}`` as returned by
    :func:`metarec_ref.eval.evaluate.evaluate_per_task` (methods run on the same tasks of a cell).
    Columns: cell, K, then those of :func:`compare_to_best`. correction: as there, but the family
    is every row of the whole table (all cells, K and metrics) except the reference rows.
    """
    _check_correction(correction)
    if not per_task:
        raise ValueError("per_task is empty; build it with evaluate_per_task(methods, tasks)")
    by_cell: dict[tuple[str, int], dict[str, Mapping[str, Tensor]]] = {}
    for (name, cell, k), values in per_task.items():
        by_cell.setdefault((cell, k), {})[name] = values
    frames = []
    for (cell, k), values in by_cell.items():
        for metric in metrics:
            table = compare_to_best(values, baselines, metric, n_boot, seed, level=level)
            table.insert(0, "K", k)
            table.insert(0, "cell", cell)
            frames.append(table)
    return _apply_correction(pd.concat(frames, ignore_index=True), correction, level)


__all__ = [
    "CORRECTIONS",
    "LOWER_IS_BETTER",
    "VERDICTS",
    "PairedDifference",
    "bootstrap_p_value",
    "compare_to_best",
    "holm_adjust",
    "holm_verdicts",
    "paired_bootstrap",
    "paired_comparison",
    "verdict",
    "verdict_every_seed",
]
