"""The meta-learning core: fast weights, inner loops, MAML and its relatives, metric-based learners.

Works on any ``nn.Module`` and tensors; imports nothing of the data layer, the models or above.
"""

from metarec_ref.meta.functional import (
    FastWeights,
    InnerLR,
    NonFiniteInnerLoopError,
    ParamFilter,
    adapt_task,
    adapt_tasks,
    check_inner_loop_args,
    check_task_batch,
    expand_to_tasks,
    fast_weight_totals,
    gradient_outer_step,
    raise_if_not_finite,
    select_params,
)
from metarec_ref.meta.gradcheck import (
    GradCheck,
    check_meta_gradient,
)
from metarec_ref.meta.learners import (
    ALGORITHMS,
    Algorithm,
    MetaLearner,
    build_learner,
)
from metarec_ref.meta.losses import (
    LossFn,
    masked_bce_loss,
    masked_mse_loss,
)
from metarec_ref.meta.maml import (
    MAML,
    InnerLoopConfig,
    MetaSGD,
    Reptile,
    score_fast_weights,
)
from metarec_ref.meta.metric_based import (
    MatchingNet,
    ProtoNet,
    Prototypes,
    SupportSet,
    embed_events,
)
from metarec_ref.meta.sparse_embedding import (
    EMBEDDING_TYPES,
    ROW_WISE_MIN_ROWS,
    dense_tables,
    gather_rows,
    lookup_rows,
    mean_table_change,
    run_model,
    sparse_start,
    sparse_table_names,
    touched_ids,
    unique_rows,
)
from metarec_ref.meta.tracing import (
    MAX_TRACED_GRAPHS,
    TRACE_AFTER,
    BatchedTaskLoss,
    drop_identity_ops,
)

__all__ = [
    "ALGORITHMS",
    "EMBEDDING_TYPES",
    "MAML",
    "MAX_TRACED_GRAPHS",
    "ROW_WISE_MIN_ROWS",
    "TRACE_AFTER",
    "Algorithm",
    "BatchedTaskLoss",
    "FastWeights",
    "GradCheck",
    "InnerLR",
    "InnerLoopConfig",
    "LossFn",
    "MatchingNet",
    "MetaLearner",
    "MetaSGD",
    "NonFiniteInnerLoopError",
    "ParamFilter",
    "ProtoNet",
    "Prototypes",
    "Reptile",
    "SupportSet",
    "adapt_task",
    "adapt_tasks",
    "build_learner",
    "check_inner_loop_args",
    "check_meta_gradient",
    "check_task_batch",
    "dense_tables",
    "drop_identity_ops",
    "embed_events",
    "expand_to_tasks",
    "fast_weight_totals",
    "gather_rows",
    "gradient_outer_step",
    "lookup_rows",
    "mean_table_change",
    "masked_bce_loss",
    "masked_mse_loss",
    "raise_if_not_finite",
    "run_model",
    "score_fast_weights",
    "select_params",
    "sparse_start",
    "sparse_table_names",
    "touched_ids",
    "unique_rows",
]
