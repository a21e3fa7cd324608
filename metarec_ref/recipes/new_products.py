"""New products on a real shop: the data of the protocol, the customer tables, the meta-trained generator.

:func:`new_product_data` cuts a log at a launch date (:func:`~metarec_ref.data.new_products.new_product_split`)
and gathers what every method may read: the purchases before the cut (who bought which
training product, how active each customer was), the content of every product from its launch
record, and, per support size ``K``, the buyer tasks of the training products (from purchases
before the cut only) and of the validation and test products (their first ``K`` buyers after
launch are the support, their later buyers the query; every customer known before the cut who
is not in the support is a candidate).

:func:`fit_customer_tables` learns customer embeddings and biases from the purchases before the
cut (each training product gets a free embedding, fitted with them and then dropped);
:func:`meta_train_generator` meta-trains a :class:`~metarec_ref.models.MetaEmbedding` on the
training products' tasks and keeps the state with the best validation NDCG@10.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from metarec_ref.data.content import ContentEncoder
from metarec_ref.data.new_products import BuyerTasks, NewProductSplit, buyer_tasks, launch_records, new_product_split
from metarec_ref.eval.metrics import per_task_ndcg
from metarec_ref.models.meta_embedding import MetaEmbedding
from metarec_ref.runtime import adam
from metarec_ref.train.checkpoints import train_keeping_best


@dataclass
class NewProductData:
    """Everything the methods may read, per part (``"train"``, ``"valid"``, ``"test"``) and ``K``.

    bought: ``(training products, n_codes)`` bool, who bought which training product before the
    cut; activity: ``(n_codes,)`` purchase lines per customer before the cut; days_ago:
    ``(lines,)`` age in days at the cut of each purchase line before the cut and ``line_codes``
    its customer (for recency-weighted activity); content: ``{part: (products, dim)}`` in the
    order of ``items[part]``; tasks: ``{(part, K): BuyerTasks}``.
    """

    split: NewProductSplit
    encoder: ContentEncoder
    items: dict[str, pd.Index]
    content: dict[str, Tensor]
    bought: Tensor
    activity: Tensor
    days_ago: Tensor
    line_codes: Tensor
    tasks: dict[tuple[str, int], BuyerTasks] = field(default_factory=dict)

    @property
    def n_codes(self) -> int:
        return len(self.split.customers) + 1

    def task_content(self, part: str, k: int) -> Tensor:
        """Content rows of the products of ``tasks[part, k]``, in task order."""
        rows = self.items[part].get_indexer(self.tasks[part, k].items)
        return self.content[part][torch.as_tensor(rows)]


def new_product_data(events: pd.DataFrame, k_values, *, cut=None, n_query: int = 50,
                     n_buckets: int = 2048, min_train_buyers: int = 2) -> NewProductData:
    """The protocol's data for support sizes ``k_values`` (module docstring).

    Training products are those launched before the cut with at least ``min_train_buyers``
    distinct known buyers before it; their tasks read purchases before the cut only.
    """
    split = new_product_split(events, cut)
    before = events[events["timestamp"] < split.cut]
    codes = pd.Series(np.arange(1, len(split.customers) + 1), index=split.customers)
    n_codes = len(split.customers) + 1
    pairs = before[["item_id", "user_id"]].drop_duplicates()
    counts = pairs.groupby("item_id").size()
    train_items = pd.Index([i for i in split.train_items if counts.get(i, 0) >= min_train_buyers], name="item_id")
    if len(train_items) < 2:
        raise ValueError(f"{len(train_items)} product(s) launched before {split.cut} have {min_train_buyers} or more "
                         "buyers: too few to learn from; move the cut later")
    pairs = pairs[pairs["item_id"].isin(train_items)]
    bought = torch.zeros(len(train_items), n_codes, dtype=torch.bool)
    bought[torch.as_tensor(train_items.get_indexer(pairs["item_id"])),
           torch.as_tensor(codes.loc[pairs["user_id"]].to_numpy().copy())] = True
    line_codes = torch.as_tensor(codes.loc[before["user_id"]].to_numpy().copy(), dtype=torch.int64)
    activity = torch.bincount(line_codes, minlength=n_codes).to(torch.float32)
    days_ago = torch.as_tensor(((split.cut - before["timestamp"]).dt.total_seconds() / 86400.0).to_numpy().copy(),
                               dtype=torch.float32)
    records = launch_records(events)
    encoder = ContentEncoder.fit(records.loc[train_items], n_buckets=n_buckets)
    items = {"train": train_items, "valid": split.valid_items, "test": split.test_items}
    content = {part: encoder.transform(records.loc[index]) for part, index in items.items()}
    data = NewProductData(split, encoder, items, content, bought, activity, days_ago, line_codes)
    for k in k_values:
        data.tasks["train", k] = buyer_tasks(before, train_items, split.customers, k, n_query)
        for part in ("valid", "test"):
            data.tasks[part, k] = buyer_tasks(events, items[part], split.customers, k, n_query)
    return data


@dataclass
class CustomerTables:
    """Customer embeddings ``(n_codes, d)`` and biases ``(n_codes,)``, and the training products'
    own embeddings ``(products, d)`` fitted with them (the targets of a content regression)."""

    customer_emb: Tensor
    customer_bias: Tensor
    product_emb: Tensor


def fit_customer_tables(bought: Tensor, dim: int = 32, steps: int = 300, batch_size: int = 256, lr: float = 0.05,
                        weight_decay: float = 1e-4, seed: int = 0) -> CustomerTables:
    """Embeddings such that each training product's buyers rank high among all customers.

    Adam on the listwise loss of each product's buyers (``bought``; padding code 0 excluded), over
    ``steps`` batches of ``batch_size`` products drawn at random, with an L2 penalty
    ``weight_decay`` on the embeddings (scaled to the batch's share of the products).
    """
    generator = torch.Generator().manual_seed(seed)
    n_products, n_codes = bought.shape
    customer = (0.1 * torch.randn(n_codes, dim, generator=generator)).requires_grad_()
    product = (0.1 * torch.randn(n_products, dim, generator=generator)).requires_grad_()
    bias = torch.zeros(n_codes, requires_grad=True)
    targets = bought.to(torch.float32)
    targets[:, 0] = 0.0  # code 0 (padding) is never a buyer ...
    padding = torch.zeros(n_codes)
    padding[0] = -torch.inf  # ... nor a candidate
    optimizer = adam([customer, product, bias], lr=lr)
    for _ in range(steps):
        index = torch.randint(n_products, (batch_size,), generator=generator)
        scores = product[index] @ customer.t() + bias
        # The listwise loss of each product's buyers: log-sum-exp over customers minus the mean buyer score.
        buyers = targets[index]
        loss = torch.logsumexp(scores + padding, dim=1) - (scores * buyers).sum(1) / buyers.sum(1).clamp(min=1)
        share = batch_size / n_products
        loss = loss.mean() + weight_decay * share * (customer.pow(2).sum() + product.pow(2).sum())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return CustomerTables(customer.detach(), bias.detach(), product.detach())


@dataclass
class GeneratorConfig:
    """Meta-Embedding training: warm-up steps, generator width, outer loop and its checkpoints."""

    warm_up_steps: int = 1
    hidden: int = 0  # 0: a linear generator, which can start from the content regression
    init_lr: float = 0.1
    meta_steps: int = 300
    batch_size: int = 64
    outer_lr: float = 0.003
    step_size_lr: float = 0.02
    cold_weight: float = 0.5  # the outer loss: cold_weight * cold + (1 - cold_weight) * warm
    eval_every: int = 25


def embedding_ndcg(model: MetaEmbedding, content: Tensor, tasks: BuyerTasks, steps: int, k: int = 10) -> Tensor:
    """Per-product NDCG@k of the generated embedding after ``steps`` warm-up steps on the support."""
    v = model.warm_up(model.generate(content).detach(), tasks.support, steps)
    with torch.no_grad():
        return per_task_ndcg(model.scores(v), tasks.relevant, tasks.candidates, k=k)


def meta_train_generator(tables: CustomerTables, train_content: Tensor, train_tasks: BuyerTasks,
                         valid_content: Tensor, valid_tasks: BuyerTasks, config: GeneratorConfig,
                         seed: int = 0, start: Tensor | None = None) -> tuple[MetaEmbedding, float]:
    """Meta-train the generator and step sizes (module docstring of :mod:`metarec_ref.models.meta_embedding`);
    returns the checkpoint (the start included) with the best mean validation NDCG@10 after
    ``warm_up_steps`` and that NDCG.

    start: ``(content_dim, d)`` weights of a linear generator to start from (e.g. the content
    regression's, :meth:`~metarec_ref.recipes.new_product_opponents.ContentRidge.primal`); needs ``hidden = 0``.
    """
    torch.manual_seed(seed)
    model = MetaEmbedding(tables.customer_emb, tables.customer_bias, train_content.shape[1],
                          hidden=config.hidden, init_lr=config.init_lr)
    if start is not None:
        if config.hidden:
            raise ValueError("start is the weight of a linear generator: use hidden=0")
        with torch.no_grad():
            model.generator[0].weight.copy_(start.t())
            model.generator[0].bias.zero_()
    steps = config.warm_up_steps if train_tasks.support.shape[1] else 0
    optimizer = adam([{"params": model.generator.parameters(), "lr": config.outer_lr},
                      {"params": [model.log_lr], "lr": config.step_size_lr}])
    generator = torch.Generator().manual_seed(seed)

    def validation() -> float:
        return float(np.nanmean(embedding_ndcg(model, valid_content, valid_tasks, steps).numpy()))

    def batch_loss(_step: int) -> Tensor:
        index = torch.randperm(train_tasks.num_tasks, generator=generator)[:config.batch_size]
        batch, content = train_tasks.select(index), train_content[index]
        exclude = ~batch.candidates
        cold = model.generate(content)
        loss = model.query_loss(cold, batch.relevant, exclude)
        if steps:
            warm = model.warm_up(cold, batch.support, steps, create_graph=True)
            loss = config.cold_weight * loss + (1 - config.cold_weight) * model.query_loss(warm, batch.relevant, exclude)
        return loss

    best = train_keeping_best(model, optimizer, batch_loss, validation, config.meta_steps, config.eval_every)
    return model, best


__all__ = [
    "CustomerTables",
    "GeneratorConfig",
    "NewProductData",
    "embedding_ndcg",
    "fit_customer_tables",
    "meta_train_generator",
    "new_product_data",
]
