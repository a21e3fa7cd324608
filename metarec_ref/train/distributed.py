"""Data-parallel meta-training with ``torch.distributed``: one meta-batch, its tasks split over ranks.

Meta-training is embarrassingly parallel over tasks. Every rank draws the *same* global
meta-batch (its sampler is seeded identically), keeps its shard of the tasks, computes the
meta-gradient of its shard's mean loss, and the gradients are all-reduced so that every rank
holds the gradient of the mean over the full meta-batch:

    g = sum_r (n_r / N) * g_r        (n_r tasks on rank r, N = meta_batch_size)

which is exactly the single-process gradient, also when shards are unequal (N not divisible by
the number of ranks). Every rank then steps an identical optimizer and ends with identical
meta-parameters, as in PyTorch's ``DistributedDataParallel``. The all-reduce sits in the
optimizer's ``step``, so any learner whose ``outer_step`` fills ``.grad`` and calls
``optimizer.step()`` works unchanged: MAML, first-order MAML, Meta-SGD, Reptile (which sets
``.grad`` itself) and the metric-based learners.

:class:`DistributedMetaTrainer` is a :class:`~metarec_ref.train.meta_trainer.MetaTrainer` with the same
checkpoint format: rank 0 writes, every rank loads, and a checkpoint made with any number of
ranks resumes with any other (the meta-batch size is global). Validation runs on rank 0 and its
result (and the early-stopping decision) is broadcast, so all ranks take the same branch.

Launch with ``torchrun`` (it sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and
``MASTER_PORT``)::

    torchrun --nproc_per_node=2 -m metarec_ref.train.distributed --config run.json
    python -m metarec_ref.train.distributed --config run.json      # one process, same numbers
    python -m metarec_ref.train.distributed --help

Backend ``gloo`` on CPU, ``nccl`` on GPUs (one GPU per rank, ``cuda:LOCAL_RANK``). If a rank
fails (e.g. the loss becomes NaN), ``torchrun`` stops the others.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import socket
import time
import warnings
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, fields

import torch
import torch.distributed as dist
from torch import Tensor, nn

from metarec_ref.batch import FeatureSpec, TaskBatch
from metarec_ref.runtime import resolve_device
from metarec_ref.train.meta_trainer import MetaTrainConfig, MetaTrainer, _clone_state

TASK_FILE_FORMAT = 1


# --------------------------------------------------------------------------- process group


@dataclass
class DistributedContext:
    """Where this process stands: its rank, the number of ranks, its device and backend.

    ``backend`` is None for a single process without a process group (every collective is
    then a no-op), so the same code runs with and without ``torchrun``.
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    backend: str | None = None

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        """True when a process group is up (collectives really communicate)."""
        return self.backend is not None and dist.is_available() and dist.is_initialized()

    def barrier(self) -> None:
        if self.active:
            dist.barrier()


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None:
        return default
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"environment variable {name}={value!r} must be an integer (torchrun sets it)") from None


def init_distributed(device: str | torch.device = "auto", backend: str | None = None) -> DistributedContext:
    """Join the process group described by torchrun's environment variables, if any.

    Without ``WORLD_SIZE`` in the environment (a plain ``python`` run) this returns a single-process
    context and starts nothing. device: "auto" (``cuda:LOCAL_RANK`` when CUDA is available, else
    CPU), "cpu" or "cuda". backend: default "nccl" on CUDA, "gloo" on CPU.
    """
    world_size = _env_int("WORLD_SIZE", 1)
    rank, local_rank = _env_int("RANK", 0), _env_int("LOCAL_RANK", 0)
    if not 0 <= rank < world_size:
        raise ValueError(f"RANK={rank} is outside 0..WORLD_SIZE-1={world_size - 1}; launch with torchrun")
    resolved = resolve_device(device)
    if resolved.type == "cuda":
        if local_rank >= torch.cuda.device_count():
            raise ValueError(
                f"LOCAL_RANK={local_rank} but only {torch.cuda.device_count()} GPU(s) are visible; "
                "use --nproc_per_node <= the number of GPUs, or device='cpu'"
            )
        resolved = torch.device("cuda", local_rank)
        torch.cuda.set_device(resolved)
    if "WORLD_SIZE" not in os.environ:
        return DistributedContext(0, 1, 0, resolved, None)
    backend = backend or ("nccl" if resolved.type == "cuda" else "gloo")
    if backend == "nccl" and resolved.type != "cuda":
        raise ValueError("backend 'nccl' needs CUDA devices; use backend='gloo' on CPU")
    for name in ("MASTER_ADDR", "MASTER_PORT"):
        if name not in os.environ:
            raise ValueError(f"{name} is not set; launch with torchrun or set it (e.g. {name}=127.0.0.1)")
    if not dist.is_initialized():
        kwargs = {"device_id": resolved} if backend == "nccl" else {}
        dist.init_process_group(backend, init_method="env://", rank=rank, world_size=world_size, **kwargs)
    return DistributedContext(rank, world_size, local_rank, resolved, backend)


