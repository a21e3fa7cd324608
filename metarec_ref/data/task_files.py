"""Prepared task tensors on disk, so several processes (e.g. distributed ranks) skip the data pipeline.

A task file holds the feature spec, the training and (optionally) validation task batches and
any extra plain values; it loads with ``torch.load(..., weights_only=True)``.
"""

from __future__ import annotations

import os
from dataclasses import asdict, fields

import torch

from metarec_ref.batch import FeatureSpec, TaskBatch

TASK_FILE_FORMAT = 1


def _batch_to_dict(batch: TaskBatch) -> dict:
    return {f.name: getattr(batch, f.name) for f in fields(TaskBatch)}


def save_tasks(path: str | os.PathLike, spec: FeatureSpec, train: TaskBatch, val: TaskBatch | None = None,
               **extra) -> None:
    """Write prepared task tensors (plain tensors and numbers: loads with ``weights_only=True``)."""
    state = {"format": TASK_FILE_FORMAT, "spec": asdict(spec), "train": _batch_to_dict(train.to("cpu")),
             "val": None if val is None else _batch_to_dict(val.to("cpu")), "extra": dict(extra)}
    tmp = f"{os.fspath(path)}.tmp"
    torch.save(state, tmp)
    os.replace(tmp, path)  # readers never see a half-written file


def load_tasks(path: str | os.PathLike) -> tuple[FeatureSpec, TaskBatch, TaskBatch | None, dict]:
    """Read :func:`save_tasks`: ``(spec, train, val, extra)``."""
    if not os.path.exists(path):
        raise ValueError(f"no task file at {os.fspath(path)!r}; write one with save_tasks or drop 'tasks'")
    state = torch.load(path, map_location="cpu", weights_only=True)
    if state.get("format") != TASK_FILE_FORMAT:
        raise ValueError(f"task file format {state.get('format')!r} is not {TASK_FILE_FORMAT}")
    val = None if state["val"] is None else TaskBatch(**state["val"])
    return FeatureSpec(**state["spec"]), TaskBatch(**state["train"]), val, state["extra"]


__all__ = [
    "TASK_FILE_FORMAT",
    "load_tasks",
    "save_tasks",
]
