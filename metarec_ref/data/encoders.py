"""Id encoders and the item catalog for event logs validated by :mod:`metarec_ref.data.schema`.

``Encoders.fit(events)`` maps raw ids to contiguous int64 codes for the models. Code ``0`` of each
vocabulary (item, category, scenario) is reserved for *unknown*: ids not seen when fitting, and the
padding slots of a :class:`~metarec_ref.batch.TaskBatch`. Known ids get codes ``1..n``, so
``FeatureSpec.n_items == number of known items + 1``.

Item-level dense features (``ItemCatalog.dense``, last dim ``n_dense``):

- ``log_price``: ``log1p`` of the item's median price, standardised with the mean / std over the
  fitted items (0 when the log has no price or the item is unknown);
- then each column of ``item_feature_columns`` (numeric, per-item median), standardised likewise.

``ItemCatalog`` holds every known item with its features so evaluation can score all candidate
items (full ranking), and ``first_seen`` so it can tell which items existed before a time.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from metarec_ref.batch import UNKNOWN, FeatureSpec
from metarec_ref.data.schema import numeric_column


def _vocabulary(values: pd.Series) -> pd.Index:
    uniques = pd.unique(values.to_numpy())
    try:
        return pd.Index(np.sort(uniques))
    except TypeError:  # mixed types: keep first-seen order
        return pd.Index(uniques)


def _encode(vocab: pd.Index, values) -> np.ndarray:
    codes = vocab.get_indexer(pd.Index(values))
    return (codes + 1).astype(np.int64)  # -1 (unseen) -> 0 = UNKNOWN


def _standardise(x: np.ndarray) -> np.ndarray:
    std = x.std()
    return (x - x.mean()) / (std if std > 0 else 1.0)


@dataclass
class Encoders:
    """Vocabularies (raw id -> code, 0 = unknown) and per-item features learned from a log."""

    items: pd.Index
    categories: pd.Index
    scenarios: pd.Index
    item_category: np.ndarray  # (n_items + 1,) category code of each item code
    item_dense: np.ndarray  # (n_items + 1, n_dense) float32
    item_first_seen: np.ndarray  # (n_items + 1,) datetime64[ns]; NaT for code 0
    dense_names: tuple[str, ...]
    users: pd.Index | None = None  # None: batches carry no user feature

    def with_users(self, events: pd.DataFrame) -> "Encoders":
        """A copy that also encodes users: every ``user_id`` of ``events`` gets a code.

        Pass the log whose users a model may know (e.g. the training period only): any other
        user, such as one who arrives later, maps to code 0, the shared "unknown user".
        Batches built with the copy carry ``x["user"]`` and its ``spec.n_users`` is > 0.
        """
        if "user_id" not in events:
            raise ValueError(f"column 'user_id' is missing; found {list(events.columns)}")
        return replace(self, users=_vocabulary(events["user_id"]))

    @classmethod
    def fit(
        cls, events: pd.DataFrame, item_feature_columns: Sequence[str] = ()
    ) -> "Encoders":
        """Learn vocabularies and item features from a validated event log.

        Fit on the log whose items the catalog should know (e.g. all items, or only those of
        the training period); anything else maps to code 0.
        """
        missing = [c for c in ("item_id", "timestamp", *item_feature_columns) if c not in events]
        if missing:
            raise ValueError(f"column '{missing[0]}' is missing; found {list(events.columns)}")
        items = _vocabulary(events["item_id"])
        codes = _encode(items, events["item_id"])
        n = len(items) + 1
        by_item = pd.DataFrame({"code": codes})
        if "category" in events:
            categories = _vocabulary(events["category"])
            by_item["category"] = _encode(categories, events["category"])
        else:
            categories = pd.Index([])
            by_item["category"] = UNKNOWN
        scenarios = _vocabulary(events["scenario"]) if "scenario" in events else pd.Index([])
        item_category = np.zeros(n, dtype=np.int64)
        # An item's category is its most frequent one in the log.
        mode = by_item.groupby(["code", "category"]).size().reset_index(name="n")
        mode = mode.sort_values(["code", "n"], ascending=[True, False], kind="stable")
        mode = mode.drop_duplicates("code")
        item_category[mode["code"].to_numpy()] = mode["category"].to_numpy()

        dense_cols = []
        names = ["log_price", *item_feature_columns]
        for name in names:
            column = np.zeros(n, dtype=np.float64)
            source = "price" if name == "log_price" else name
            if source in events:
                values = numeric_column(events, source).to_numpy(dtype=np.float64)
                if name == "log_price":
                    values = np.log1p(np.clip(values, 0, None))
                per_item = pd.Series(values).groupby(codes).median()
                column[per_item.index.to_numpy()] = _standardise(per_item.to_numpy())
            dense_cols.append(column)
        item_dense = np.stack(dense_cols, axis=1).astype(np.float32)
        item_dense[UNKNOWN] = 0.0

        first = pd.Series(events["timestamp"].to_numpy()).groupby(codes).min()
        first_seen = np.full(n, np.datetime64("NaT"), dtype="datetime64[ns]")
        first_seen[first.index.to_numpy()] = first.to_numpy()
        return cls(items, categories, scenarios, item_category, item_dense, first_seen, tuple(names))

    @property
    def spec(self) -> FeatureSpec:
        """Embedding-table sizes (each includes the reserved code 0)."""
        return FeatureSpec(
            n_items=len(self.items) + 1,
            n_categories=len(self.categories) + 1,
            n_scenarios=len(self.scenarios) + 1,
            n_dense=self.item_dense.shape[1],
            n_users=0 if self.users is None else len(self.users) + 1,
        )

    def encode_users(self, user_ids) -> np.ndarray:
        """Raw user ids -> codes (0 for unseen ids); requires :meth:`with_users`."""
        if self.users is None:
            raise ValueError("these encoders have no user vocabulary; call encoders.with_users(events) first")
        return _encode(self.users, user_ids)

    def encode_items(self, item_ids) -> np.ndarray:
        """Raw item ids -> codes (0 for unseen ids)."""
        return _encode(self.items, item_ids)

    def encode_scenarios(self, scenarios) -> np.ndarray:
        """Raw scenarios -> codes (0 for unseen values or a log without scenarios)."""
        return _encode(self.scenarios, scenarios)

    def decode_items(self, codes) -> np.ndarray:
        """Codes -> raw item ids (None for code 0)."""
        codes = np.asarray(codes)
        raw = np.asarray(self.items, dtype=object)[np.clip(codes - 1, 0, None)]
        raw[codes == UNKNOWN] = None
        return raw

    def catalog(self, device: torch.device | str = "cpu") -> "ItemCatalog":
        """All known items with their features, for full ranking."""
        n = len(self.items) + 1
        return ItemCatalog(
            item=torch.arange(n, dtype=torch.int64, device=device),
            category=torch.as_tensor(self.item_category, device=device),
            dense=torch.as_tensor(self.item_dense, device=device),
            first_seen=self.item_first_seen,
        )


@dataclass
class ItemCatalog:
    """Every item code with its features; row ``i`` is item code ``i`` (row 0 = unknown)."""

    item: Tensor  # (n_items,) int64, equal to arange(n_items)
    category: Tensor  # (n_items,) int64
    dense: Tensor  # (n_items, n_dense) float32
    first_seen: np.ndarray  # (n_items,) datetime64[ns], NaT for code 0

    @property
    def n_items(self) -> int:
        return int(self.item.shape[0])

    @property
    def device(self) -> torch.device:
        return self.item.device

    def features(self, scenario: Tensor, user: Tensor | None = None) -> dict[str, Tensor]:
        """Feature dict for scoring every item in every task: leaves ``(tasks, n_items, ...)``.

        scenario: ``(tasks,)`` scenario code of each task (its shopping context); user:
        ``(tasks,)`` user code of each task, for models with a user feature. The leaves are
        expanded views (no copies), so memory stays ``O(n_items)``.
        """
        if scenario.dim() != 1:
            raise ValueError(f"scenario must have shape (tasks,), got {tuple(scenario.shape)}")
        if user is not None and tuple(user.shape) != tuple(scenario.shape):
            raise ValueError(f"user must have shape {tuple(scenario.shape)} like scenario, got {tuple(user.shape)}")
        tasks, n = scenario.shape[0], self.n_items
        scenario = scenario.to(self.device, torch.int64)
        features = {
            "item": self.item.expand(tasks, n),
            "category": self.category.expand(tasks, n),
            "scenario": scenario[:, None].expand(tasks, n),
            "dense": self.dense.expand(tasks, n, self.dense.shape[1]),
        }
        if user is not None:
            features["user"] = user.to(self.device, torch.int64)[:, None].expand(tasks, n)
        return features

    def available(self, before: pd.Timestamp | str | None = None) -> Tensor:
        """Bool ``(n_items,)``: known items (code > 0) first seen strictly before ``before``."""
        mask = np.ones(self.n_items, dtype=bool)
        mask[UNKNOWN] = False
        if before is not None:
            mask &= self.first_seen < np.datetime64(pd.Timestamp(before), "ns")
        return torch.as_tensor(mask, device=self.device)


__all__ = [
    "Encoders",
    "ItemCatalog",
]
