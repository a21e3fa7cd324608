"""Recommender models: field embeddings and layers, MLP, Wide&Deep, xDeepFM, MeLU, the item-item scorer,
the residual mixture over classical scores, the Meta-Embedding generator for new products.

They know no meta-learning algorithm and no data loader; they read the task-batch contract only.
This face holds what a chapter or a reader builds with; the modules hold the rest (``models.layers``:
the CIN and the feature plumbing; ``models.item_item``: the scorer's support-item features).
"""

from metarec_ref.models.item_item import (
    ItemItemScorer,
    mix_hard_negatives,
    sampled_softmax_loss,
)
from metarec_ref.models.layers import (
    FieldEmbeddings,
    mlp_layers,
)
from metarec_ref.models.meta_embedding import MetaEmbedding
from metarec_ref.models.recommenders import (
    MLP,
    MODELS,
    EventEncoder,
    MeLU,
    WideAndDeep,
    XDeepFM,
    build_model,
)
from metarec_ref.models.residual_mixture import (
    ResidualMixture,
    listwise_nll,
)

__all__ = [
    "MetaEmbedding",
    "MLP",
    "MODELS",
    "EventEncoder",
    "FieldEmbeddings",
    "ItemItemScorer",
    "MeLU",
    "ResidualMixture",
    "WideAndDeep",
    "XDeepFM",
    "build_model",
    "listwise_nll",
    "mix_hard_negatives",
    "mlp_layers",
    "sampled_softmax_loss",
]
