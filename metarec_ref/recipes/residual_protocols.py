"""The residual meta-learner against the classical scorers, protocol by protocol, with paired verdicts.

Protocols (``"<customers>/<task>"``):

- customers ``heldout``: customers split at random 80/10/10 into training, validation and test
  (:func:`split_customers`); ``time_cut``: new customers after a time cut
  (:func:`~metarec_ref.data.splits.temporal_cold_start_split`);
- task ``next_products``: first ``K`` distinct products, then the next up to ``n_query`` new ones
  (:func:`~metarec_ref.recipes.residual_meta.first_products_tasks`); ``basket``: basket completion;
  ``next_basket``: the next invoice (:mod:`metarec_ref.data.sessions`).

:func:`run_residual_cell` does one protocol and ``K``: the classical scorers are tuned on
validation customers, the unadapted score is the best of them or a global mixture (chosen on
validation), the residual is meta-trained for each inner-step count of the grid, and validation
also decides between those and **zero steps** (the unadapted score itself). Test customers are
scored once; the meta-learner's values carry every training seed, so the paired bootstrap of
:func:`~metarec_ref.eval.paired.paired_bootstrap` resamples seeds and customers. The reference of
``meta_vs_best_classical`` is the single scorer best on validation customers, never on test.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from metarec_ref.data.encoders import Encoders
from metarec_ref.data.sessions import build_basket_tasks, build_next_session_tasks
from metarec_ref.data.negatives import NegativeSampling
from metarec_ref.data.splits import split_users, temporal_cold_start_split
from metarec_ref.eval.classical import ItemKNN, RecentPopularity, cooccurrence
from metarec_ref.eval.ease import EASE
from metarec_ref.eval.evaluate import EvalTasks
from metarec_ref.eval.paired import holm_verdicts, paired_bootstrap
from metarec_ref.models.residual_mixture import ResidualMixture
from metarec_ref.recipes.online_retail import (
    ClassicalBaselines,
    ClassicalGrid,
)
from metarec_ref.recipes.residual_meta import (
    RankingTasks,
    ResidualConfig,
    ScorerBank,
    feature_scale,
    first_products_tasks,
    meta_train_residual,
    per_task_ranking,
    residual_metrics,
)

TASKS = ("next_products", "basket", "next_basket")
CUSTOMERS = ("heldout", "time_cut")
METRIC = "ndcg@10"
_SESSION_BUILDERS = {"basket": build_basket_tasks, "next_basket": build_next_session_tasks}


def split_customers(events: pd.DataFrame, fractions: Sequence[float] = (0.8, 0.1, 0.1),
                    seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Events of a random ``fractions`` split of the customers: ``(train, valid, test)``."""
    if len(fractions) != 3 or abs(sum(fractions) - 1) > 1e-9 or min(fractions) <= 0:
        raise ValueError(f"fractions must be three positive shares summing to 1, got {tuple(fractions)}")
    users = np.random.default_rng(seed).permutation(np.sort(pd.unique(events["user_id"])))
    cuts = np.cumsum(fractions)[:2] * len(users)
    parts = np.split(users, cuts.astype(int))
    return tuple(events[events["user_id"].isin(p)] for p in parts)  # type: ignore[return-value]


@dataclass
class ProtocolData:
    """One protocol's events: scorers fit on ``train``; meta-training tasks come from
    ``task_events`` with scorers fit on ``fit_events`` (other training customers)."""

    customers: str
    train: pd.DataFrame
    valid: pd.DataFrame
    test: pd.DataFrame
    encoders: Encoders
    available: Tensor
    history: pd.DataFrame
    fit_events: pd.DataFrame
    task_events: pd.DataFrame


