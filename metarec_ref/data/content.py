"""Content features of a product from its own record: description, price and stock-code family.

:class:`ContentEncoder` is fitted on the training products only (vocabulary statistics, price
scale, families) and then encodes any product, new ones included:

- the description as TF-IDF weighted character n-grams (``" red heart "`` -> ``" re"``, ``"red"``,
  ...), hashed into ``n_buckets`` columns so that no vocabulary has to be stored, each row scaled
  to unit length;
- the price as its standardised logarithm (a missing or non-positive price gives 0);
- the stock-code family (the code's first ``family_chars`` characters) one-hot, over the families
  seen in training (an unseen family gives zeros).

The hash is a fixed polynomial over the characters, so the same text gives the same columns on
every machine and in every process.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from torch import Tensor


def char_ngrams(text: str, n: int = 3) -> list[str]:
    """Character n-grams of the lower-cased text padded by one space (``"ab"`` -> ``[" ab", "ab "]``)."""
    padded = f" {' '.join(str(text).lower().split())} "
    return [padded[i:i + n] for i in range(len(padded) - n + 1)] if len(padded) >= n else []


def _bucket(gram: str, n_buckets: int) -> int:
    value = 0
    for char in gram:
        value = (value * 1_000_003 + ord(char)) % 2_147_483_647
    return value % n_buckets


def _counts(texts, n: int, n_buckets: int) -> np.ndarray:
    counts = np.zeros((len(texts), n_buckets), dtype=np.float32)
    for row, text in enumerate(texts):
        for gram in char_ngrams(text, n):
            counts[row, _bucket(gram, n_buckets)] += 1
    return counts


@dataclass
class ContentEncoder:
    """Description n-grams, log price and family; :meth:`fit` on training products' records."""

    idf: np.ndarray
    price_mean: float
    price_std: float
    families: pd.Index
    n: int = 3
    family_chars: int = 3

    @classmethod
    def fit(cls, records: pd.DataFrame, *, n: int = 3, n_buckets: int = 2048, family_chars: int = 3) -> ContentEncoder:
        """records: indexed by item id, with ``description`` and ``price`` (as from
        :func:`~metarec_ref.data.new_products.launch_records`)."""
        for name in ("description", "price"):
            if name not in records.columns:
                raise ValueError(f"records need a '{name}' column; found {list(records.columns)}")
        if len(records) == 0:
            raise ValueError("no training products to fit the content encoder on")
        present = _counts(records["description"].tolist(), n, n_buckets) > 0
        idf = np.log((1 + len(records)) / (1 + present.sum(0))) + 1.0  # smoothed, as in common TF-IDF
        log_price = _log_price(records["price"])
        known = log_price[~np.isnan(log_price)]
        mean, std = (float(known.mean()), float(known.std())) if len(known) else (0.0, 1.0)
        families = pd.Index(sorted(set(_family(records.index, family_chars))))
        return cls(idf.astype(np.float32), mean, std if std > 0 else 1.0, families, n, family_chars)

    @property
    def dim(self) -> int:
        return len(self.idf) + 1 + len(self.families)

    def transform(self, records: pd.DataFrame) -> Tensor:
        """``(products, dim)`` float32: [description n-grams | log price | family one-hot]."""
        text = _counts(records["description"].tolist(), self.n, len(self.idf)) * self.idf
        norms = np.linalg.norm(text, axis=1, keepdims=True)
        text = np.divide(text, norms, out=np.zeros_like(text), where=norms > 0)
        price = (_log_price(records["price"]) - self.price_mean) / self.price_std
        price = np.nan_to_num(price, nan=0.0).astype(np.float32)[:, None]
        family = np.zeros((len(records), len(self.families)), dtype=np.float32)
        column = self.families.get_indexer(_family(records.index, self.family_chars))
        family[np.flatnonzero(column >= 0), column[column >= 0]] = 1.0
        return torch.from_numpy(np.concatenate([text, price, family], axis=1))


def _log_price(price: pd.Series) -> np.ndarray:
    values = pd.to_numeric(price, errors="coerce").to_numpy(dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(values > 0, np.log(values), np.nan)


def _family(items, chars: int) -> list[str]:
    return [str(item)[:chars] for item in items]


__all__ = ["ContentEncoder", "char_ngrams"]
