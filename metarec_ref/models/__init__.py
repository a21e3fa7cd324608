"""Recommender models: field embeddings and layers, MLP, Wide&Deep, xDeepFM, MeLU, the item-item scorer,
the residual mixture over classical scores.

They know no meta-learning algorithm and no data loader; they read the task-batch contract only.
"""

from metarec_ref.models.item_item import (
    expand_support_items,
    FEATURE_NAMES,
    ItemItemScorer,
    mix_hard_negatives,
    sampled_softmax_loss,
    support_item_codes,
    SUPPORT_ITEMS,
)
from metarec_ref.models.layers import (
    check_spec,
    CIN,
    FieldEmbeddings,
    flatten_features,
    mlp_layers,
    SPARSE_KEYS,
    sparse_keys,
)
from metarec_ref.models.residual_mixture import (
    listwise_nll,
    ResidualMixture,
)
from metarec_ref.models.recommenders import (
    build_model,
    EventEncoder,
    MeLU,
    MLP,
    MODELS,
    WideAndDeep,
    XDeepFM,
)

__all__ = [
    "build_model",
    "check_spec",
    "CIN",
    "EventEncoder",
    "expand_support_items",
    "FEATURE_NAMES",
    "FieldEmbeddings",
    "listwise_nll",
    "flatten_features",
    "ItemItemScorer",
    "MeLU",
    "mix_hard_negatives",
    "MLP",
    "mlp_layers",
    "MODELS",
    "ResidualMixture",
    "sampled_softmax_loss",
    "SPARSE_KEYS",
    "sparse_keys",
    "support_item_codes",
    "SUPPORT_ITEMS",
    "WideAndDeep",
    "XDeepFM",
]
