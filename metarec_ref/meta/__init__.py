"""The meta-learning core: fast weights, inner loops, MAML and its relatives, metric-based learners.

Works on any ``nn.Module`` and tensors; imports nothing of the data layer, the models or above.
"""

from metarec_ref.meta.functional import (
    adapt_task,
    adapt_tasks,
    check_inner_loop_args,
    check_task_batch,
    expand_to_tasks,
    fast_weight_totals,
    FastWeights,
    gradient_outer_step,
    InnerLR,
    NonFiniteInnerLoopError,
    ParamFilter,
    raise_if_not_finite,
    select_params,
)
from metarec_ref.meta.gradcheck import (
    check_meta_gradient,
    GradCheck,
)
from metarec_ref.meta.learners import (
    Algorithm,
    ALGORITHMS,
    build_learner,
    MetaLearner,
)
from metarec_ref.meta.losses import (
    LossFn,
    masked_bce_loss,
    masked_mse_loss,
)
from metarec_ref.meta.maml import (
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
from metarec_ref.meta.tracing import (
    BatchedTaskLoss,
    drop_identity_ops,
    MAX_TRACED_GRAPHS,
)

__all__ = [
    "adapt_task",
    "adapt_tasks",
    "Algorithm",
    "ALGORITHMS",
    "BatchedTaskLoss",
    "build_learner",
    "check_inner_loop_args",
    "check_meta_gradient",
    "check_task_batch",
    "drop_identity_ops",
    "embed_events",
    "expand_to_tasks",
    "fast_weight_totals",
    "FastWeights",
    "GradCheck",
    "gradient_outer_step",
    "InnerLoopConfig",
    "InnerLR",
    "LossFn",
    "MAML",
    "masked_bce_loss",
    "masked_mse_loss",
    "MatchingNet",
    "MAX_TRACED_GRAPHS",
    "MetaLearner",
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
