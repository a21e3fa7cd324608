"""Meta-Embedding: a new product's embedding generated from its content, then warmed up.

A new product has no collaborative embedding yet, but it has a description, a price and a family.
The model scores customer ``c`` for a product with embedding ``v`` as

``score(c) = customer_emb[c] . v + customer_bias[c]``

with customer tables learned beforehand on the products already sold (kept fixed here, as in the
Meta-Embedding paper by Pan et al., SIGIR 2019: the base model is not touched). What is learned:

- ``generator``: content ``(content_dim,)`` -> embedding ``(d,)``, the *cold* embedding of a product
  nobody has bought yet;
- ``log_lr``: one warm-up step size per embedding coordinate (Meta-SGD): the first ``K`` buyers
  move the generated embedding by ``v <- v - lr * grad``, where the gradient is that of the
  support loss (the first buyers ranked over every customer).

Meta-training (:func:`metarec_ref.recipes.new_products.meta_train_generator`) minimises, over
products launched before a cut, the query loss of the cold embedding plus that of the warmed-up
one, so the generated embedding is good both before the first sale and as a starting point.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from metarec_ref.models.residual_mixture import listwise_nll


class MetaEmbedding(nn.Module):
    """Content generator and warm-up step sizes over fixed customer tables (module docstring).

    customer_emb: ``(n_codes, d)``, row 0 the padding code; customer_bias: ``(n_codes,)``;
    content_dim: width of the content features; hidden: width of the generator's hidden layer
    (0: a linear map); init_lr: the starting warm-up step size.
    """

    def __init__(self, customer_emb: Tensor, customer_bias: Tensor, content_dim: int, *, hidden: int = 64,
                 init_lr: float = 0.1):
        super().__init__()
        if customer_emb.dim() != 2 or customer_bias.shape != customer_emb.shape[:1]:
            raise ValueError(f"customer_emb must be (n_codes, d) and customer_bias (n_codes,), got "
                             f"{tuple(customer_emb.shape)} and {tuple(customer_bias.shape)}")
        if content_dim < 1 or hidden < 0 or not init_lr > 0:
            raise ValueError(f"need content_dim >= 1, hidden >= 0 and init_lr > 0, got {content_dim}, {hidden}, {init_lr}")
        dim = customer_emb.shape[1]
        self.register_buffer("customer_emb", customer_emb.detach().to(torch.float32).clone())
        self.register_buffer("customer_bias", customer_bias.detach().to(torch.float32).clone())
        layers = [nn.Linear(content_dim, hidden), nn.Tanh(), nn.Linear(hidden, dim)] if hidden else [nn.Linear(content_dim, dim)]
        self.generator = nn.Sequential(*layers)
        self.log_lr = nn.Parameter(torch.full((dim,), math.log(init_lr)))

    def generate(self, content: Tensor) -> Tensor:
        """Cold embeddings ``(products, d)`` from content ``(products, content_dim)``."""
        return self.generator(content)

    def scores(self, v: Tensor) -> Tensor:
        """``(products, n_codes)``: every customer's score for each product embedding in ``v``."""
        return v @ self.customer_emb.t() + self.customer_bias

    def support_loss(self, v: Tensor, support: Tensor) -> Tensor:
        """Per product, the listwise loss of its support buyers ``(products, K)`` (codes, 0 = none)
        among every customer; a product without support gives 0."""
        targets = torch.zeros(v.shape[0], self.customer_emb.shape[0], dtype=torch.bool, device=v.device)
        targets.scatter_(1, support, True)
        targets[:, 0] = False
        exclude = torch.zeros_like(targets)
        exclude[:, 0] = True
        return listwise_nll(self.scores(v), targets, exclude)

    def warm_up(self, v: Tensor, support: Tensor, steps: int, *, lr: Tensor | float | None = None,
                create_graph: bool = False) -> Tensor:
        """``steps`` gradient steps on each product's support loss from ``v``; ``lr`` defaults to
        the learned per-coordinate step sizes. ``create_graph`` keeps the graph for meta-training."""
        if steps < 0:
            raise ValueError(f"steps must be >= 0, got {steps}")
        if steps == 0 or support.shape[1] == 0:
            return v
        lr = self.log_lr.exp() if lr is None else lr
        with torch.enable_grad():
            if not v.requires_grad:
                v = v.detach().requires_grad_()
            for _ in range(steps):
                (grad,) = torch.autograd.grad(self.support_loss(v, support).sum(), v, create_graph=create_graph)
                v = v - lr * grad
                if not create_graph:
                    v = v.detach().requires_grad_()
        return v if create_graph else v.detach()

    def query_loss(self, v: Tensor, relevant: Tensor, exclude: Tensor) -> Tensor:
        """Mean over products with a query buyer of the listwise loss of ``relevant`` ``(products, n_codes)``."""
        nll = listwise_nll(self.scores(v), relevant, exclude)
        has = (relevant & ~exclude).any(-1)
        return nll[has].mean() if bool(has.any()) else nll.sum() * 0

    def step_sizes(self) -> Tensor:
        """The learned warm-up step sizes ``(d,)`` (detached)."""
        return self.log_lr.detach().exp()


__all__ = ["MetaEmbedding"]
