"""New products: split by launch, tasks from first buyers, content from the launch record only."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from metarec_ref.data.content import ContentEncoder, char_ngrams
from metarec_ref.data.new_products import buyer_tasks, launch_records, new_product_split


def _log() -> pd.DataFrame:
    t = pd.Timestamp("2024-01-01")
    rows = [  # (customer, product, day, description, price)
        (1, "22001", 0, "RED HEART MUG", 2.0), (2, "22001", 1, "RED HEART MUG", 2.0),
        (3, "22001", 2, "RED HEART MUG", 2.5), (1, "85002", 3, "WHITE LANTERN", 4.0),
        (2, "85002", 4, "WHITE LANTERN", 4.0), (4, "85002", 5, "WHITE LANTERN", 4.0),
        # launched after the cut (day 10)
        (2, "22003", 11, "RED HEART CUP", 1.5), (1, "22003", 12, "RED HEART CUP", 1.5),
        (3, "22003", 13, "RED HEART CUP, NEW", 9.0), (2, "22003", 14, "RED HEART CUP", 1.5),
        (4, "85004", 15, "BLUE LANTERN", 3.0), (3, "85004", 16, "BLUE LANTERN", 3.0),
        (9, "85004", 17, "BLUE LANTERN", 3.0),  # customer 9 is new after the cut: not rankable
        (1, "99005", 18, "PAPER CRANE", 0.0),
    ]
    return pd.DataFrame([{"user_id": u, "item_id": i, "timestamp": t + pd.Timedelta(days=d), "description": s,
                          "price": p} for u, i, d, s, p in rows])


def test_split_by_launch_time_and_by_product():
    split = new_product_split(_log(), "2024-01-10")
    assert list(split.train_items) == ["22001", "85002"]
    assert list(split.valid_items) == ["22003", "99005"] and list(split.test_items) == ["85004"]
    assert list(split.customers) == [1, 2, 3, 4]  # known before the cut
    with pytest.raises(ValueError, match="move the cut earlier"):
        new_product_split(_log(), "2024-01-18")


def test_launch_record_is_the_first_sale_only():
    records = launch_records(_log())
    # a later sale's description and price (day 13) never reach the product's record
    assert records.loc["22003", "description"] == "RED HEART CUP" and records.loc["22003", "price"] == 1.5
    assert records.loc["22003", "launch"] == pd.Timestamp("2024-01-12")


@pytest.mark.parametrize("k", [0, 1, 2])
def test_tasks_take_the_first_distinct_buyers_as_support(k):
    log, split = _log(), new_product_split(_log(), "2024-01-10")
    tasks = buyer_tasks(log, ["22003", "85004"], split.customers, k, n_query=5)
    code = {c: i + 1 for i, c in enumerate(split.customers)}
    buyers = {"22003": [2, 1, 3], "85004": [4, 3]}  # distinct, in time; customer 9 is unknown
    expected = [item for item in ("22003", "85004") if len(buyers[item]) > k]
    assert list(tasks.items) == expected
    for row, item in enumerate(expected):
        assert tasks.support[row].tolist() == [code[c] for c in buyers[item][:k]]
        assert torch.nonzero(tasks.relevant[row]).flatten().tolist() == sorted(code[c] for c in buyers[item][k:])
        assert not tasks.candidates[row, 0] and not (tasks.candidates[row] & torch.isin(
            torch.arange(5), tasks.support[row])).any()  # support buyers are never ranked
        assert (tasks.relevant[row] <= tasks.candidates[row]).all()


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="column 'timestamp' is missing"):
        launch_records(pd.DataFrame({"user_id": [1], "item_id": [2]}))
    with pytest.raises(ValueError, match="need k >= 0"):
        buyer_tasks(_log(), ["22003"], pd.Index([1, 2]), -1, 5)


def test_content_is_fitted_on_training_products_and_encodes_new_ones():
    records = launch_records(_log())
    split = new_product_split(_log(), "2024-01-10")
    encoder = ContentEncoder.fit(records.loc[split.train_items], n_buckets=256)
    new = encoder.transform(records.loc[["22003", "85004", "99005"]])
    assert new.shape == (3, 256 + 1 + 2) and new.dtype == torch.float32
    text = new[:, :256]
    torch.testing.assert_close(text[:2].norm(dim=1), torch.ones(2))
    # "RED HEART CUP" shares more n-grams with "RED HEART MUG" than "BLUE LANTERN" does
    train = encoder.transform(records.loc[split.train_items])[:, :256]
    assert float(text[0] @ train[0]) > float(text[1] @ train[0])
    assert float(text[1] @ train[1]) > float(text[0] @ train[1])  # the lanterns
    # families seen in training are one-hot ("220", "850"); the unseen "990" is all zeros
    assert new[0, -2:].tolist() == [1.0, 0.0] and new[1, -2:].tolist() == [0.0, 1.0] and new[2, -2:].tolist() == [0, 0]
    # a price of 0 has no logarithm: it encodes as the mean (0 after standardising)
    assert float(new[2, 256]) == 0.0
    assert np.isclose(float(new[0, 256]), (np.log(1.5) - encoder.price_mean) / encoder.price_std)


def test_char_ngrams_ignore_case_and_spacing():
    assert char_ngrams("Red  HEART") == char_ngrams("red heart")
    assert char_ngrams("ab") == [" ab", "ab "] and char_ngrams("") == []