def shutdown_distributed(ctx: DistributedContext) -> None:
    """Leave the process group (no-op for a single process)."""
    if ctx.active:
        dist.destroy_process_group()


def free_port() -> int:
    """A free TCP port on the loopback interface (for MASTER_PORT of a local run)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def local_env(world_size: int, port: int | None = None) -> dict[str, str]:
    """Environment of a one-machine run on loopback only (what torchrun would set, minus the ranks)."""
    return {
        "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": str(port or free_port()),
        "WORLD_SIZE": str(world_size),
        "GLOO_SOCKET_IFNAME": os.environ.get("GLOO_SOCKET_IFNAME", "lo"),  # keep gloo's pairs on loopback
    }


def _local_worker(local_rank: int, fn: Callable, env: dict[str, str], args: tuple) -> None:
    os.environ.update(env)
    os.environ.update(RANK=str(local_rank), LOCAL_RANK=str(local_rank))
    torch.set_num_threads(1)  # ranks share the cores
    fn(*args)


def run_local(fn: Callable, world_size: int, *args) -> None:
    """Run ``fn(*args)`` in ``world_size`` fresh processes on this machine, as torchrun would.

    ``fn`` must be importable (a module-level function); it calls :func:`init_distributed` itself.
    Communication stays on 127.0.0.1. Raises if any rank fails.
    """
    import torch.multiprocessing as mp

    if world_size < 1:
        raise ValueError(f"world_size must be >= 1, got {world_size}")
    mp.spawn(_local_worker, args=(fn, local_env(world_size), args), nprocs=world_size, join=True)


# --------------------------------------------------------------------------- gradient all-reduce


def shard(index: Tensor, rank: int, world_size: int) -> Tensor:
    """Rank ``rank``'s contiguous part of ``index``; sizes differ by at most one."""
    return torch.tensor_split(index, world_size)[rank]


class AllReduceOptimizer:
    """Wrap an optimizer so ``step()`` first averages ``.grad`` over the ranks, weighted by shard size.

    Set ``weight = n_r / N`` before each step (the trainer does): every rank multiplies its
    gradients by its weight and the sum over ranks is the gradient of the full meta-batch mean.
    All gradients travel in one flat buffer per dtype, with one presence flag per parameter, so
    a parameter with ``.grad = None`` on every rank stays None (the optimizer skips it, exactly
    like a single process). ``state_dict`` / ``load_state_dict`` are the wrapped optimizer's.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, ctx: DistributedContext):
        self.optimizer = optimizer
        self.ctx = ctx
        self.weight = 1.0

    @property
    def param_groups(self) -> list[dict]:
        return self.optimizer.param_groups

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.optimizer.zero_grad(set_to_none=set_to_none)

    def all_reduce_gradients(self) -> None:
        """Replace every ``.grad`` by the weighted sum over the ranks (collective)."""
        if not self.ctx.active:
            return
        params = [p for group in self.param_groups for p in group["params"]]
        by_dtype: dict[torch.dtype, list[Tensor]] = {}
        for p in params:
            by_dtype.setdefault(p.dtype, []).append(p)
        for dtype, group in by_dtype.items():
            parts = [
                (p.grad.detach() * self.weight).reshape(-1) if p.grad is not None
                else torch.zeros(p.numel(), dtype=dtype, device=p.device)
                for p in group
            ]
            flags = torch.tensor([p.grad is not None for p in group], dtype=dtype, device=group[0].device)
            buffer = torch.cat([*parts, flags])
            dist.all_reduce(buffer, op=dist.ReduceOp.SUM)
            present = buffer[-len(group):] > 0
            for p, values, has in zip(group, buffer[: -len(group)].split([p.numel() for p in group]),
                                      present.tolist()):
                p.grad = values.view_as(p).clone() if has else None

    def step(self, closure=None):
        self.all_reduce_gradients()
        return self.optimizer.step(closure)

    def state_dict(self) -> dict:
        return self.optimizer.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.optimizer.load_state_dict(state)


def broadcast_module(module: nn.Module, ctx: DistributedContext, src: int = 0) -> None:
    """Copy rank ``src``'s parameters and buffers to every rank (all start identical)."""
    if not ctx.active:
        return
    with torch.no_grad():
        for tensor in [*module.parameters(), *module.buffers()]:
            dist.broadcast(tensor.data, src=src)