def protocol_data(events: pd.DataFrame, customers: str, seed: int = 0, cut_quantile: float = 0.8,
                  task_user_fraction: float = 0.3) -> ProtocolData:
    """Split a validated log for ``customers`` = ``"heldout"`` or ``"time_cut"``."""
    if customers == "heldout":
        train, valid, test = split_customers(events, seed=seed)
        encoders = Encoders.fit(train)
        available = encoders.catalog().available()
    elif customers == "time_cut":
        split = temporal_cold_start_split(events, cut_quantile)
        train, valid, test = split.train, split.valid, split.test
        encoders = Encoders.fit(train)
        available = encoders.catalog().available(split.cut_time)
    else:
        raise ValueError(f"customers must be one of {CUSTOMERS}, got {customers!r}")
    fit_events, task_events = split_users(train, (task_user_fraction,), seed=seed)
    return ProtocolData(customers, train, valid, test, encoders, available, events, fit_events, task_events)


def protocol_tasks(task: str, part: pd.DataFrame, k: int, n_query: int, data: ProtocolData,
                   max_support: int = 30) -> RankingTasks | None:
    """Full-ranking tasks of one part (``data.valid``, ...) for ``task`` in :data:`TASKS`; None if empty."""
    if task == "next_products":
        tasks = first_products_tasks(part, data.encoders, k, n_query, data.available)
    elif task in _SESSION_BUILDERS:
        if "session_id" not in part.columns:
            raise ValueError(f"task {task!r} needs a 'session_id' column (invoices); use 'next_products'")
        built = _SESSION_BUILDERS[task](part, k, n_query, negatives=NegativeSampling(history=data.history))
        tasks = (RankingTasks.from_eval_tasks(EvalTasks.from_tasks(built, data.encoders, candidates=data.available),
                                              max_support) if built.num_tasks else None)
    else:
        raise ValueError(f"task must be one of {TASKS}, got {task!r}")
    if tasks is not None:
        tasks = tasks.select(tasks.relevant.any(1))
    return tasks if tasks is not None and tasks.num_tasks else None


def mean_metric(values: dict[str, Tensor]) -> float:
    return float(np.nanmean(values[METRIC].numpy()))


def _tune(methods: dict, tasks: RankingTasks, item_item: bool):
    """The grid value of ``methods`` with the best validation NDCG@10."""
    def score(method):
        if item_item:
            return method.catalogue_scores(tasks.support, tasks.support_mask)
        return method.scores[None, :].expand(tasks.num_tasks, -1)
    means = {value: mean_metric(per_task_ranking(score(m), tasks, hit_rate=False)) for value, m in methods.items()}
    best = max(means, key=means.get)
    return best, methods[best]


def tune_bank(classical: ClassicalBaselines, val: RankingTasks) -> tuple[ScorerBank, dict]:
    """Item-kNN shrinkage, EASE lambda and recent-popularity window chosen on validation tasks."""
    shrink, knn = _tune(classical.knn, val, True)
    lam, ease = _tune(classical.ease, val, True)
    window, recent = _tune({w: m for w, m in classical.recent.items() if w is not None}, val, False)
    return ScorerBank.from_methods(knn, ease, recent, classical.popularity), {
        "shrinkage": shrink, "lambda": lam, "window_days": window}


def tune_global_mixture(bank: ScorerBank, val: RankingTasks, scale: Tensor, best: int,
                        grid: Sequence[float] = (0.1, 0.3, 1.0, 3.0),
                        passes: int = 1) -> tuple[Tensor, float]:
    """Global mixture weights by coordinate ascent on validation NDCG@10, from the best scorer
    alone; weight ``i`` tries ``g * scale_i / scale_best`` for ``g`` in ``grid`` (equal standardised
    weights at ``g = 1``). Returns weights in the features' units and their validation NDCG@10."""
    features = bank.features(val.support, val.support_mask)  # (tasks, n_items, F)

    def ndcg(w: Tensor) -> float:
        return mean_metric(per_task_ranking((features * w).sum(-1), val, hit_rate=False))

    weights = torch.zeros(bank.n_features)
    weights[best] = 1.0
    value = ndcg(weights)
    for _ in range(passes):
        for i in range(bank.n_features):
            if i == best:
                continue
            for g in grid:
                trial = weights.clone()
                trial[i] = g * scale[best] / scale[i]
                trial_value = ndcg(trial)
                if trial_value > value + 1e-12:
                    weights, value = trial, trial_value
    return weights, value


