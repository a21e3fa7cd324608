"""The opponents a careful engineer would field for a new product, each tuned on validation products.

Every scorer returns ``(products, n_codes)`` scores of every customer code for each product of a
:class:`~metarec_ref.data.new_products.BuyerTasks` (code 0, the padding, is never a candidate):

- :func:`activity_scores`: the customers' past activity, purchase lines before the cut, each
  weighted by ``0.5 ** (age / half_life)`` (``half_life = inf``: plain counts);
- :func:`content_knn_scores`: the buyers of the ``n`` training products most similar by content
  (cosine), each weighted by that similarity;
- :class:`ContentRidge`: a ridge regression from content to a training product's buyer column
  (the collaborative vector; in the spirit of EASE with side information), in its dual form
  ``scores = C_new C^T (C C^T + lambda I)^-1 Y`` so that it costs one eigendecomposition of the
  products' Gram matrix for every ``lambda``; with ``Y`` the training products' embeddings it is
  the plain (not meta-trained) content-to-embedding generator;
- :func:`kshot_scores`: customers similar to the first buyers (cosine over their purchases before
  the cut), blended with a content prior with the shrinkage weight ``K / (K + beta)``.

The content-based scorers break ties by activity (a hundred-thousandth of a standard deviation), as
a production system would rather than at random.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from metarec_ref.data.new_products import BuyerTasks
from metarec_ref.eval.metrics import per_task_ndcg
from metarec_ref.runtime import exact_sqrt

TIE_BREAK = 1e-5


def standardise(scores: Tensor, candidates: Tensor) -> Tensor:
    """Scores minus their mean over each row's candidates, over their standard deviation (floored)."""
    counts = candidates.sum(1, keepdim=True).clamp(min=1)
    masked = torch.where(candidates, scores, torch.zeros_like(scores))
    mean = masked.sum(1, keepdim=True) / counts
    var = torch.where(candidates, (scores - mean) ** 2, torch.zeros_like(scores)).sum(1, keepdim=True) / counts
    return (scores - mean) / exact_sqrt(var).clamp(min=1e-12)


def activity_scores(days_ago: Tensor, line_codes: Tensor, n_codes: int, half_life: float) -> Tensor:
    """``(n_codes,)`` recency-weighted purchase lines per customer (``half_life`` in days)."""
    weights = torch.ones_like(days_ago) if np.isinf(half_life) else 0.5 ** (days_ago / half_life)
    return torch.zeros(n_codes).index_add_(0, line_codes, weights)


def content_similarity(new: Tensor, train: Tensor) -> Tensor:
    """Cosine similarity ``(new products, training products)``."""
    unit = lambda x: x / x.norm(dim=1, keepdim=True).clamp(min=1e-12)  # noqa: E731
    return unit(new) @ unit(train).t()


def content_knn_scores(similarity: Tensor, bought: Tensor, n: int) -> Tensor:
    """Sum over the ``n`` most similar training products of similarity times bought (0/1)."""
    n = min(n, similarity.shape[1])
    top = similarity.topk(n, dim=1)
    weights = torch.zeros_like(similarity).scatter_(1, top.indices, top.values.clamp(min=0))
    return weights @ bought.to(weights.dtype)


class ContentRidge:
    """Ridge regression from content rows ``(training products, dim)`` to targets, in dual form.

    With ``C C^T = Q diag(e) Q^T`` the prediction for every penalty is
    ``(C_new C^T Q) diag(1 / (e + lambda)) (Q^T Y)``: the two projections are computed once per
    new-content matrix and per target matrix, so trying a penalty costs one small product.
    """

    def __init__(self, train_content: Tensor):
        self.train_content = train_content.double()
        self.eigenvalues, self.eigenvectors = torch.linalg.eigh(self.train_content @ self.train_content.t())
        self.eigenvalues = self.eigenvalues.clamp(min=0)
        self._cache: dict[tuple[str, int], tuple[Tensor, Tensor]] = {}

    def _projected(self, kind: str, x: Tensor) -> Tensor:
        key = (kind, id(x))
        if key not in self._cache or self._cache[key][0] is not x:  # keyed by the tensor itself
            if kind == "new":
                value = (x.double() @ self.train_content.t()) @ self.eigenvectors
            else:
                value = self.eigenvectors.t() @ x.double()
            self._cache[key] = (x, value)
        return self._cache[key][1]

    def predict(self, new_content: Tensor, targets: Tensor, lam: float) -> Tensor:
        """``new_content C^T (C C^T + lam I)^-1 targets`` ``(new, targets' width)``."""
        if not lam > 0:
            raise ValueError(f"the ridge penalty must be > 0, got {lam}")
        shrunk = self._projected("new", new_content) / (self.eigenvalues + lam)
        return (shrunk @ self._projected("targets", targets)).to(torch.float32)

    def primal(self, targets: Tensor, lam: float) -> Tensor:
        """The same map as weights ``(dim, targets' width)``: ``predict(x) == x @ primal(...)``."""
        if not lam > 0:
            raise ValueError(f"the ridge penalty must be > 0, got {lam}")
        dual = self.eigenvectors @ (self._projected("targets", targets) / (self.eigenvalues + lam)[:, None])
        return (self.train_content.t() @ dual).to(torch.float32)


def customer_similarity(bought: Tensor) -> Tensor:
    """Cosine similarity of customers' purchase vectors over the training products ``(n_codes, n_codes)``."""
    vectors = bought.t().to(torch.float32)
    vectors = vectors / vectors.norm(dim=1, keepdim=True).clamp(min=1e-12)
    return vectors @ vectors.t()


def kshot_scores(similarity: Tensor, support: Tensor, prior: Tensor, candidates: Tensor, beta: float) -> Tensor:
    """``w z(evidence) + (1 - w) z(prior)`` with ``w = K / (K + beta)``; evidence: summed similarity
    to the support buyers (codes ``(products, K)``, 0 = none). ``beta = inf`` is the prior alone."""
    k = support.shape[1]
    evidence = similarity[support].where(support[..., None] != 0, torch.zeros(())).sum(1)
    weight = 0.0 if np.isinf(beta) else k / (k + beta)
    return weight * standardise(evidence, candidates) + (1 - weight) * standardise(prior, candidates)


def with_tie_break(scores: Tensor, activity: Tensor, candidates: Tensor) -> Tensor:
    """Standardised scores plus a tiny multiple of standardised activity (see the module docstring)."""
    tie = standardise(activity.expand_as(scores), candidates)
    return standardise(scores, candidates) + TIE_BREAK * tie


def mean_ndcg(scores: Tensor, tasks: BuyerTasks, k: int = 10) -> float:
    return float(np.nanmean(per_task_ndcg(scores, tasks.relevant, tasks.candidates, k=k).numpy()))


__all__ = [
    "ContentRidge",
    "activity_scores",
    "content_knn_scores",
    "content_similarity",
    "customer_similarity",
    "kshot_scores",
    "mean_ndcg",
    "standardise",
    "with_tie_break",
]