# --------------------------------------------------------------------------- trainer


class DistributedMetaTrainer(MetaTrainer):
    """:class:`~metarec_ref.train.meta_trainer.MetaTrainer` over several ranks; same arguments plus ``ctx``.

    Every rank gets the same ``train_tasks`` and ``config`` (``meta_batch_size`` is the global
    meta-batch); ``val_tasks`` are only used on rank 0. ``save_checkpoint`` and ``fit`` are
    collective: call them on every rank. Rank 0 writes the checkpoint; every rank reads it, so the
    path must be visible to all ranks (a shared file system across machines).
    """

    def __init__(self, learner: nn.Module, train_tasks: TaskBatch, val_tasks: TaskBatch | None = None,
                 config: MetaTrainConfig | None = None, *, ctx: DistributedContext | None = None, **kwargs):
        self.ctx = ctx or DistributedContext()
        config = config or MetaTrainConfig()
        if config.meta_batch_size < self.ctx.world_size:
            raise ValueError(
                f"meta_batch_size={config.meta_batch_size} is smaller than the {self.ctx.world_size} ranks; "
                "every rank needs at least one task: raise meta_batch_size or use fewer ranks"
            )
        if not self.ctx.is_main:
            kwargs["disable"] = True
        super().__init__(learner, train_tasks, val_tasks if self.ctx.is_main else None, config, **kwargs)
        broadcast_module(self.learner, self.ctx)
        self.optimizer = AllReduceOptimizer(self.optimizer, self.ctx)
        self._loss_weights: list[float] = []
        self._synced = 0  # leading entries of _train_losses already averaged over ranks

    def sample_batch(self) -> TaskBatch:
        """This rank's shard of the global meta-batch (the same draw on every rank)."""
        index = torch.randperm(self.train_tasks.num_tasks, generator=self.generator)[: self.config.meta_batch_size]
        mine = shard(index, self.ctx.rank, self.ctx.world_size)
        weight = len(mine) / self.config.meta_batch_size
        self.optimizer.weight = weight
        self._loss_weights.append(weight)
        return self.train_tasks.select(mine.to(self.device))

    def _sync_train_losses(self) -> None:
        """Turn this rank's shard losses into the meta-batch means (collective)."""
        pending = self._train_losses[self._synced:]
        if self.ctx.active:
            weights = self._loss_weights[self._synced:len(self._train_losses)]
            values = torch.tensor([l * w for l, w in zip(pending, weights)], dtype=torch.float64)
            values = values.to(self.ctx.device)
            dist.all_reduce(values, op=dist.ReduceOp.SUM)
            self._train_losses[self._synced:] = values.tolist()
        self._synced = len(self._train_losses)

    def _evaluate(self) -> None:
        self._sync_train_losses()
        if self.ctx.is_main:
            super()._evaluate()
        payload = ([self.rows[-1], self.best_score, self.best_step, self.evals_since_best, self.stopped]
                   if self.ctx.is_main else [None] * 5)
        if self.ctx.active:
            dist.broadcast_object_list(payload, src=0)
        if not self.ctx.is_main:
            row, self.best_score, self.best_step, self.evals_since_best, self.stopped = payload
            self.rows.append(row)
            self._train_losses = []
            if self.best_step == self.step:  # parameters are identical on every rank
                self.best_state = _clone_state(self.learner)
        self._loss_weights, self._synced = [], 0

    def save_checkpoint(self, path: str | os.PathLike) -> None:
        """Rank 0 writes the checkpoint (MetaTrainer's format); collective."""
        self._sync_train_losses()
        if self.ctx.is_main:
            super().save_checkpoint(path)
        self.ctx.barrier()

    def load_checkpoint(self, path: str | os.PathLike) -> None:
        """Every rank resumes from the same checkpoint (from any number of ranks)."""
        super().load_checkpoint(path)
        self._loss_weights = [1.0] * len(self._train_losses)
        self._synced = len(self._train_losses)


# --------------------------------------------------------------------------- task files


def _batch_to_dict(batch: TaskBatch) -> dict:
    return {f.name: getattr(batch, f.name) for f in fields(TaskBatch)}


