"""One way to do each thing: one splitter of held-out users, one first-seen rule, one results table, one Holm
path, one set of Online Retail rules, narrow faces, and no recipe that tests an algorithm's name."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from metarec_ref.data import ProtocolSplit, generate, protocol_parts, split_users, temporal_cold_start_split
from metarec_ref.data.splits import first_seen
from metarec_ref.eval import compare_to_best, holm_verdicts, summarize, summarize_methods
from metarec_ref.meta import ALGORITHMS
from metarec_ref.recipes.online_retail import ranking_table

PACKAGE = Path(__file__).resolve().parents[2] / "metarec_ref"


@pytest.fixture(scope="module")
def log() -> pd.DataFrame:
    return generate(n_users=200, n_items=60, n_interactions=4000, initial_users=0.3, seed=4).events


def test_split_users_takes_exact_shares_of_one_permutation(log):
    users = log["user_id"].nunique()
    train, valid, test = split_users(log, (0.1, 0.2), seed=3)
    sizes = [part["user_id"].nunique() for part in (train, valid, test)]
    assert sizes == [users - round(0.1 * users) - round(0.2 * users), round(0.1 * users), round(0.2 * users)]
    groups = [set(part["user_id"]) for part in (train, valid, test)]
    assert not (groups[0] & groups[1] or groups[0] & groups[2] or groups[1] & groups[2])
    assert sum(len(part) for part in (train, valid, test)) == len(log)
    parts = protocol_parts(log, "held_out_users", ProtocolSplit(val_fraction=0.1, test_fraction=0.2, seed=3))
    assert [set(p["user_id"]) for p in (parts.train, parts.valid, parts.test)] == groups  # the protocol uses it
    fit, tasks = split_users(log, (0.3,), seed=3)
    assert tasks["user_id"].nunique() == round(0.3 * users) and len(fit) + len(tasks) == len(log)


def test_the_temporal_split_and_the_new_items_protocol_share_the_first_seen_rule(log):
    split = temporal_cold_start_split(log, 0.7)
    users = first_seen(log, "user_id", split.cut_time)
    assert np.array_equal(users.valid, split.valid_users) and np.array_equal(users.test, split.test_users)
    assert users.test_start == split.test_start
    parts = protocol_parts(log, "new_items", ProtocolSplit(cut_quantile=0.7))
    items = first_seen(log, "item_id", parts.cut_time)
    assert set(parts.test["item_id"]) == set(items.test)
    assert set(parts.valid["item_id"]) <= set(items.valid) and (parts.valid["timestamp"] < items.test_start).all()
    with pytest.raises(ValueError, match=r"only 0 item\(s\) first appear after the cut time"):
        first_seen(log, "item_id", log["timestamp"].max() + pd.Timedelta(days=1))


def test_one_seed_spread_in_every_results_table():
    gen = torch.Generator().manual_seed(1)
    seeds = torch.rand(3, 50, generator=gen, dtype=torch.float64)
    expected = float(np.std(seeds.mean(1).numpy(), ddof=1))
    assert summarize({"auc": seeds}).loc[0, "seed_std"] == pytest.approx(expected, rel=1e-12)
    per_task = {"a": {"auc": seeds}, "b": {"auc": seeds[0] * 0.5}}
    table = summarize_methods(per_task, n_boot=50).set_index("method")
    assert table.loc["a", "seed_std"] == pytest.approx(expected, rel=1e-12)
    assert (table.loc["b", "n_seeds"], table.loc["b", "seed_std"]) == (1, 0.0)  # one run: no spread
    ranked = ranking_table(per_task, ["b"], metrics=("auc",), n_boot=50).set_index("method")
    assert ranked.loc["a", "seed_std"] == pytest.approx(expected, rel=1e-12)
    assert ranked.loc["a", "ci_low"] == table.loc["a", "ci_low"] and ranked.loc["a", "ci_high"] == table.loc["a", "ci_high"]
    assert "seed_std" not in summarize({"auc": seeds[0]}).columns  # values without seeds have no spread


def test_one_holm_path():
    table = pd.DataFrame({"family": ["x", "x", "y", "y", "y"], "p_value": [0.01, 0.04, 0.01, 0.03, np.nan],
                          "verdict": ["better", "worse", "better", "better", "better"]})
    whole = holm_verdicts(table)  # sorted 0.01, 0.01, 0.03, 0.04 times 4, 3, 2, 1, then running maxima
    np.testing.assert_allclose(whole["p_holm"].to_numpy()[:4], [0.04, 0.06, 0.04, 0.06])
    assert np.isnan(whole["p_holm"].iloc[4])  # no p-value: not part of the family
    assert list(whole["verdict_holm"]) == ["better", "no detectable difference", "better",
                                            "no detectable difference", "no detectable difference"]
    split = holm_verdicts(table, by="family")
    np.testing.assert_allclose(split["p_holm"].to_numpy()[:4], [0.02, 0.04, 0.02, 0.03])
    members = holm_verdicts(table, members=[True, False, True, True, True])
    assert np.isnan(members.loc[1, "p_holm"]) and members.loc[0, "p_holm"] == pytest.approx(0.03)
    # compare_to_best's correction is this path over the rows that are comparisons at all.
    gen = torch.Generator().manual_seed(0)
    base = torch.rand(80, generator=gen)
    per_task = {"ref": {"auc": base}, "up": {"auc": base + 0.05}, "flat": {"auc": base + 0.001 * torch.randn(80)}}
    corrected = compare_to_best(per_task, ["ref"], "auc", n_boot=200, correction="holm")
    by_hand = holm_verdicts(compare_to_best(per_task, ["ref"], "auc", n_boot=200),
                            members=(corrected["method"] != "ref").to_numpy())
    assert list(corrected["verdict"]) == list(by_hand["verdict_holm"])


def test_the_cleaning_report_counts_the_loaders_own_rules():
    from metarec_ref.data.loaders import ONLINE_RETAIL_RULES, clean_online_retail, online_retail_rules
    from metarec_ref.recipes.online_retail import CLEANING_STEPS, online_retail_cleaning
    from tests.unit.helpers import raw_rows

    raw = raw_rows()
    rules = online_retail_rules(raw)
    assert tuple(rules) == ONLINE_RETAIL_RULES == CLEANING_STEPS[1:-1]
    kept = ~np.logical_or.reduce(list(rules.values()))
    _, report = online_retail_cleaning(raw)
    assert report.set_index("step").loc["non-product codes", "rows_left"] == kept.sum()
    with pytest.warns(UserWarning, match="duplicate"):
        assert len(clean_online_retail(raw)) == report["rows_left"].iloc[-1]


def test_the_meta_face_is_narrow_and_every_face_name_exists():
    for sub in ("meta", "models", "data", "eval", "train", "recipes", "book"):
        face = importlib.import_module(f"metarec_ref.{sub}")
        assert all(hasattr(face, name) for name in face.__all__), sub
        assert len(face.__all__) == len(set(face.__all__)), sub
    assert len(importlib.import_module("metarec_ref.meta").__all__) <= 25


def _name_tests(path: Path) -> list[str]:
    """Comparisons of a value with an algorithm's name (``x == "maml"``, ``x in ("protonet", ...)``)."""
    names = set(ALGORITHMS)
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if not isinstance(node, ast.Compare):
            continue
        for side in [node.left, *node.comparators]:
            constants = [side] if isinstance(side, ast.Constant) else getattr(side, "elts", [])
            hits = [c.value for c in constants if isinstance(c, ast.Constant) and c.value in names]
            if hits:
                found.append(f"{path.name}:{node.lineno} {hits}")
    return found


def test_no_recipe_tests_an_algorithms_name():
    found = [hit for path in sorted((PACKAGE / "recipes").glob("*.py")) for hit in _name_tests(path)]
    assert not found, f"recipes special-case algorithm names (use ALGORITHMS' fields): {found}"