@dataclass
class ResidualExperiment:
    """Everything tuned or trained on validation: scorer grids, inner-step grid, seeds, bootstrap."""

    grid: ClassicalGrid = field(default_factory=lambda: ClassicalGrid((0.0, 5.0, 20.0, 100.0), (50.0, 200.0, 1000.0, 5000.0),
                                                                      (7, 30, 90, None)))
    inner_steps_grid: Sequence[int] = (1,)
    residual: ResidualConfig = field(default_factory=lambda: ResidualConfig(meta_steps=60, eval_every=20))
    n_seeds: int = 3
    n_query: int = 10
    n_boot: int = 2000
    max_train_tasks: int | None = 500  # meta-training customers drawn at random (runtime)


@dataclass
class CellResult:
    """One protocol and K: per-task test values, what validation chose, the two verdicts."""

    values: dict[str, dict[str, Tensor]]  # method -> metric -> (tasks,) or (seeds, tasks)
    chosen: dict
    comparisons: dict[str, dict]


def _subsample(tasks: RankingTasks, limit: int | None, seed: int) -> RankingTasks:
    if limit is None or tasks.num_tasks <= limit:
        return tasks
    keep = torch.randperm(tasks.num_tasks, generator=torch.Generator().manual_seed(seed))[:limit]
    return tasks.select(keep.sort().values)


def run_residual_cell(data: ProtocolData, task: str, k: int, classical: ClassicalBaselines,
                      classical_fit: ScorerFits, experiment: ResidualExperiment,
                      seed: int = 0) -> CellResult | None:
    """One protocol cell (see the module docstring); None when a part has no task.

    classical: the scorers' grid fitted on ``data.train``; classical_fit: :class:`ScorerFits` on
    ``data.fit_events``, for the meta-training tasks' features (no customer scores itself).
    """
    val = protocol_tasks(task, data.valid, k, experiment.n_query, data)
    test = protocol_tasks(task, data.test, k, experiment.n_query, data)
    train = protocol_tasks(task, data.task_events, k, experiment.n_query, data)
    if val is None or test is None or train is None:
        return None
    train = _subsample(train, experiment.max_train_tasks, seed)
    bank, tuned = tune_bank(classical, val)
    singles = {name: mean_metric(residual_metrics(_one_hot(bank, j), bank, val, 0, hit_rate=False))
               for j, name in enumerate(bank.names)}
    best = max(range(bank.n_features), key=lambda j: singles[bank.names[j]])
    features = bank.features(train.support[:256], train.support_mask[:256])
    scale = feature_scale(features, train.candidates[:256])
    mixture, mixture_val = tune_global_mixture(bank, val, scale, best)
    base_name = "global mixture" if mixture_val > singles[bank.names[best]] else bank.names[best]
    base = mixture if base_name == "global mixture" else _one_hot(bank, best).base
    train_bank = classical_fit.bank(tuned)
    # Validation picks the inner steps, 0 (the unadapted score) included; seed `seed` decides.
    val_by_steps = {0: max(mixture_val, singles[bank.names[best]])}
    models, val_vs_none = {}, {}
    unadapted = ResidualMixture(base, scale, bank.n_items, emb_dim=0)  # the base score, on validation and test
    base_on_val = residual_metrics(unadapted, bank, val, 0, hit_rate=False)[METRIC]
    for steps in experiment.inner_steps_grid:
        config = replace(experiment.residual, inner_steps=steps)
        models[steps], val_by_steps[steps] = meta_train_residual(base, scale, train_bank, train, bank, val, config, seed)
        # Does the trained learner do harm? Its adapted score against zero steps, paired over validation customers.
        adapted = residual_metrics(models[steps], bank, val, steps, experiment.residual.max_slots, hit_rate=False)[METRIC]
        d = paired_bootstrap(adapted, base_on_val, n_boot=experiment.n_boot, seed=seed)
        val_vs_none[steps] = {"diff": d.mean, "ci_low": d.ci_low, "ci_high": d.ci_high, "verdict": d.verdict,
                              "p_value": d.p_value}
    steps = max(val_by_steps, key=val_by_steps.get)
    values = {name: residual_metrics(_one_hot(bank, j), bank, test, 0) for j, name in enumerate(bank.names)}
    values["unadapted"] = residual_metrics(unadapted, bank, test, 0)
    per_seed = []
    for s in range(experiment.n_seeds):
        if steps == 0:
            per_seed.append(values["unadapted"])
            continue
        model = models[steps] if s == 0 else meta_train_residual(
            base, scale, train_bank, train, bank, val, replace(experiment.residual, inner_steps=steps), seed + s)[0]
        per_seed.append(residual_metrics(model, bank, test, steps, experiment.residual.max_slots))
    values["meta"] = {m: torch.stack([v[m] for v in per_seed]) for m in per_seed[0]}
    reference = max(bank.names, key=singles.get)  # chosen on validation customers, like everything else
    comparisons = {}
    for key, other in (("meta_vs_best_classical", reference), ("meta_vs_unadapted", "unadapted")):
        d = paired_bootstrap(values["meta"][METRIC], values[other][METRIC], n_boot=experiment.n_boot, seed=seed)
        comparisons[key] = {"diff": d.mean, "ci_low": d.ci_low, "ci_high": d.ci_high, "verdict": d.verdict,
                            "p_value": d.p_value, "reference": other}
    chosen = {**tuned, "base": base_name, "inner_steps": steps, "val_ndcg_by_steps": val_by_steps,
              "val_adapted_vs_unadapted": val_vs_none,
              "val_ndcg_singles": singles, "n_train": train.num_tasks, "n_valid": val.num_tasks,
              "n_test": test.num_tasks}
    return CellResult(values, chosen, comparisons)


