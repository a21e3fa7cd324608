"""The new-products experiment: every method, tuned on validation products, scored on test products.

Per support size ``K`` and training seed, :func:`run_new_products` fits the customer tables,
tunes every opponent of :mod:`metarec_ref.recipes.new_product_opponents` on the validation
products, meta-trains the Meta-Embedding generator (starting from the content regression's map,
:func:`~metarec_ref.recipes.new_products.meta_train_generator`) and keeps each method's per-product
NDCG@10 on the test products. :func:`new_product_verdicts` compares, per ``K``, the meta-learner
against the opponent best on validation and against its own cold embedding (no warm-up), paired
over products and seeds, with Holm over the whole family.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from metarec_ref.data.new_products import BuyerTasks
from metarec_ref.eval.metrics import per_task_ndcg
from metarec_ref.eval.paired import holm_verdicts, paired_bootstrap
from metarec_ref.models.meta_embedding import MetaEmbedding
from metarec_ref.recipes.new_product_opponents import (
    ContentRidge,
    activity_scores,
    content_knn_scores,
    content_similarity,
    customer_similarity,
    kshot_scores,
    mean_ndcg,
    with_tie_break,
)
from metarec_ref.recipes.new_products import (
    CustomerTables,
    GeneratorConfig,
    NewProductData,
    fit_customer_tables,
    meta_train_generator,
)
from metarec_ref.runtime import bracketed_search

META = "Meta-Embedding + warm-up"
META_COLD = "Meta-Embedding, cold"
SEEDED = ("regression generator + fine-tuning", META, META_COLD)  # methods that vary with the seed


@dataclass
class NewProductConfig:
    """Seeds, customer tables, the meta-learner and every opponent's starting grid."""

    n_seeds: int = 2
    dim: int = 32
    table_steps: int = 300
    generator: GeneratorConfig = field(default_factory=GeneratorConfig)
    half_lives: tuple = (30.0, 90.0, 365.0, math.inf)  # days; inf: plain counts
    neighbours: tuple = (10, 40, 160, 640)
    ridge_penalties: tuple = (1.0, 10.0, 100.0)
    shrinkage: tuple = (0.3, 1.0, 3.0, 10.0, math.inf)  # beta of K / (K + beta); inf: the prior alone
    fine_tune_lr: tuple = (0.03, 0.1, 0.3, 1.0)
    fine_tune_steps: tuple = (1, 3, 10)


@dataclass
class KResult:
    """One support size: per method the validation NDCG@10 (mean over seeds), the test per-product
    NDCG@10 ``(seeds, products)``, the tuned values and the edges they still sit on."""

    k: int
    n_test: int
    valid: dict[str, float] = field(default_factory=dict)
    test: dict[str, np.ndarray] = field(default_factory=dict)
    tuned: dict[str, str] = field(default_factory=dict)
    edges: dict[str, str] = field(default_factory=dict)

    @property
    def opponents(self) -> list[str]:
        return [name for name in self.valid if name not in (META, META_COLD)]

    @property
    def best_opponent(self) -> str:
        """The opponent with the best validation NDCG@10 (never chosen on test products)."""
        return max(self.opponents, key=self.valid.get)


def _ndcg(scores: Tensor, tasks: BuyerTasks) -> np.ndarray:
    return per_task_ndcg(scores, tasks.relevant, tasks.candidates, k=10).numpy()