def save_tasks(path: str | os.PathLike, spec: FeatureSpec, train: TaskBatch, val: TaskBatch | None = None,
               **extra) -> None:
    """Write prepared task tensors (plain tensors and numbers: loads with ``weights_only=True``)."""
    state = {"format": TASK_FILE_FORMAT, "spec": asdict(spec), "train": _batch_to_dict(train.to("cpu")),
             "val": None if val is None else _batch_to_dict(val.to("cpu")), "extra": dict(extra)}
    tmp = f"{os.fspath(path)}.tmp"
    torch.save(state, tmp)
    os.replace(tmp, path)


def load_tasks(path: str | os.PathLike) -> tuple[FeatureSpec, TaskBatch, TaskBatch | None, dict]:
    """Read :func:`save_tasks`: ``(spec, train, val, extra)``."""
    if not os.path.exists(path):
        raise ValueError(f"no task file at {os.fspath(path)!r}; write one with save_tasks or drop 'tasks'")
    state = torch.load(path, map_location="cpu", weights_only=True)
    if state.get("format") != TASK_FILE_FORMAT:
        raise ValueError(f"task file format {state.get('format')!r} is not {TASK_FILE_FORMAT}")
    val = None if state["val"] is None else TaskBatch(**state["val"])
    return FeatureSpec(**state["spec"]), TaskBatch(**state["train"]), val, state["extra"]


# --------------------------------------------------------------------------- command line


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
    """Synthetic log -> validate -> temporal cold-start split -> train / validation user tasks."""
    from metarec_ref.data.encoders import Encoders
    from metarec_ref.data.schema import validate_events
    from metarec_ref.data.splits import temporal_cold_start_split
    from metarec_ref.data.synthetic import SyntheticConfig, generate
    from metarec_ref.data.tasks import build_user_tasks, to_task_batch

    n = cfg.n_interactions
    log = generate(SyntheticConfig(n_users=cfg.n_users or max(50, n // 50), n_items=cfg.n_items or max(100, n // 200),
                                   n_interactions=n, seed=cfg.seed))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # a few duplicate rows are dropped
        events = validate_events(log.events, k_support=cfg.k_support, n_query=cfg.n_query)
        split = temporal_cold_start_split(events, cut_quantile=cfg.cut_quantile)
        encoders = Encoders.fit(events)
        train = build_user_tasks(split.train, cfg.k_support, cfg.n_query, n_neg=cfg.n_neg, seed=cfg.seed)
        val = build_user_tasks(split.valid, cfg.k_support, cfg.n_query, n_neg=cfg.n_neg, history=events,
                               seed=cfg.seed + 1)
    return encoders.spec, to_task_batch(train, encoders), to_task_batch(val, encoders)


def _broadcast_tasks(value, ctx: DistributedContext):
    """Rank 0's object on every rank (tensors travel pickled; fine for task tensors of a few MB)."""
    if not ctx.active:
        return value
    payload = [value if ctx.is_main else None]
    dist.broadcast_object_list(payload, src=0, device=ctx.device if ctx.backend == "nccl" else None)
    return payload[0]


def peak_rss_mb() -> float:
    """Peak resident memory of this process in MB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run(cfg: DistributedRunConfig, ctx: DistributedContext | None = None) -> dict:
    """Prepare tasks (rank 0), meta-train on every rank, checkpoint; return the summary (all ranks)."""
    from metarec_ref.meta.maml import InnerLoopConfig
    from metarec_ref.models.recommenders import EventEncoder, build_model
    from metarec_ref.runtime import seed_everything
    from metarec_ref.train.meta_trainer import build_learner

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
    metric_based = cfg.algorithm in ("protonet", "matchingnet")
    model = EventEncoder(spec) if metric_based else build_model(cfg.model, spec)
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
        prog="python -m metarec_ref.train.distributed",
        description="Data-parallel meta-training with torch.distributed. Launch several ranks with "
                    "'torchrun --nproc_per_node=N -m metarec_ref.train.distributed --config run.json'; "
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


if __name__ == "__main__":
    main()


__all__ = [
    "AllReduceOptimizer",
    "DistributedContext",
    "DistributedMetaTrainer",
    "DistributedRunConfig",
    "broadcast_module",
    "free_port",
    "init_distributed",
    "load_tasks",
    "local_env",
    "main",
    "peak_rss_mb",
    "prepare_synthetic_tasks",
    "run",
    "run_local",
    "save_tasks",
    "shard",
    "shutdown_distributed",
]
