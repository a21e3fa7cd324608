"""Command line for distributed meta-training: a JSON run configuration in, a JSON summary out.

Launch one rank per process with ``torchrun`` (or one process with plain ``python -m``)::

    torchrun --nproc_per_node=2 -m metarec_ref.recipes.distributed_cli --config run.json
    python -m metarec_ref.recipes.distributed_cli --config run.json --set meta_steps=10
    python -m metarec_ref.recipes.distributed_cli --help      # the configuration keys

Rank 0 prepares the tasks (from a synthetic log through
:func:`~metarec_ref.recipes.pipeline.build_cold_start_tasks`, or from a task file written by
:func:`~metarec_ref.data.task_files.save_tasks`) and every rank meta-trains with
:class:`~metarec_ref.train.distributed.DistributedMetaTrainer`.
"""

from __future__ import annotations

import argparse
import json
import os
import time
import warnings
from collections.abc import Iterable
from dataclasses import asdict, dataclass, fields

import torch
import torch.distributed as dist

from metarec_ref.batch import FeatureSpec, TaskBatch
from metarec_ref.data.negatives import NegativeSampling
from metarec_ref.data.synthetic import SyntheticConfig, generate
from metarec_ref.data.task_files import load_tasks
from metarec_ref.meta.learners import algorithm, build_learner
from metarec_ref.meta.maml import InnerLoopConfig
from metarec_ref.models.recommenders import EventEncoder, build_model
from metarec_ref.recipes.pipeline import ColdStartCut, build_cold_start_tasks
from metarec_ref.runtime import peak_rss_mb, seed_everything
from metarec_ref.train.distributed import (
    DistributedContext,
    DistributedMetaTrainer,
    init_distributed,
    shutdown_distributed,
)
from metarec_ref.train.meta_trainer import MetaTrainConfig


@dataclass
class DistributedRunConfig:
    """A meta-training run from a JSON file: data, learner, outer loop, checkpoint."""

    n_interactions: int = 100_000  # synthetic log size
    n_users: int | None = None  # default n_interactions // 50
    n_items: int | None = None  # default n_interactions // 200
    k_support: int = 5
    n_query: int = 10
    n_neg: int = 1
    cut_quantile: float = 0.8
    tasks: str | None = None  # a save_tasks file: skip the synthetic log
    model: str = "mlp"
    algorithm: str = "maml"
    inner_steps: int = 1
    inner_lr: float = 0.1
    first_order: bool = False
    adapt: str = "all"
    meta_steps: int = 100
    meta_batch_size: int = 32
    outer_lr: float = 3e-3
    eval_every: int = 50
    seed: int = 0
    checkpoint: str | None = None  # written at the end (and every checkpoint_every steps)
    checkpoint_every: int | None = None
    resume: bool = False  # continue from `checkpoint` when the file exists
    device: str = "auto"
    threads: int = 1  # torch threads per rank
    result: str | None = None  # rank 0 writes the summary JSON here too

    def __post_init__(self) -> None:
        if self.resume and not self.checkpoint:
            raise ValueError("resume=true needs a checkpoint path")
        if self.threads < 1:
            raise ValueError(f"threads must be >= 1, got {self.threads}")

    @classmethod
    def from_json(cls, path: str | os.PathLike) -> "DistributedRunConfig":
        """Read a config file; unknown keys are an error (a typo would otherwise be ignored)."""
        with open(path) as f:
            values = json.load(f)
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown config keys {unknown} in {os.fspath(path)!r}; known keys: {sorted(known)}")
        return cls(**values)