def _deterministic(data: NewProductData, k: int, config: NewProductConfig, ridge: ContentRidge, bought: Tensor,
                  customers: Tensor | None, result: KResult) -> None:
    """The opponents that do not depend on the seed (``customers``: :func:`customer_similarity`)."""
    valid, test = data.tasks["valid", k], data.tasks["test", k]
    content = {"valid": data.task_content("valid", k), "test": data.task_content("test", k)}

    def activity(half_life, tasks):
        return activity_scores(data.days_ago, data.line_codes, data.n_codes, half_life).expand(tasks.num_tasks, -1)

    half_life, _, edge = bracketed_search("half_life", config.half_lives, lambda h: mean_ndcg(activity(h, valid), valid),
                              natural_bounds=(0.0, math.inf))
    active = activity_scores(data.days_ago, data.line_codes, data.n_codes, half_life)
    similarity = {part: content_similarity(content[part], data.content["train"]) for part in content}
    scorers = {
        "activity": lambda part, tasks, _: activity(half_life, tasks),
        "content-kNN": lambda part, tasks, n: with_tie_break(content_knn_scores(similarity[part], bought, n),
                                                             active, tasks.candidates),
        "content regression": lambda part, tasks, lam: with_tie_break(ridge.predict(content[part], bought, lam),
                                                                      active, tasks.candidates),
    }
    chosen = {"activity": half_life}
    result.tuned["activity"] = f"half-life {half_life:g} days"
    if edge:
        result.edges["activity"] = edge
    for name, grid, label, bounds in (("content-kNN", config.neighbours, "neighbours", (1, len(bought))),
                                      ("content regression", config.ridge_penalties, "lambda", (0.0, None))):
        value, _, edge = bracketed_search(name, grid, lambda v, s=scorers[name]: mean_ndcg(s("valid", valid, v), valid),
                              natural_bounds=bounds)
        chosen[name] = value
        result.tuned[name] = f"{label} {value:g}"
        if edge:
            result.edges[name] = edge
    for name, scorer in scorers.items():
        result.valid[name] = mean_ndcg(scorer("valid", valid, chosen[name]), valid)
        result.test[name] = _ndcg(scorer("test", test, chosen[name]), test)[None]
    if k:  # the first buyers' evidence, blended with the content prior best on validation
        prior = max(scorers, key=result.valid.get)
        priors = {part: scorers[prior](part, tasks, chosen[prior]) for part, tasks in (("valid", valid), ("test", test))}
        name = "first buyers + content prior"
        beta, _, edge = bracketed_search(name, config.shrinkage, lambda b: mean_ndcg(kshot_scores(
            customers, valid.support, priors["valid"], valid.candidates, b), valid), natural_bounds=(0.0, math.inf))
        result.valid[name] = mean_ndcg(kshot_scores(customers, valid.support, priors["valid"], valid.candidates, beta), valid)
        result.test[name] = _ndcg(kshot_scores(customers, test.support, priors["test"], test.candidates, beta), test)[None]
        result.tuned[name] = f"prior {prior}, beta {beta:g}"
        if edge:
            result.edges[name] = edge


def _seeded(data: NewProductData, k: int, config: NewProductConfig, tables: CustomerTables, ridge: ContentRidge,
            seed: int, result: KResult, valid_scores: dict[str, list], test_scores: dict[str, list]) -> None:
    """The regression generator with fine-tuning, and the meta-learner, on one seed's customer tables."""
    valid, test = data.tasks["valid", k], data.tasks["test", k]
    content = {"valid": data.task_content("valid", k), "test": data.task_content("test", k)}
    plain = MetaEmbedding(tables.customer_emb, tables.customer_bias, data.content["train"].shape[1])
    lam, _, edge = bracketed_search("generator lambda", config.ridge_penalties,
                     lambda lam: mean_ndcg(plain.scores(ridge.predict(content["valid"], tables.product_emb, lam)), valid),
                     natural_bounds=(0.0, None))
    cold = {part: ridge.predict(content[part], tables.product_emb, lam) for part in content}
    name = "regression generator + fine-tuning"
    if edge:
        result.edges[f"{name} lambda"] = edge
    if k:  # steps (0: the cold embedding) and, for each count, the step size, both bracketed
        step_sizes, lr_edges = {0: 0.0}, {}

        def fine_tuned(steps):
            if steps == 0:
                return mean_ndcg(plain.scores(cold["valid"]), valid)
            step_sizes[steps], scores, lr_edges[steps] = bracketed_search(f"{name} lr", config.fine_tune_lr, lambda lr: mean_ndcg(
                plain.scores(plain.warm_up(cold["valid"], valid.support, steps, lr=lr)), valid), natural_bounds=(0.0, None))
            return scores[step_sizes[steps]]

        steps, scores, edge = bracketed_search(f"{name} steps", (0, *config.fine_tune_steps), fine_tuned, natural_bounds=(0, None))
        lr, value = step_sizes[steps], scores[steps]
        for what, where in ((f"{name} steps", edge), (f"{name} lr", lr_edges.get(steps))):
            if where:  # only the chosen configuration's edges count
                result.edges[what] = where
    else:
        lr, steps, value = 0.0, 0, mean_ndcg(plain.scores(cold["valid"]), valid)
    valid_scores[name].append(value)
    test_scores[name].append(_ndcg(plain.scores(plain.warm_up(cold["test"], test.support, steps, lr=lr)), test))
    if name not in result.tuned:  # the first seed's choice (each seed tunes its own)
        result.tuned[name] = f"lambda {lam:g}" + (f", lr {lr:g}, {steps} steps" if k else ", no support: no steps")
        result.tuned[name] += " (first seed)"
    model, best = meta_train_generator(tables, data.task_content("train", k), data.tasks["train", k], content["valid"],
                                       valid, config.generator, seed=seed, start=ridge.primal(tables.product_emb, lam))
    warm_steps = config.generator.warm_up_steps if k else 0
    valid_scores[META].append(best)
    with torch.no_grad():
        generated = model.generate(content["test"])
        valid_scores[META_COLD].append(mean_ndcg(model.scores(model.generate(content["valid"])), valid))
    test_scores[META].append(_ndcg(model.scores(model.warm_up(generated, test.support, warm_steps)), test))
    test_scores[META_COLD].append(_ndcg(model.scores(generated), test))


