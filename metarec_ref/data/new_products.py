"""New products: rank customers for a product launched after a time cut.

A product's *launch* is its first sale. :func:`new_product_split` cuts the catalogue in time:
products launched before the cut are training tasks; products launched at or after it are split
by product, alternately in launch order, into validation and test. :func:`buyer_tasks` turns each
product into a task: its first ``k`` distinct buyers (in time) are the support, its later distinct
buyers (up to ``n_query``) the query, and every customer known before the cut who is not in the
support is a candidate, as a campaign for the product would target them
(:func:`~metarec_ref.data.tasks.build_item_tasks` cuts the same support but scores it against
sampled non-buyers, for AUC; these tasks rank every known customer).

:func:`launch_records` reads a product's description and price from its first sale only, so no
buyer, price or description from after a task's support reaches the product's features.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from metarec_ref.data.schema import require_columns

_NEEDED = ("user_id", "item_id", "timestamp")


def launch_records(events: pd.DataFrame) -> pd.DataFrame:
    """One row per product, indexed by ``item_id``: ``launch`` (its first sale's time) and the
    ``description`` and ``price`` of that sale (empty / NaN where the log has no such column)."""
    require_columns(events, _NEEDED, "new-product tasks")
    first = events.sort_values("timestamp", kind="stable").drop_duplicates("item_id")
    records = pd.DataFrame({"launch": first["timestamp"].to_numpy()}, index=pd.Index(first["item_id"], name="item_id"))
    records["description"] = first["description"].fillna("").astype(str).to_numpy() if "description" in first else ""
    records["price"] = first["price"].astype(float).to_numpy() if "price" in first else np.nan
    return records.sort_values("launch", kind="stable")


@dataclass(frozen=True)
class NewProductSplit:
    """Products by launch: before the cut (training), after it (validation, test, by product).

    customers: the customers with a purchase before the cut, in code order (code ``i + 1``; 0 is
    the padding code), the candidates every task ranks.
    """

    cut: pd.Timestamp
    train_items: pd.Index
    valid_items: pd.Index
    test_items: pd.Index
    customers: pd.Index

    def summary(self) -> pd.DataFrame:
        return pd.DataFrame({"products": [len(self.train_items), len(self.valid_items), len(self.test_items)]},
                            index=pd.Index(["train (launched before the cut)", "validation", "test"], name="part"))


def new_product_split(events: pd.DataFrame, cut: str | pd.Timestamp | None = None, *,
                      cut_quantile: float = 0.8) -> NewProductSplit:
    """Split products by launch time at ``cut`` (default: the ``cut_quantile`` quantile of the
    timestamps); launches after it alternate, in launch order, between validation and test."""
    require_columns(events, _NEEDED, "new-product tasks")
    if len(events) == 0:
        raise ValueError("the log has no events")
    if cut is None:
        if not 0 < cut_quantile < 1:
            raise ValueError(f"cut_quantile must be in (0, 1), got {cut_quantile}")
        cut = events["timestamp"].quantile(cut_quantile)
    cut = pd.Timestamp(cut)
    launch = launch_records(events)["launch"]
    after = launch.index[launch >= cut]
    if len(after) < 2:
        raise ValueError(f"{len(after)} product(s) launched on or after {cut}: validation and test need at least "
                         "one each; move the cut earlier")
    customers = pd.Index(np.sort(events.loc[events["timestamp"] < cut, "user_id"].unique()), name="user_id")
    return NewProductSplit(cut, launch.index[launch < cut], after[0::2], after[1::2], customers)


@dataclass
class BuyerTasks:
    """One task per product: support customer codes ``(tasks, k)`` (0 = padding), bool
    ``(tasks, n_codes)`` candidates (known customers outside the support) and relevant (query
    buyers among them); ``items`` names the products in task order."""

    items: pd.Index
    support: Tensor
    candidates: Tensor
    relevant: Tensor

    @property
    def num_tasks(self) -> int:
        return len(self.items)

    @property
    def support_mask(self) -> Tensor:
        return self.support != 0

    def select(self, index) -> BuyerTasks:
        index = torch.as_tensor(index)
        return BuyerTasks(self.items[index.numpy()], self.support[index], self.candidates[index], self.relevant[index])


def buyer_tasks(events: pd.DataFrame, items, customers: pd.Index, k: int, n_query: int) -> BuyerTasks:
    """Tasks for ``items``: each product's first ``k`` distinct buyers among ``customers`` (in
    time) are its support, the next up to ``n_query`` its query. Products with fewer than ``k + 1``
    such buyers are left out. ``k = 0`` gives pure cold start: no support, every buyer a target."""
    require_columns(events, _NEEDED, "new-product tasks")
    if k < 0 or n_query < 1:
        raise ValueError(f"need k >= 0 and n_query >= 1, got {k} and {n_query}")
    sales = events[events["item_id"].isin(pd.Index(items)) & events["user_id"].isin(customers)]
    sales = sales.sort_values(["item_id", "timestamp"], kind="stable").drop_duplicates(["item_id", "user_id"])
    sales = sales.assign(rank=sales.groupby("item_id", sort=False).cumcount())
    sales = sales[sales["rank"] < k + n_query]
    sizes = sales.groupby("item_id", sort=False)["rank"].max() + 1
    kept = pd.Index([i for i in pd.Index(items) if sizes.get(i, 0) > k], name="item_id")
    sales = sales[sales["item_id"].isin(kept)]
    task = kept.get_indexer(sales["item_id"])
    code = customers.get_indexer(sales["user_id"]) + 1
    rank = sales["rank"].to_numpy()
    n_codes = len(customers) + 1
    support = torch.zeros(len(kept), k, dtype=torch.int64)
    in_support = rank < k
    support[task[in_support], rank[in_support]] = torch.as_tensor(code[in_support], dtype=torch.int64)
    relevant = torch.zeros(len(kept), n_codes, dtype=torch.bool)
    relevant[task[~in_support], code[~in_support]] = True
    candidates = torch.ones(len(kept), n_codes, dtype=torch.bool)
    candidates[:, 0] = False
    if k:
        candidates.scatter_(1, support, False)
    return BuyerTasks(kept, support, candidates, relevant)


__all__ = ["BuyerTasks", "NewProductSplit", "buyer_tasks", "launch_records", "new_product_split"]
