"""A residual meta-learner over classical scores: unadapted it *is* the classical scorer.

Inputs are the scores of ``F`` classical scorers (item-kNN, EASE, recent and all-time popularity)
for every catalogue item of a task, ``features`` of shape ``(tasks, n_items, F)``. The score of
item ``c`` for a customer with adaptable part ``(delta, user)`` is

``score(c) = sum_j (base_j + delta_j / (scale_j * t)) * features[c, j] + item_emb[c] . user / t``

- ``base`` ``(F,)`` is fixed: the best classical scorer (a one-hot vector) or a global mixture
  chosen on validation customers; ``scale`` ``(F,)`` standardises the features for the update;
- ``delta`` ``(F,)`` (mixture weights) and ``user`` ``(d,)`` (a correction through learned
  item embeddings) are per customer and start at zero, so **zero inner steps give the base score
  exactly**;
- ``t`` (``sharpness``) scales the scores inside the listwise losses, which see ``t * score(c)``:
  ``t * base . features`` are logits fitted to the data (:func:`~metarec_ref.recipes.residual_meta.fit_sharpness`),
  and ``delta`` and ``user`` move those logits in their own units. Without it a base in raw units
  (EASE weights are about 1e-3) gives a nearly uniform softmax, and the losses reward any move
  that adds contrast (mostly popularity) whether or not it ranks better;
- the inner loop takes gradient steps on the support set with Meta-SGD step sizes (one learned
  positive rate per adapted coordinate, :attr:`ResidualMixture.log_lr_delta` /
  :attr:`ResidualMixture.log_lr_user`): the meta-learner learns *how far to trust* a new
  customer's few purchases, down to not moving at all.

The support loss is leave-one-out: each support item in turn is the target, ranked over the
catalogue by the features computed from the *other* support items (``loo_features``,
``(tasks, K, n_items, F)``); other support items are excluded from that ranking, as they are at
test time. The query loss is the same softmax over the catalogue, with every query item a target.
The outer loop (:func:`metarec_ref.recipes.residual_meta.meta_train_residual`) differentiates the
query loss through the inner steps (second order) with respect to the item embeddings and the
step sizes; ``base`` never changes.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn



def listwise_nll(scores: Tensor, targets: Tensor, exclude: Tensor) -> Tensor:
    """Mean negative log-softmax of the ``targets`` among the non-excluded items, per row.

    scores: ``(..., n_items)``; targets, exclude: bool of the same shape. A row without a
    target gives 0 (and no gradient), e.g. a customer whose support items are all unknown.
    """
    # An excluded item gets a finite stand-in far below any score (an all-excluded row gives no NaN).
    logp = torch.log_softmax(scores.masked_fill(exclude, torch.finfo(scores.dtype).min / 2), dim=-1)
    hit = targets & ~exclude
    total = -(logp * hit).sum(-1)
    return total / hit.sum(-1).clamp(min=1).to(scores.dtype)


class ResidualMixture(nn.Module):
    """Base mixture of classical scores plus a small per-customer residual (see the module docstring).

    base: ``(F,)`` weights in the features' own units (``[0, 1, 0, 0]`` is scorer 1 exactly);
    scale: ``(F,)`` positive feature scales (e.g. their standard deviations); n_items: catalogue
    size; emb_dim: width of the correction (0: mixture weights only); init_lr: starting step size;
    sharpness: the losses' scale of the scores (see the module docstring), > 0.
    """

    def __init__(self, base: Tensor, scale: Tensor, n_items: int, *, emb_dim: int = 8,
                 init_lr: float = 0.1, emb_std: float = 0.1, sharpness: float = 1.0):
        super().__init__()
        base, scale = torch.as_tensor(base, dtype=torch.float32), torch.as_tensor(scale, dtype=torch.float32)
        if base.dim() != 1 or base.shape != scale.shape:
            raise ValueError(f"base and scale must be 1-D of equal length, got {tuple(base.shape)} and {tuple(scale.shape)}")
        if not bool((scale > 0).all()):
            raise ValueError(f"scale must be positive (feature standard deviations), got {scale.tolist()}")
        if init_lr <= 0:
            raise ValueError(f"init_lr must be > 0, got {init_lr}")
        if not math.isfinite(sharpness) or sharpness <= 0:
            raise ValueError(f"sharpness must be a positive number, got {sharpness}")
        if emb_dim < 0 or n_items < 1:
            raise ValueError(f"need emb_dim >= 0 and n_items >= 1, got {emb_dim} and {n_items}")
        self.n_features, self.emb_dim = base.shape[0], emb_dim
        self.register_buffer("base", base)
        self.register_buffer("scale", scale)
        self.register_buffer("sharpness", torch.tensor(float(sharpness)))
        self.item_emb = nn.Parameter(emb_std * torch.randn(n_items, emb_dim))
        self.log_lr_delta = nn.Parameter(torch.full((self.n_features,), math.log(init_lr)))
        self.log_lr_user = nn.Parameter(torch.full((emb_dim,), math.log(init_lr)))

    def zero_state(self, tasks: int) -> tuple[Tensor, Tensor]:
        """The unadapted per-customer part: ``delta`` ``(tasks, F)`` and ``user`` ``(tasks, d)``, zeros."""
        like = self.item_emb
        return like.new_zeros(tasks, self.n_features), like.new_zeros(tasks, self.emb_dim)

    def scores(self, features: Tensor, delta: Tensor, user: Tensor) -> Tensor:
        """``(tasks, ..., n_items)`` scores from features ``(tasks, ..., n_items, F)``."""
        if features.shape[-1] != self.n_features:
            raise ValueError(f"features must end in F={self.n_features} scores, got {tuple(features.shape)}")
        extra = features.dim() - 3  # e.g. the leave-one-out dimension K
        weights = self.base + delta / (self.scale * self.sharpness)  # (tasks, F)
        weights = weights.reshape(weights.shape[0], *([1] * extra), 1, self.n_features)
        mixed = (features * weights).sum(-1)
        # With user == 0 the correction is exactly 0.0, so the base score is returned bit for bit.
        correction = (user @ self.item_emb.t()) / self.sharpness  # (tasks, n_items)
        return mixed + correction.reshape(user.shape[0], *([1] * extra), -1)

    def support_loss(self, loo_features: Tensor, loo_targets: Tensor, loo_exclude: Tensor,
                     slot_mask: Tensor, delta: Tensor, user: Tensor) -> Tensor:
        """Per-task leave-one-out loss ``(tasks,)``: slot ``j`` ranks support item ``j`` from the others.

        loo_features: ``(tasks, K, n_items, F)``; loo_targets / loo_exclude: bool ``(tasks, K, n_items)``;
        slot_mask: bool ``(tasks, K)``, the real support slots.
        """
        nll = listwise_nll(self.sharpness * self.scores(loo_features, delta, user), loo_targets, loo_exclude)
        nll = torch.where(slot_mask, nll, torch.zeros_like(nll))
        return nll.sum(1) / slot_mask.sum(1).clamp(min=1).to(nll.dtype)

    def adapt(self, loo_features: Tensor, loo_targets: Tensor, loo_exclude: Tensor, slot_mask: Tensor,
              steps: int, create_graph: bool = False) -> tuple[Tensor, Tensor]:
        """``steps`` Meta-SGD steps from zero on each task's support set: ``(delta, user)``.

        Tasks are independent, so one gradient of the summed task losses holds every task's own
        gradient. ``create_graph=True`` keeps the graph for the outer (second-order) gradient.
        """
        if steps < 0:
            raise ValueError(f"steps must be >= 0, got {steps}")
        delta, user = self.zero_state(loo_features.shape[0])
        if steps == 0:
            return delta, user
        lr_delta, lr_user = self.log_lr_delta.exp(), self.log_lr_user.exp()
        with torch.enable_grad():
            delta, user = delta.requires_grad_(), user.requires_grad_()
            for _ in range(steps):
                loss = self.support_loss(loo_features, loo_targets, loo_exclude, slot_mask, delta, user).sum()
                g_delta, g_user = torch.autograd.grad(loss, (delta, user), create_graph=create_graph)
                delta, user = delta - lr_delta * g_delta, user - lr_user * g_user
                if not create_graph:
                    delta, user = delta.detach().requires_grad_(), user.detach().requires_grad_()
        if not create_graph:
            delta, user = delta.detach(), user.detach()
        return delta, user

    def query_loss(self, features: Tensor, relevant: Tensor, exclude: Tensor, delta: Tensor, user: Tensor) -> Tensor:
        """Mean over tasks with a query item of the listwise loss of the query items ``(tasks, n_items)``."""
        nll = listwise_nll(self.sharpness * self.scores(features, delta, user), relevant, exclude)
        has = (relevant & ~exclude).any(-1)
        return nll[has].mean() if bool(has.any()) else nll.sum() * 0

    def step_sizes(self) -> dict[str, Tensor]:
        """The learned Meta-SGD step sizes (detached): ``delta`` ``(F,)``, ``user`` ``(d,)``."""
        return {"delta": self.log_lr_delta.detach().exp(), "user": self.log_lr_user.detach().exp()}


__all__ = ["ResidualMixture", "listwise_nll"]
