"""The meta-learning core: fast weights, inner loops, MAML and its relatives, metric-based learners.

Works on any ``nn.Module`` and tensors; imports nothing of the data layer, the models or above.
"""

from metarec_ref.meta.functional import (
    adapt_task,
    adapt_tasks,
    BatchedTaskLoss,
    check_inner_loop_args,
    check_task_batch,
    drop_identity_ops,
    expand_to_tasks,
    fast_weight_totals,
    FastWeights,
    InnerLR,
    LossFn,
    masked_bce_loss,
    masked_mse_loss,
    NonFiniteInnerLoopError,
    ParamFilter,
    raise_if_not_finite,
    select_params,
)
from metarec_ref.meta.gradcheck import (
    check_meta_gradient,
    GradCheck,
)
from metarec_ref.meta.maml import (
    FOMAML,
    InnerLoopConfig,
    MAML,
    MetaSGD,
    Reptile,
    score_fast_weights,
)
from metarec_ref.meta.metric_based import (
    embed_events,
    MatchingNet,
    ProtoNet,
    Prototypes,
    SupportSet,
)

__all__ = [
    "adapt_task",
    "adapt_tasks",
    "BatchedTaskLoss",
    "check_inner_loop_args",
    "check_meta_gradient",
    "check_task_batch",
    "drop_identity_ops",
    "embed_events",
    "expand_to_tasks",
    "fast_weight_totals",
    "FastWeights",
    "FOMAML",
    "GradCheck",
    "InnerLoopConfig",
    "InnerLR",
    "LossFn",
    "MAML",
    "masked_bce_loss",
    "masked_mse_loss",
    "MatchingNet",
    "MetaSGD",
    "NonFiniteInnerLoopError",
    "ParamFilter",
    "ProtoNet",
    "Prototypes",
    "raise_if_not_finite",
    "Reptile",
    "score_fast_weights",
    "select_params",
    "SupportSet",
]
