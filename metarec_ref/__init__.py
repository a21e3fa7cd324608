"""metarec_ref: the tested meta-learning library behind the metarec book.

One module per concept: ``maml`` / ``functional`` (fast weights, MAML, first-order MAML,
Meta-SGD, Reptile), ``metric_based`` (Prototypical and Matching Networks), ``data`` / ``loaders``
/ ``synthetic`` / ``tasks`` / ``protocol`` (event logs to tasks), ``models``, ``baselines``,
``metrics``, ``train``, ``evaluate``, ``plotting``, ``nb`` (notebook helpers).
"""

from metarec_ref.batch import FeatureSpec, Features, TaskBatch
from metarec_ref.functional import FastWeights, masked_bce_loss, masked_mse_loss, select_params
from metarec_ref.maml import FOMAML, MAML, InnerLoopConfig, MetaSGD, Reptile
from metarec_ref.metric_based import MatchingNet, ProtoNet
from metarec_ref.nb import default_device, glue, resolve_device, seed_everything

__version__ = "0.1.0"

__all__ = [
    "FOMAML",
    "FastWeights",
    "FeatureSpec",
    "Features",
    "InnerLoopConfig",
    "MAML",
    "MatchingNet",
    "MetaSGD",
    "ProtoNet",
    "Reptile",
    "TaskBatch",
    "default_device",
    "glue",
    "masked_bce_loss",
    "masked_mse_loss",
    "resolve_device",
    "seed_everything",
    "select_params",
]
