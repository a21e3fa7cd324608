"""A meta-learner that sees item-item structure: a scorer over similarities to the support items.

Item-kNN wins on new customers because a candidate bought together with the support items is
likely next. :class:`ItemItemScorer` gives a meta-learner that signal: for a candidate ``c`` and
the task's positive support items ``S`` it computes features

- ``knn_sum``, ``knn_max``: sum / max of ``similarity[s, c]`` over ``s`` in ``S``, from a fixed
  item-item matrix passed in as a buffer (item-kNN cosine or EASE weights fitted on
  meta-training events); with several matrices ``(m, n_items, n_items)`` (e.g. kNN and EASE)
  each adds its own sum / max pair (``knn_sum``, ``knn_max``, ``sim1_sum``, ``sim1_max``, ...);
- ``emb_mean``, ``emb_max``: mean / max cosine of learned item embeddings of ``c`` and ``s``;
- ``same_category``: share of support items in ``c``'s category;
- ``log_pop``: a fixed popularity score of ``c`` (e.g. recent popularity);

standardises them with fixed statistics and scores them with a small MLP ``head``. MAML /
Meta-SGD adapt the head per task (``adapt="head"``): *how much to trust each signal* is what a
task changes; the embeddings are meta-learned in the outer loop only.

Support items reach the model as one more feature key, ``support_items``, of shape
``(..., K)`` (item codes, 0 = none) next to ``item``: :func:`support_item_codes` reads them off a
:class:`~metarec_ref.batch.TaskBatch` and :func:`expand_support_items` adds them to a feature dict
(:func:`metarec_ref.recipes.online_retail.with_support_items` does both for whole tasks). A
candidate never counts itself (leave-one-out), so the inner loop on the support set is not trivial.

:func:`mix_hard_negatives` swaps part of the sampled negatives of meta-training tasks for items
close to the support (the ones full ranking must beat); :func:`sampled_softmax_loss` is a
ranking-style loss (each positive against all of its task's sampled negatives) that may replace
the per-event BCE as the learner's ``loss_fn``.

Leakage note: fit the similarity for meta-training on events that exclude the meta-training
tasks' own users (:func:`metarec_ref.data.splits.holdout_users`), then switch to the similarity
fitted on all meta-training events for evaluation (:meth:`ItemItemScorer.set_similarity`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from metarec_ref.batch import UNKNOWN, Features, TaskBatch, check_prediction_shape

SUPPORT_ITEMS = "support_items"
# Features with one similarity matrix; each further matrix adds f"sim{i}_sum", f"sim{i}_max".
FEATURE_NAMES = ("knn_sum", "knn_max", "emb_mean", "emb_max", "same_category", "log_pop")


def support_item_codes(batch: TaskBatch, max_items: int | None = None) -> Tensor:
    """``(tasks, K)`` codes of each task's positive real support items, left-aligned, 0-padded."""
    if not isinstance(batch.support_x, dict) or "item" not in batch.support_x:
        raise ValueError("support items need feature dicts with an 'item' key")
    items = batch.support_x["item"]
    real = batch.support_mask & (batch.support_y > 0) & (items != UNKNOWN)
    # Stable sort puts the real items first, in their support order.
    order = torch.sort((~real).to(torch.int8), dim=1, stable=True).indices
    codes = torch.where(real, items, torch.zeros_like(items)).gather(1, order)
    width = max(int(real.sum(1).max()) if real.numel() else 0, 1)
    if max_items is not None:
        width = min(width, max_items)
    return codes[:, :width]


def expand_support_items(x: Features, codes: Tensor) -> dict[str, Tensor]:
    """``x`` plus ``support_items``: the task's ``codes`` ``(tasks, K)`` for each of its ``n`` items."""
    if not isinstance(x, dict):
        raise ValueError("support items need feature dicts (with an 'item' key)")
    n = x["item"].shape[1]
    # A stride-0 view: one copy of the support items per task, whatever n is.
    return {**x, SUPPORT_ITEMS: codes[:, None, :].expand(codes.shape[0], n, codes.shape[1])}


def _hard_part(x: dict[str, Tensor], y: Tensor, mask: Tensor, pool: Tensor, share: float,
               item_category: Tensor | None, generator: torch.Generator) -> dict[str, Tensor]:
    negative = mask & (y <= 0)
    pick = negative & (torch.rand(y.shape, generator=generator).to(y.device) < share)
    slot = torch.randint(0, pool.shape[1], y.shape, generator=generator).to(y.device)
    item = torch.where(pick, pool.gather(1, slot), x["item"])
    out = {**x, "item": item}
    if item_category is not None and "category" in x:
        out["category"] = torch.where(pick, item_category[item], x["category"])
    return out


