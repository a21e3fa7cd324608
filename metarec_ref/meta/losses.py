"""Per-task losses: mask-weighted means, so padded events get zero weight and zero gradient.

Each refuses a prediction whose shape differs from its labels' (see
:func:`~metarec_ref.batch.check_prediction_shape`): a model ending in ``nn.Linear(..., 1)`` gives
``(k, 1)`` scores, which would broadcast against ``(k,)`` labels into a wrong loss.
"""

from __future__ import annotations

from collections.abc import Callable

import torch.nn.functional as F
from torch import Tensor

from metarec_ref.batch import check_prediction_shape

# A per-task loss: (logits or predictions (k,), targets (k,), mask (k,) bool) -> scalar.
LossFn = Callable[[Tensor, Tensor, Tensor], Tensor]


def masked_bce_loss(logits: Tensor, y: Tensor, mask: Tensor) -> Tensor:
    """Binary cross-entropy on logits, averaged over real (mask=True) events; 0 if none.

    Written as ``softplus(x) - y * x``, the same function as
    ``F.binary_cross_entropy_with_logits`` (equal to float rounding) and just as stable, but
    three ops instead of the dozen that one decomposes into under ``vmap``: the second-order
    backward of every inner step has far fewer nodes to walk.
    """
    check_prediction_shape(logits, y, mask)
    weight = mask.to(logits.dtype)
    losses = F.softplus(logits) - y.to(logits.dtype) * logits
    return (losses * weight).sum() / weight.sum().clamp_min(1.0)


def masked_mse_loss(pred: Tensor, y: Tensor, mask: Tensor) -> Tensor:
    """Squared error averaged over real (mask=True) events; 0 if none."""
    check_prediction_shape(pred, y, mask)
    weight = mask.to(pred.dtype)
    return ((pred - y.to(pred.dtype)) ** 2 * weight).sum() / weight.sum().clamp_min(1.0)


__all__ = ["LossFn", "masked_bce_loss", "masked_mse_loss"]
