"""Chapter 8 on a log written in yet another layout, passed the way the README tells readers to."""

from __future__ import annotations

import numpy as np
import pandas as pd

from metarec_ref.data import generate
from tests.notebooks.harness import run_notebook


def write_foreign_log(path) -> int:
    log = generate(n_users=1200, n_items=150, n_interactions=20000, initial_users=0.3, seed=7).events
    rng = np.random.default_rng(7)
    frame = pd.DataFrame({
        "Kunde": log["user_id"].map(lambda u: f"k{u:05d}"),
        "Artikel": log["item_id"].map(lambda i: f"A{i}"),
        "Zeit": log["timestamp"].dt.strftime("%Y-%m-%dT%H:%M:%S"),  # string timestamps, ISO with a T
        "Typ": np.where(log["event"] == "purchase", "kauf", np.where(rng.random(len(log)) < 0.5, "klick", "korb")),
        "Land": np.array(["AT", "CH"])[log["scenario"] % 2],
    })
    frame.to_csv(path, index=False, sep=",")
    return len(frame)


def test_your_data_chapter_on_a_foreign_log(tmp_path):
    data = tmp_path / "export.csv"
    n_rows = write_foreign_log(data)
    values = run_notebook(
        "08_your_data.ipynb", tmp_path,
        DATA_PATH=str(data),
        COLUMNS={"Kunde": "user_id", "Artikel": "item_id", "Zeit": "timestamp", "Typ": "event", "Land": "scenario"},
        EVENT_MAP={"klick": 0, "korb": 1, "kauf": 1},
        META_STEPS=20, CUT_QUANTILE=0.7, DEVICE="cpu",
    )
    assert values["own_events"] <= n_rows and values["own_users"] == 1200
    assert 0.2 < values["own_positive_share"] < 0.9  # carts and purchases are positives, clicks not
    assert values["own_learner"] == "MAML"
    assert values["own_test_tasks"] > 5
    for key in ("auc", "ndcg10"):
        assert values[f"own_{key}_verdict"] in ("better", "worse", "no detectable difference")
        assert values[f"own_{key}_reference"] in ("popularity", "global", "fine-tune")
