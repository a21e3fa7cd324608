"""Evaluation: metrics, per-task evaluation, results tables, paired statistics, baselines, classical recommenders, the oracle.

This face holds what a chapter, a benchmark or a reader uses; the modules hold the rest
(``eval.metrics``: every per-task metric; ``eval.item_similarity``: the sparse item-item blocks).
"""

from metarec_ref.eval.baselines import (
    FineTune,
    GlobalModel,
    ItemMean,
    Popularity,
    ScratchPerTask,
    SupervisedConfig,
    UserMean,
    pool_events,
    reinitialized,
    train_supervised,
    tune_fine_tuning,
)
from metarec_ref.eval.classical import (
    ItemKNN,
    RecentPopularity,
    SupportItems,
    cooccurrence,
    sparse_interactions,
    tune_hyperparameter,
)
from metarec_ref.eval.ease import (
    EASE,
    ease_fits,
)
from metarec_ref.eval.evaluate import (
    EvalTasks,
    Method,
    cold_start_eval_tasks,
    evaluate,
    evaluate_per_task,
    inner_steps_curve,
    per_task_metrics,
    results_table,
)
from metarec_ref.eval.family import (
    difference_row,
    family_rows,
    independent_bootstrap,
)
from metarec_ref.eval.metrics import (
    aggregate_seeds,
    bootstrap_ci,
    summarize,
    summarize_methods,
)
from metarec_ref.eval.oracle import SyntheticOracle
from metarec_ref.eval.paired import (
    VERDICTS,
    compare_to_best,
    holm_adjust,
    holm_verdicts,
    paired_bootstrap,
    paired_comparison,
    verdict,
    verdict_every_seed,
)

__all__ = [
    "EASE",
    "VERDICTS",
    "EvalTasks",
    "FineTune",
    "GlobalModel",
    "ItemKNN",
    "ItemMean",
    "Method",
    "Popularity",
    "RecentPopularity",
    "ScratchPerTask",
    "SupervisedConfig",
    "SupportItems",
    "SyntheticOracle",
    "UserMean",
    "aggregate_seeds",
    "bootstrap_ci",
    "cold_start_eval_tasks",
    "compare_to_best",
    "cooccurrence",
    "difference_row",
    "ease_fits",
    "evaluate",
    "evaluate_per_task",
    "family_rows",
    "holm_adjust",
    "holm_verdicts",
    "independent_bootstrap",
    "inner_steps_curve",
    "paired_bootstrap",
    "paired_comparison",
    "per_task_metrics",
    "pool_events",
    "reinitialized",
    "results_table",
    "sparse_interactions",
    "summarize",
    "summarize_methods",
    "train_supervised",
    "tune_fine_tuning",
    "tune_hyperparameter",
    "verdict",
    "verdict_every_seed",
]