def mix_hard_negatives(
    batch: TaskBatch,
    similarity: Tensor,
    top: int = 50,
    share: float = 0.5,
    item_category: Tensor | None = None,
    seed: int = 0,
) -> TaskBatch:
    """Swap a ``share`` of the sampled negatives for *hard* ones: items among the ``top`` most
    similar (summed ``similarity`` rows) to the task's support items, other than its positives.

    Full ranking is decided among such items; uniform negatives are mostly easy. Only ``item``
    (and ``category`` via ``item_category``) change, so use it with models that read item codes.
    Call it before :func:`metarec_ref.recipes.online_retail.with_support_items`.
    """
    if not 0 <= share <= 1:
        raise ValueError(f"share must be in [0, 1], got {share}")
    generator = torch.Generator().manual_seed(seed)
    codes = support_item_codes(batch)
    n_items = similarity.shape[0]
    profile = torch.zeros(codes.shape[0], n_items, device=codes.device)
    profile = profile.scatter_add(1, codes, (codes != UNKNOWN).float())
    scores = profile @ similarity.float().to(codes.device)
    scores[:, UNKNOWN] = -torch.inf
    for x, y, m in ((batch.support_x, batch.support_y, batch.support_mask),
                    (batch.query_x, batch.query_y, batch.query_mask)):
        positives = torch.where(m & (y > 0), x["item"], torch.zeros_like(x["item"]))
        scores.scatter_(1, positives, -torch.inf)
    pool = scores.topk(min(top, n_items - 1), dim=1).indices  # (tasks, top)
    support_x = _hard_part(batch.support_x, batch.support_y, batch.support_mask, pool, share, item_category, generator)
    query_x = _hard_part(batch.query_x, batch.query_y, batch.query_mask, pool, share, item_category, generator)
    return TaskBatch(support_x, batch.support_y, batch.support_mask, query_x, batch.query_y,
                     batch.query_mask, batch.task_ids)


def sampled_softmax_loss(logits: Tensor, y: Tensor, mask: Tensor) -> Tensor:
    """Ranking loss of one task (or a batch, leading dims pooled): each positive against all of
    the task's negatives at once, ``mean_pos softplus(logsumexp(negatives) - positive)``.

    Closer to full ranking than per-event BCE: a positive only scores well when it beats the
    negatives together. Tasks without a positive or a negative give 0.
    """
    check_prediction_shape(logits, y, mask)
    pos = mask & (y > 0)
    neg = mask & (y <= 0)
    neg_lse = torch.logsumexp(torch.where(neg, logits, torch.full_like(logits, -1e4)), dim=-1, keepdim=True)
    per_pos = F.softplus(neg_lse - logits)
    has_both = neg.any(-1, keepdim=True) & pos
    total = torch.where(has_both, per_pos, torch.zeros_like(per_pos)).sum()
    return total / has_both.sum().clamp(min=1).to(logits.dtype)