def run_new_products(data: NewProductData, k_values, config: NewProductConfig, seed: int = 0) -> dict[int, KResult]:
    """Every method at each ``K`` (module docstring); test NDCG@10 per seed and product."""
    k_values = list(k_values)
    tables = [fit_customer_tables(data.bought, dim=config.dim, steps=config.table_steps, seed=seed + s)
              for s in range(config.n_seeds)]
    ridge = ContentRidge(data.content["train"])  # one eigendecomposition for every K, seed and penalty
    bought = data.bought.to(torch.float32)  # one tensor, so the ridge projects it once
    # customer x customer similarity, shared by every K > 0 (K = 0 has no first buyers to compare with)
    customers = customer_similarity(data.bought) if any(k > 0 for k in k_values) else None
    results = {}
    for k in k_values:
        if data.tasks["test", k].num_tasks == 0 or data.tasks["valid", k].num_tasks == 0:
            raise ValueError(f"no validation or test product has more than K={k} known buyers: lower K or move the cut")
        result = KResult(k, data.tasks["test", k].num_tasks)
        _deterministic(data, k, config, ridge, bought, customers, result)
        valid_scores, test_scores = {name: [] for name in SEEDED}, {name: [] for name in SEEDED}
        for s in range(config.n_seeds):
            _seeded(data, k, config, tables[s], ridge, seed + s, result, valid_scores, test_scores)
        for name in SEEDED:
            result.valid[name] = float(np.mean(valid_scores[name]))
            result.test[name] = np.stack(test_scores[name])
        results[k] = result
    return results


def new_product_verdicts(results: dict[int, KResult], n_boot: int = 2000, seed: int = 0) -> pd.DataFrame:
    """Per ``K``: the meta-learner against the best opponent (chosen on validation) and against its
    cold embedding, paired over products and seeds; Holm over every row (K = 0 has no warm-up,
    so no second row)."""
    rows = []
    for k, result in results.items():
        pairs = [("meta_vs_best_opponent", result.best_opponent)] + ([("meta_vs_cold_generator", META_COLD)] if k else [])
        for comparison, against in pairs:
            d = paired_bootstrap(result.test[META], result.test[against], n_boot=n_boot, seed=seed)
            rows.append({"K": k, "comparison": comparison, "against": against, "n_test": result.n_test,
                         "diff": d.mean, "ci_low": d.ci_low, "ci_high": d.ci_high, "p_value": d.p_value,
                         "verdict": d.verdict})
    return holm_verdicts(pd.DataFrame(rows))


def verdicts_json(results: dict[int, KResult], table: pd.DataFrame) -> dict:
    """Per K: both comparisons as ``{diff, ci_low, ci_high, p_holm, verdict}``, the opponent's name
    and the number of test products (the benchmark's JSON). At K = 0 the cold comparison is the
    model against itself: difference 0, no test."""
    out = {}
    for k, result in results.items():
        entry = {"best_opponent": result.best_opponent, "n_test_products": result.n_test,
                 "test_ndcg": {name: float(np.nanmean(values)) for name, values in result.test.items()},
                 "valid_ndcg": dict(result.valid), "tuned": dict(result.tuned)}
        for comparison in ("meta_vs_best_opponent", "meta_vs_cold_generator"):
            row = table[(table["K"] == k) & (table["comparison"] == comparison)]
            if len(row):
                r = row.iloc[0]
                entry[comparison] = {"diff": float(r["diff"]), "ci_low": float(r["ci_low"]), "ci_high": float(r["ci_high"]),
                                     "p_holm": float(r["p_holm"]), "verdict": r["verdict_holm"]}
            else:
                entry[comparison] = {"diff": 0.0, "ci_low": 0.0, "ci_high": 0.0, "p_holm": 1.0,
                                     "verdict": "no detectable difference", "note": "K = 0: no warm-up, the same model"}
        out[f"K={k}"] = entry
    return out


__all__ = ["META", "META_COLD", "KResult", "NewProductConfig", "new_product_verdicts", "run_new_products",
           "verdicts_json"]
