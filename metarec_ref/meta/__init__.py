"""The meta-learning core: fast weights, inner loops, MAML and its relatives, metric-based learners.

Works on any ``nn.Module`` and tensors; imports nothing of the data layer, the models or above.
This face holds what a chapter or a reader builds with; the modules hold the rest
(``meta.forward``: running a model on fast weights; ``meta.sparse_embedding``: row-wise tables;
``meta.tracing``: the batched and traced task loss).
"""

from metarec_ref.meta.fast_weights import (
    FastWeights,
    ParamFilter,
    select_params,
)
from metarec_ref.meta.forward import run_model
from metarec_ref.meta.functional import (
    NonFiniteInnerLoopError,
    inner_loop,
)
from metarec_ref.meta.gradcheck import (
    GradCheck,
    check_meta_gradient,
)
from metarec_ref.meta.learners import (
    ALGORITHMS,
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
)
from metarec_ref.meta.metric_based import (
    MatchingNet,
    ProtoNet,
)
from metarec_ref.meta.tracing import BatchedTaskLoss

__all__ = [
    "ALGORITHMS",
    "MAML",
    "BatchedTaskLoss",
    "FastWeights",
    "GradCheck",
    "InnerLoopConfig",
    "LossFn",
    "MatchingNet",
    "MetaLearner",
    "MetaSGD",
    "NonFiniteInnerLoopError",
    "ParamFilter",
    "ProtoNet",
    "Reptile",
    "build_learner",
    "check_meta_gradient",
    "inner_loop",
    "masked_bce_loss",
    "masked_mse_loss",
    "run_model",
    "select_params",
]