class ItemItemScorer(nn.Module):
    """Scores a candidate from its similarity to the support items (see the module docstring).

    similarity: ``(n_items, n_items)`` fixed item-item matrix, or ``(m, n_items, n_items)`` for
    several (``n_similarities`` must then be ``m``, also when building without them); popularity: ``(n_items,)`` fixed
    score; item_category: ``(n_items,)`` codes. Any of them may be None (feature then 0).
    """

    def __init__(
        self,
        n_items: int,
        similarity: Tensor | None = None,
        popularity: Tensor | None = None,
        item_category: Tensor | None = None,
        emb_dim: int = 32,
        hidden: int = 16,
        n_similarities: int | None = None,
    ):
        super().__init__()
        if n_items < 2:
            raise ValueError(f"n_items must be >= 2, got {n_items}")
        self.n_items = n_items
        if n_similarities is None:
            n_similarities = 1 if similarity is None or similarity.dim() == 2 else similarity.shape[0]
        self.n_similarities = n_similarities
        extra = tuple(f"sim{i}_{s}" for i in range(1, n_similarities) for s in ("sum", "max"))
        self.feature_names = FEATURE_NAMES + extra
        self.register_buffer("similarity", torch.zeros(n_similarities, n_items, n_items))
        self.register_buffer("popularity", torch.zeros(n_items))
        self.register_buffer("item_category", torch.zeros(n_items, dtype=torch.int64))
        self.register_buffer("feature_mean", torch.zeros(len(self.feature_names)))
        self.register_buffer("feature_std", torch.ones(len(self.feature_names)))
        if similarity is not None:
            self.set_similarity(similarity)
        if popularity is not None:
            self.popularity.copy_(self._check(popularity, (n_items,), "popularity").float())
        if item_category is not None:
            self.item_category.copy_(self._check(item_category, (n_items,), "item_category").long())
        self.item = nn.Embedding(n_items, emb_dim)
        nn.init.normal_(self.item.weight, std=0.1)
        n_features = len(self.feature_names)
        if hidden:
            self.head = nn.Sequential(nn.Linear(n_features, hidden), nn.ReLU(), nn.Linear(hidden, 1))
        else:
            self.head = nn.Sequential(nn.Linear(n_features, 1))

    def _check(self, t: Tensor, shape: tuple, name: str) -> Tensor:
        t = torch.as_tensor(t)
        if tuple(t.shape) != shape:
            raise ValueError(f"{name} must have shape {shape}, got {tuple(t.shape)}")
        return t.to(self.similarity.device)

    def set_similarity(self, similarity: Tensor) -> None:
        """Swap the fixed item-item matrix (e.g. fitted on all meta-training events for testing)."""
        similarity = torch.as_tensor(similarity)
        if similarity.dim() == 2:
            similarity = similarity[None]
        shape = (self.n_similarities, self.n_items, self.n_items)
        with torch.no_grad():
            self.similarity.copy_(self._check(similarity, shape, "similarity").float())

    def features(self, x: dict[str, Tensor]) -> Tensor:
        """Raw features ``(..., len(self.feature_names))`` of each candidate ``x['item']``."""
        if not isinstance(x, dict) or "item" not in x or SUPPORT_ITEMS not in x:
            got = list(x) if isinstance(x, dict) else type(x).__name__
            raise ValueError(
                f"ItemItemScorer needs a feature dict with 'item' and '{SUPPORT_ITEMS}'; got {got}. "
                "Add the support items with with_support_items(tasks) of metarec_ref.recipes"
            )
        lead = x["item"].shape
        sup_all = x[SUPPORT_ITEMS]
        if sup_all.shape[:-1] != lead:
            raise ValueError(
                f"x['{SUPPORT_ITEMS}'] must have shape {(*lead, 'K')}, got {tuple(sup_all.shape)}"
            )
        item = x["item"].reshape(-1)  # (n,)
        sup = sup_all.reshape(item.shape[0], -1)  # (n, K)
        valid = (sup != UNKNOWN) & (sup != item[:, None])  # leave-one-out
        count = valid.sum(1).clamp(min=1).to(torch.float32)
        has = valid.any(1)

        def masked_sum_max(values: Tensor) -> tuple[Tensor, Tensor]:
            total = torch.where(valid, values, torch.zeros_like(values)).sum(1)
            top = torch.where(valid, values, torch.full_like(values, -1e4)).amax(1)
            return total, torch.where(has, top, torch.zeros_like(top))

        sims = [masked_sum_max(self.similarity[m][sup, item[:, None]]) for m in range(self.n_similarities)]
        knn_sum, knn_max = sims[0]
        cand = F.normalize(self.item(item), dim=-1)  # (n, d)
        sup_emb = F.normalize(self.item(sup), dim=-1)  # (n, K, d)
        cos = torch.einsum("nkd,nd->nk", sup_emb, cand)
        emb_sum, emb_max = masked_sum_max(cos)
        cat = self.item_category
        same = ((cat[sup] == cat[item][:, None]) & valid).sum(1).to(torch.float32) / count
        extra = [f for pair in sims[1:] for f in pair]
        feats = torch.stack([knn_sum, knn_max, emb_sum / count, emb_max, same, self.popularity[item], *extra], dim=-1)
        return feats.reshape(*lead, len(self.feature_names))

    @torch.no_grad()
    def fit_feature_scaling(self, x: dict[str, Tensor], mask: Tensor | None = None) -> None:
        """Set the fixed standardisation from example inputs (e.g. the meta-training support sets)."""
        feats = self.features(x)
        feats = feats[mask] if mask is not None else feats.reshape(-1, feats.shape[-1])
        self.feature_mean.copy_(feats.mean(0))
        self.feature_std.copy_(feats.std(0).clamp(min=1e-6))

    def forward(self, x: Features) -> Tensor:
        z = (self.features(x) - self.feature_mean) / self.feature_std
        return self.head(z).squeeze(-1)


__all__ = [
    "FEATURE_NAMES",
    "ItemItemScorer",
    "SUPPORT_ITEMS",
    "expand_support_items",
    "mix_hard_negatives",
    "sampled_softmax_loss",
    "support_item_codes",
]
