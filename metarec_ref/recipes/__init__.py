"""End-to-end pipelines: the cold-start experiment, Online Retail, the distributed command line."""

from metarec_ref.recipes.cold_start import (
    BASELINES,
    ColdStartConfig,
    ColdStartResult,
    run_cold_start,
)
from metarec_ref.recipes.online_retail import (
    ClassicalBaselines,
    ClassicalGrid,
    CLEANING_STEPS,
    item_item_training_batch,
    ItemItemConfig,
    ItemItemInputs,
    load_online_retail_with_report,
    meta_train_item_item,
    online_retail_cleaning,
    ranking_table,
    session_eval_tasks,
    stack_seeds,
    train_item_item_global,
    with_item_item_features,
    with_support_items,
)
from metarec_ref.recipes.pipeline import (
    build_cold_start_tasks,
    COLD_START_STAGES,
    ColdStartTasks,
)

__all__ = [
    "BASELINES",
    "build_cold_start_tasks",
    "ClassicalBaselines",
    "ClassicalGrid",
    "CLEANING_STEPS",
    "COLD_START_STAGES",
    "ColdStartConfig",
    "ColdStartResult",
    "ColdStartTasks",
    "item_item_training_batch",
    "ItemItemConfig",
    "ItemItemInputs",
    "load_online_retail_with_report",
    "meta_train_item_item",
    "online_retail_cleaning",
    "ranking_table",
    "run_cold_start",
    "session_eval_tasks",
    "stack_seeds",
    "train_item_item_global",
    "with_item_item_features",
    "with_support_items",
]