def _one_hot(bank: ScorerBank, j: int) -> ResidualMixture:
    """The scorer ``j`` alone, as a model with nothing to adapt."""
    base = torch.zeros(bank.n_features)
    base[j] = 1.0
    return ResidualMixture(base, torch.ones(bank.n_features), bank.n_items, emb_dim=0)


class ScorerFits:
    """Scorers fitted on ``events`` for single tuned values, each fitted once and cached."""

    def __init__(self, events: pd.DataFrame, encoders: Encoders):
        self.events, self.encoders, self._cache = events, encoders, {}
        self._gram = cooccurrence(events, encoders)

    def _get(self, key, make):
        if key not in self._cache:
            self._cache[key] = make()
        return self._cache[key]

    def bank(self, tuned: dict) -> ScorerBank:
        """A :class:`ScorerBank` for ``tuned`` (``shrinkage``, ``lambda``, ``window_days``)."""
        knn = self._get(("knn", tuned["shrinkage"]),
                        lambda: ItemKNN.from_cooccurrence(self._gram, tuned["shrinkage"], neighbors=None))
        ease = self._get(("ease", tuned["lambda"]), lambda: EASE.from_cooccurrence(self._gram, tuned["lambda"]))
        recent = self._get(("recent", tuned["window_days"]),
                           lambda: RecentPopularity.fit(self.events, self.encoders, window_days=tuned["window_days"]))
        popularity = self._get(("recent", None),
                               lambda: RecentPopularity.fit(self.events, self.encoders, window_days=None))
        return ScorerBank.from_methods(knn, ease, recent, popularity)


def residual_verdict_table(results: dict[tuple[str, int], CellResult]) -> pd.DataFrame:
    """One row per (protocol, K, comparison) with the CI, verdict, Holm-adjusted p-value and the
    verdict that survives it (family: every row of the same comparison)."""
    rows = [{"protocol": protocol, "K": k, "comparison": key, **{c: v for c, v in cmp.items()}}
            for (protocol, k), cell in results.items() for key, cmp in cell.comparisons.items()]
    return holm_verdicts(pd.DataFrame(rows), by="comparison")


__all__ = [
    "CUSTOMERS",
    "TASKS",
    "CellResult",
    "ProtocolData",
    "ResidualExperiment",
    "ScorerFits",
    "protocol_data",
    "protocol_tasks",
    "run_residual_cell",
    "split_customers",
    "tune_bank",
    "tune_global_mixture",
    "residual_verdict_table",
]
