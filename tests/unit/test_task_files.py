"""Task files: what save_tasks writes, load_tasks reads back unchanged."""

from __future__ import annotations

from dataclasses import fields

import pytest
import torch

from metarec_ref.batch import FeatureSpec, TaskBatch
from metarec_ref.data import load_tasks, save_tasks
from metarec_ref.data.task_files import TASK_FILE_FORMAT
from tests.unit.helpers import make_dict_batch

SPEC = FeatureSpec(n_items=20, n_categories=3, n_scenarios=2, n_dense=2, n_users=5)


def _same(a: TaskBatch, b: TaskBatch) -> None:
    for f in fields(TaskBatch):
        x, y = getattr(a, f.name), getattr(b, f.name)
        if isinstance(x, dict):
            assert x.keys() == y.keys() and all(torch.equal(x[k], y[k]) and x[k].dtype == y[k].dtype for k in x)
        elif x is None:
            assert y is None
        else:
            assert torch.equal(x, y) and x.dtype == y.dtype


def test_round_trip(tmp_path):
    train, val = make_dict_batch(tasks=4, seed=1), make_dict_batch(tasks=3, seed=2)
    train.task_ids = torch.arange(4)
    path = tmp_path / "tasks.pt"
    save_tasks(path, SPEC, train, val, source="unit test", n=3)
    spec, train2, val2, extra = load_tasks(path)
    assert spec == SPEC and extra == {"source": "unit test", "n": 3}
    _same(train, train2)
    _same(val, val2)
    assert not (tmp_path / "tasks.pt.tmp").exists()


def test_without_validation_and_bad_files(tmp_path):
    path = tmp_path / "tasks.pt"
    save_tasks(path, SPEC, make_dict_batch(tasks=2))
    assert load_tasks(path)[2] is None
    state = torch.load(path, weights_only=True)
    torch.save({**state, "format": TASK_FILE_FORMAT + 1}, path)
    with pytest.raises(ValueError, match="task file format"):
        load_tasks(path)
    with pytest.raises(ValueError, match="no task file"):
        load_tasks(tmp_path / "missing.pt")
