"""End-to-end pipelines: data to tasks, the cold-start experiment, your own log, Online Retail.

The distributed command line is :mod:`metarec_ref.recipes.distributed_cli` (``python -m ...``).
"""

from metarec_ref.recipes.cold_start import (
    BASELINES,
    ColdStartConfig,
    ColdStartResult,
    run_cold_start,
)
from metarec_ref.recipes.item_item import (
    ItemItemConfig,
    ItemItemInputs,
    item_item_training_batch,
    meta_train_item_item,
    train_item_item_global,
    with_item_item_features,
    with_support_items,
)
from metarec_ref.recipes.online_retail import (
    CLEANING_STEPS,
    ClassicalBaselines,
    ClassicalGrid,
    load_online_retail_with_report,
    online_retail_cleaning,
    ranking_table,
    session_eval_tasks,
    stack_seeds,
)
from metarec_ref.recipes.own_log import (
    OwnLogConfig,
    OwnLogResult,
    run_own_log,
    tuned_grid_edges,
    verdict_table,
)
from metarec_ref.recipes.own_log_methods import (
    LEARNER_NAMES,
    Fitted,
)
from metarec_ref.recipes.pipeline import (
    COLD_START_STAGES,
    ColdStartTasks,
    build_cold_start_tasks,
)
from metarec_ref.recipes.residual_meta import (
    RankingTasks,
    ResidualConfig,
    ScorerBank,
    feature_scale,
    first_products_tasks,
    meta_train_residual,
    residual_metrics,
)
from metarec_ref.recipes.residual_protocols import (
    ResidualExperiment,
    ScorerFits,
    mean_metric,
    protocol_data,
    residual_verdict_table,
    run_residual_cell,
    split_customers,
)
from metarec_ref.recipes.scenarios import (
    Shop,
    auc_per_task,
    ci_table,
    cold_start_shop,
    curve_against_k,
    events_with_negatives,
    summary_rows,
    tuned_epochs,
    tuned_fine_tuning,
)

__all__ = [
    "feature_scale",
    "mean_metric",
    "residual_verdict_table",
    "Shop",
    "auc_per_task",
    "ci_table",
    "cold_start_shop",
    "curve_against_k",
    "events_with_negatives",
    "summary_rows",
    "tuned_epochs",
    "tuned_fine_tuning",
    "BASELINES",
    "build_cold_start_tasks",
    "ClassicalBaselines",
    "ClassicalGrid",
    "CLEANING_STEPS",
    "COLD_START_STAGES",
    "ColdStartConfig",
    "ColdStartResult",
    "ColdStartTasks",
    "first_products_tasks",
    "item_item_training_batch",
    "ItemItemConfig",
    "ItemItemInputs",
    "LEARNER_NAMES",
    "meta_train_residual",
    "OwnLogConfig",
    "OwnLogResult",
    "Fitted",
    "load_online_retail_with_report",
    "meta_train_item_item",
    "online_retail_cleaning",
    "protocol_data",
    "ranking_table",
    "RankingTasks",
    "residual_metrics",
    "ResidualConfig",
    "ResidualExperiment",
    "run_cold_start",
    "run_own_log",
    "run_residual_cell",
    "ScorerBank",
    "ScorerFits",
    "split_customers",
    "tuned_grid_edges",
    "verdict_table",
    "session_eval_tasks",
    "stack_seeds",
    "train_item_item_global",
    "with_item_item_features",
    "with_support_items",
]
