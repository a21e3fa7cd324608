"""End-to-end pipelines: data to tasks, the cold-start experiment, the application shops, Online Retail,
the item-item and residual meta-learners, your own log.

This face holds what a chapter, a benchmark or a reader uses; the modules hold the rest. The
distributed command line is :mod:`metarec_ref.recipes.distributed_cli` (``python -m ...``).
"""

from metarec_ref.recipes.cold_start import (
    ColdStartConfig,
    run_cold_start,
)
from metarec_ref.recipes.item_item import (
    ItemItemConfig,
    ItemItemInputs,
    item_item_training_batch,
    meta_train_item_item,
    train_item_item_global,
    with_item_item_features,
)
from metarec_ref.recipes.online_retail import (
    ClassicalBaselines,
    ClassicalGrid,
    load_online_retail_with_report,
    ranking_table,
    stack_seeds,
)
from metarec_ref.recipes.new_product_experiment import (
    NewProductConfig,
    new_product_verdicts,
    run_new_products,
)
from metarec_ref.recipes.new_products import (
    GeneratorConfig,
    meta_train_generator,
    new_product_data,
)
from metarec_ref.recipes.own_log import (
    OwnLogConfig,
    run_own_log,
)
from metarec_ref.recipes.pipeline import (
    ColdStartCut,
    build_cold_start_tasks,
)
from metarec_ref.recipes.residual_meta import (
    ResidualConfig,
    feature_scale,
    first_products_tasks,
)
from metarec_ref.recipes.when_it_helps import (
    ToyComparisonConfig,
    compare_on_toy_shop,
    heterogeneity_shops,
)
from metarec_ref.recipes.residual_protocols import (
    ResidualExperiment,
    ScorerFits,
    mean_metric,
    protocol_data,
    residual_verdict_table,
    run_residual_cell,
)
from metarec_ref.recipes.scenarios import (
    auc_per_task,
    ci_table,
    cold_start_shop,
    curve_against_k,
    events_with_negatives,
    tuned_epochs,
)

__all__ = [
    "GeneratorConfig",
    "NewProductConfig",
    "meta_train_generator",
    "new_product_data",
    "new_product_verdicts",
    "run_new_products",
    "ClassicalBaselines",
    "ClassicalGrid",
    "ColdStartConfig",
    "ColdStartCut",
    "ItemItemConfig",
    "ItemItemInputs",
    "OwnLogConfig",
    "ResidualConfig",
    "ResidualExperiment",
    "ScorerFits",
    "ToyComparisonConfig",
    "auc_per_task",
    "build_cold_start_tasks",
    "ci_table",
    "cold_start_shop",
    "compare_on_toy_shop",
    "curve_against_k",
    "events_with_negatives",
    "feature_scale",
    "first_products_tasks",
    "heterogeneity_shops",
    "item_item_training_batch",
    "load_online_retail_with_report",
    "mean_metric",
    "meta_train_item_item",
    "protocol_data",
    "ranking_table",
    "residual_verdict_table",
    "run_cold_start",
    "run_own_log",
    "run_residual_cell",
    "stack_seeds",
    "train_item_item_global",
    "tuned_epochs",
    "with_item_item_features",
]