def prepare_synthetic_tasks(cfg: DistributedRunConfig) -> tuple[FeatureSpec, TaskBatch, TaskBatch]:
    """Synthetic log -> the cold-start pipeline -> training and validation task batches."""
    n = cfg.n_interactions
    log = generate(SyntheticConfig(n_users=cfg.n_users or max(50, n // 50), n_items=cfg.n_items or max(100, n // 200),
                                   n_interactions=n, seed=cfg.seed))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # a few duplicate rows are dropped
        negatives = NegativeSampling(cfg.n_neg) if cfg.n_neg else None
        cut = ColdStartCut(cfg.k_support, cfg.n_query, negatives, cfg.cut_quantile, cells=(), seed=cfg.seed)
        tasks = build_cold_start_tasks(log.events, cut, validate=True)
    return tasks.spec, tasks.train, tasks.val


def _broadcast_tasks(value, ctx: DistributedContext):
    """Rank 0's object on every rank (tensors travel pickled; fine for task tensors of a few MB)."""
    if not ctx.active:
        return value
    payload = [value if ctx.is_main else None]
    dist.broadcast_object_list(payload, src=0, device=ctx.device if ctx.backend == "nccl" else None)
    return payload[0]


def run(cfg: DistributedRunConfig, ctx: DistributedContext | None = None) -> dict:
    """Prepare tasks (rank 0), meta-train on every rank, checkpoint; return the summary (all ranks)."""
    ctx = ctx or init_distributed(cfg.device)
    torch.set_num_threads(cfg.threads)
    seed_everything(cfg.seed)
    start = time.perf_counter()
    if cfg.tasks:
        spec, train, val, _ = load_tasks(cfg.tasks)
    else:
        spec, train, val = _broadcast_tasks(prepare_synthetic_tasks(cfg) if ctx.is_main else None, ctx)
    prepare_s = time.perf_counter() - start

    inner = InnerLoopConfig(cfg.inner_steps, cfg.inner_lr, cfg.first_order, cfg.adapt)
    # Learners without an inner loop (ProtoNet, MatchingNet) embed events instead of scoring them.
    model = build_model(cfg.model, spec) if algorithm(cfg.algorithm).inner_loop else EventEncoder(spec)
    learner = build_learner(cfg.algorithm, model, inner).to(ctx.device)
    config = MetaTrainConfig(meta_batch_size=cfg.meta_batch_size, outer_lr=cfg.outer_lr, meta_steps=cfg.meta_steps,
                             eval_every=cfg.eval_every, patience=None, restore_best=False, seed=cfg.seed)
    trainer = DistributedMetaTrainer(learner, train, val, config, ctx=ctx, checkpoint_path=cfg.checkpoint,
                                     checkpoint_every=cfg.checkpoint_every if cfg.checkpoint else None)
    if cfg.resume and os.path.exists(cfg.checkpoint):
        trainer.load_checkpoint(cfg.checkpoint)
    first_step = trainer.step
    start, cpu_start = time.perf_counter(), time.process_time()
    history = trainer.fit()
    if ctx.device.type == "cuda":
        torch.cuda.synchronize(ctx.device)
    train_s, cpu_s = time.perf_counter() - start, time.process_time() - cpu_start
    if cfg.checkpoint and not cfg.checkpoint_every:
        trainer.save_checkpoint(cfg.checkpoint)

    stats = {"rank": ctx.rank, "train_seconds": train_s, "cpu_seconds": cpu_s, "peak_rss_mb": peak_rss_mb()}
    per_rank = [stats]
    if ctx.active:
        per_rank = [None] * ctx.world_size
        dist.all_gather_object(per_rank, stats)
    steps = trainer.step - first_step
    last = history.iloc[-1] if len(history) else {}
    summary = {
        "world_size": ctx.world_size,
        "backend": ctx.backend or "none",
        "device": str(ctx.device),
        "algorithm": cfg.algorithm,
        "train_tasks": train.num_tasks,
        "meta_batch_size": cfg.meta_batch_size,
        "steps": steps,
        "final_step": trainer.step,
        "prepare_seconds": round(prepare_s, 3),
        "train_seconds": round(max(s["train_seconds"] for s in per_rank), 3),
        "ms_per_step": round(1000 * max(s["train_seconds"] for s in per_rank) / max(steps, 1), 2),
        "train_loss": None if not len(history) else float(last["train_loss"]),
        "val_loss": None if not len(history) else float(last["val_loss"]),
        "val_auc": None if not len(history) else float(last["val_auc"]),
        "cpu_seconds_per_rank": [round(s["cpu_seconds"], 2) for s in per_rank],  # CPU time of each rank's loop
        "peak_rss_mb_per_rank": [round(s["peak_rss_mb"], 1) for s in per_rank],
    }
    if ctx.is_main and cfg.result:
        with open(cfg.result, "w") as f:
            json.dump(summary, f)
    return summary


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m metarec_ref.recipes.distributed_cli",
        description="Data-parallel meta-training with torch.distributed. Launch several ranks with "
                    "'torchrun --nproc_per_node=N -m metarec_ref.recipes.distributed_cli --config run.json'; "
                    "a plain 'python -m' run is one rank.",
        epilog="Config keys (JSON object, all optional): "
               + ", ".join(f"{f.name}={f.default!r}" for f in fields(DistributedRunConfig)),
    )
    parser.add_argument("--config", help="JSON file with DistributedRunConfig keys")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                        help="override config keys, values in JSON (e.g. meta_steps=10 checkpoint='\"run.pt\"')")
    return parser


def _overrides(items: Iterable[str]) -> dict:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"--set expects KEY=VALUE, got {item!r}")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value  # a bare string such as checkpoint=run.pt
    return out


def main(argv: list[str] | None = None) -> dict:
    """Command line entry point; rank 0 prints the summary as one JSON line."""
    args = _parser().parse_args(argv)
    values = {}
    if args.config:
        values = asdict(DistributedRunConfig.from_json(args.config))
    values.update(_overrides(args.set))
    known = {f.name for f in fields(DistributedRunConfig)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"unknown config keys {unknown}; known keys: {sorted(known)}")
    cfg = DistributedRunConfig(**values)
    ctx = init_distributed(cfg.device)
    try:
        summary = run(cfg, ctx)
        if ctx.is_main:
            print(json.dumps(summary), flush=True)
    finally:
        shutdown_distributed(ctx)
    return summary



__all__ = [
    "DistributedRunConfig",
    "main",
    "prepare_synthetic_tasks",
    "run",
]


if __name__ == "__main__":
    main()
