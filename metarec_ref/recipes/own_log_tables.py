"""The tables of the own-log comparison: where each tuned value ended, and the verdicts.

:func:`tuning_rows` and :func:`meta_steps_row` make the tuning table (one row per tuned value: its
starting grid, what the bracketing added, where the chosen value ended); :func:`grid_edges_of`
lists the values still on an edge; :func:`verdict_table` compares each learner with the best
baseline, Holm-corrected.
"""

from __future__ import annotations

import warnings

import pandas as pd
import torch

from metarec_ref.eval.paired import holm_verdicts, paired_bootstrap
from metarec_ref.runtime import GridEdgeWarning, GridSearch
from metarec_ref.train.meta_trainer import MetaTrainConfig


def tuning_rows(method: str, search: GridSearch, caps: dict | None = None) -> list[dict]:
    """One row per tuned value: where its grid started, what the bracketing added, where it ended.

    caps: values that bound an extension for budget's sake, not by nature (a chosen value there is
    not bracketed).
    """
    rows = []
    for name in search.names:
        added, edge = search.extended[name], search.edges[name]
        low, high = search.bounds.get(name, (None, None))
        chosen, cap = search.chosen[name], (caps or {}).get(name)
        where = (f"{edge} edge, not bracketed" if edge is not None else
                 "at its budget cap, not bracketed" if cap is not None and chosen == cap else
                 "natural bound" if chosen in (low, high) else
                 "one value tried, not bracketed" if len(search.final[name]) == 1 else "inside")
        rows.append({"method": method, "value": name, "chosen": str(_plain(chosen)),
                     "starting grid": ", ".join(str(_plain(v)) for v in search.start[name]),
                     "added": ", ".join(str(_plain(v)) for v in added) or "-", "chosen value is": where})
    return rows


def _plain(value):
    """A grid value as a reader writes it: 0.1 not 0.1000000001, 30 not 30.0."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return float(f"{value:.4g}") if isinstance(value, float) else value


def meta_steps_row(method: str, best_step: int, outer: MetaTrainConfig) -> dict:
    """The meta-steps kept by early stopping, as a row of the tuning table (a budget, not a grid)."""
    end = best_step >= outer.meta_steps
    return {"method": method, "value": "meta_steps", "chosen": str(best_step),
            "starting grid": f"early stopping, every {outer.eval_every} up to {outer.meta_steps}", "added": "-",
            "chosen value is": "the budget's end (still improving)" if end else "inside"}


def grid_edges_of(table: pd.DataFrame) -> list[str]:
    """The tuned values still on an edge of their grid, each in one line (and a warning)."""
    edges = []
    for row in table.to_dict("records"):
        if row["chosen value is"].endswith("not bracketed"):
            where = row["chosen value is"].removesuffix(", not bracketed")
            message = (f"{row['method']}: {row['value']} = {row['chosen']} is not bracketed ({where}; grid "
                       f"started at {row['starting grid']}, added {row['added']})")
            warnings.warn(message, GridEdgeWarning, stacklevel=2)
            edges.append(message)
    return edges


def verdict_table(per_task: dict[str, dict[str, torch.Tensor]], learners: list[str], baselines: list[str],
                  metrics: tuple[str, ...], n_boot: int = 2000, seed: int = 0) -> pd.DataFrame:
    """Each learner against the best baseline per metric, Holm-corrected over the whole table.

    per_task: ``{method: {metric: (tasks,) or (seeds, tasks)}}`` on the same test users. The
    reference is the baseline with the best mean; the CI resamples users and seeds; a verdict is
    "better" / "worse" only when the Holm-adjusted p-value is below 0.05
    (:func:`~metarec_ref.eval.paired.holm_verdicts`).
    """
    rows = []
    for metric in metrics:
        means = {b: float(torch.as_tensor(per_task[b][metric]).to(torch.float64).nanmean()) for b in baselines}
        reference = max(means, key=means.get)
        for name in learners:
            d = paired_bootstrap(per_task[name][metric], per_task[reference][metric], n_boot, seed=seed)
            rows.append({"learner": name, "metric": metric, "reference": reference, "diff": d.mean,
                         "ci_low": d.ci_low, "ci_high": d.ci_high, "p_value": d.p_value, "n_tasks": d.n_tasks,
                         "verdict": d.verdict})
    table = pd.DataFrame(rows)
    if table.empty:
        return table
    table = holm_verdicts(table, level=0.95)
    table["verdict"] = table.pop("verdict_holm")
    table["comparisons"] = len(table)
    return table


__all__ = ["grid_edges_of", "meta_steps_row", "tuning_rows", "verdict_table"]
